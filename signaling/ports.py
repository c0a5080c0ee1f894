"""What signaling needs from the rest of the service, as Protocols that ``server`` wires in.

Signaling imports neither ``media`` nor ``server``: the media engine, the case service and the
authenticator only have to fit these shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from aiohttp import web

from .ids import camera_room, site_room
from .messages import Role

__all__ = [
    "Authenticator",
    "CaseDirectory",
    "CaseStatus",
    "CaseSummary",
    "CredentialCheck",
    "HubObserver",
    "Identity",
    "MediaGateway",
    "MediaListener",
    "SiteDirectory",
    "SiteSummary",
    # Room constructors, kept importable from here for existing callers (see ``ids``).
    "camera_room",
    "site_room",
]


class CaseStatus(StrEnum):
    """A case's state as signaling sees it: the same values as the case service's states."""

    CREATED = "created"
    WAITING = "waiting"
    IN_CALL = "in_call"
    DECIDED = "decided"
    CLOSED = "closed"

    @property
    def call_open(self) -> bool:
        """Whether a customer may still open the call (it has not been decided or closed)."""
        return self in (CaseStatus.CREATED, CaseStatus.WAITING, CaseStatus.IN_CALL)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a socket or request."""

    #: Who this is, as ``signaling.SubjectId`` builds and parses it (a staff user id,
    #: ``customer:<case id>``, ``token:<token id>``, ``camera-token:<token id>``...).
    subject: str
    name: str
    role: Role
    #: For customers: the only case this identity may reach. ``None`` for staff.
    case_id: str | None = None
    #: For cameras: the site and the camera this identity publishes as.
    site_id: str | None = None
    camera_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.AGENT, Role.REVIEWER, Role.ADMIN)

    @property
    def audit_actor(self) -> str:
        """Who did it, as audit trails and the custody log write it: the stable, unique subject
        first, the display name (neither stable nor unique) beside it."""
        return f"{self.subject} ({self.name})" if self.name else self.subject

    @property
    def can_take_calls(self) -> bool:
        return self.role in (Role.AGENT, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """What signaling shows about a case (queue entries, ``joined``, ``case`` events)."""

    case_id: str
    kind: str  # "return" | "support"
    state: str  # a CaseStatus value (checked when the summary is made)
    customer_name: str
    order_id: str | None = None
    sku: str | None = None
    reason: str | None = None
    agent_id: str | None = None
    waiting_since: float | None = None  # unix seconds when the customer arrived
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A state signaling does not know would silently fail every comparison below.
        CaseStatus(self.state)

    @property
    def status(self) -> CaseStatus:
        return CaseStatus(self.state)

    def to_json(self, *, staff: bool = True) -> dict[str, Any]:
        """The case as JSON; for anyone but staff (``staff=False``: the customer) without the
        holder's user id, which is of no use to a customer and names a staff account."""
        data = {
            "case_id": self.case_id,
            "kind": self.kind,
            "state": self.state,
            "customer_name": self.customer_name,
            "order_id": self.order_id,
            "sku": self.sku,
            "reason": self.reason,
            "agent_id": self.agent_id,
            "waiting_since": self.waiting_since,
        }
        if not staff:
            del data["agent_id"]
        return data


class Authenticator(Protocol):
    """Turns credentials into identities. Raises ``signaling.SignalingError`` with code
    ``unauthorized`` or ``token_expired`` for a bad or expired join token."""

    def verify_join_token(self, token: str) -> Identity: ...

    def identify(self, request: web.BaseRequest) -> Identity | None:
        """Staff from the session cookie (or an API bearer token); ``None`` if neither."""
        ...

    async def authenticate(self, request: web.BaseRequest) -> Identity | None:
        """As :meth:`identify`, also finding a user or token it does not know yet (one made
        through another node) where :meth:`identify` returns ``None``."""
        ...


@runtime_checkable
class CredentialCheck(Protocol):
    """Optional beside :class:`Authenticator` (the same object may implement it): whether an
    open staff socket's identity still holds, for what the upgrade request cannot show by
    itself (the user was disabled, their sessions were ended, their role changed). The Hub asks
    it every ``HubConfig.recheck_s`` after :meth:`Authenticator.authenticate` of the upgrade
    request still named the same subject and role."""

    async def still_valid(self, identity: Identity) -> bool: ...


class CaseDirectory(Protocol):
    """The case service, as the call flow drives it. Each method returns the case after the
    change; a state change that does not apply (e.g. a decided case) leaves the state alone."""

    async def get(self, case_id: str) -> CaseSummary | None: ...

    async def customer_arrived(self, case_id: str) -> CaseSummary:
        """created -> waiting (the customer's page is open). No change in later states."""
        ...

    async def customer_left(self, case_id: str) -> CaseSummary:
        """waiting -> created (no one to call). A case in a call stays in_call."""
        ...

    async def call_started(self, case_id: str, agent: Identity) -> CaseSummary:
        """waiting -> in_call, recording the agent."""
        ...

    async def record_chat(self, case_id: str, message: Mapping[str, Any]) -> None:
        """Keep a chat message in the case's timeline (idempotent on ``seq``)."""
        ...

    async def record_action(
        self, case_id: str, action: str, *, actor: str, data: Mapping[str, Any]
    ) -> None:
        """Keep a tool used in the call (``inspection.markup``, ``inspection.point``...) in the
        case's timeline."""
        ...


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """What signaling shows about a site: its name and its cameras (JSON objects with at least
    ``id``, ``name`` and ``kind``, plus their live ``status`` as the server knows it)."""

    site_id: str
    name: str
    cameras: tuple[Mapping[str, Any], ...] = ()

    def has_camera(self, camera_id: str) -> bool:
        return any(camera.get("id") == camera_id for camera in self.cameras)

    def to_json(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "name": self.name,
            "cameras": [dict(camera) for camera in self.cameras],
        }


class SiteDirectory(Protocol):
    """Sites and their cameras, as site rooms need them (``server.sites`` fits this)."""

    async def verify_camera_token(self, token: str) -> Identity:
        """The camera identity of a camera token (role ``camera``, its ``site_id`` and
        ``camera_id``, the camera's name). Raises ``SignalingError`` ``unauthorized`` (unknown,
        revoked, or a camera that is disabled, deleted or not a phone camera) or
        ``token_expired``."""
        ...

    async def site(self, site_id: str) -> SiteSummary | None: ...

    async def camera_connected(self, camera_id: str, participant_id: str) -> None:
        """A camera page joined its site's room (it may replace an older connection)."""
        ...

    async def camera_disconnected(self, camera_id: str, participant_id: str) -> None: ...


class HubObserver(Protocol):
    """Metrics hooks (``server.metrics`` fits this)."""

    def ws_message(self, direction: Literal["in", "out"], kind: str, /) -> None: ...

    def ws_connected(self, delta: int, /) -> None: ...


class MediaListener(Protocol):
    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        """The participant has more remote tracks than receiving transceivers: ask its client
        for a new offer. ``tracks`` counts the remote tracks by kind (``audio``/``video``)."""
        ...


class MediaGateway(Protocol):
    """The server-side peers. Bad SDP or candidates raise ``ValueError`` (with a message fit
    for the client)."""

    def set_listener(self, listener: MediaListener) -> None: ...

    async def answer(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Apply the client's offer (creating its peer on first use) and return the answer."""
        ...

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...

    async def close_peer(self, participant_id: str) -> None: ...
