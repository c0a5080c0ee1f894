"""What signaling needs from the rest of the service, as Protocols that ``server`` wires in.

Signaling imports neither ``media`` nor ``server``: the media engine, the case service and the
authenticator only have to fit these shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from .messages import Role

__all__ = [
    "Authenticator",
    "CaseDirectory",
    "CaseSummary",
    "Identity",
    "MediaGateway",
    "MediaListener",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a socket or request."""

    subject: str  # staff user id, or "customer:<case_id>"
    name: str
    role: Role
    #: For customers: the only case this identity may reach. ``None`` for staff.
    case_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.AGENT, Role.REVIEWER, Role.ADMIN)

    @property
    def can_take_calls(self) -> bool:
        return self.role in (Role.AGENT, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """What signaling shows about a case (queue entries, ``joined``, ``case`` events)."""

    case_id: str
    kind: str  # "return" | "support"
    state: str  # "created" | "waiting" | "in_call" | "decided" | "closed"
    customer_name: str
    order_id: str | None = None
    sku: str | None = None
    reason: str | None = None
    agent_id: str | None = None
    waiting_since: float | None = None  # unix seconds when the customer arrived
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
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


class Authenticator(Protocol):
    """Turns credentials into identities. Raises ``signaling.SignalingError`` with code
    ``unauthorized`` or ``token_expired`` for a bad or expired join token."""

    def verify_join_token(self, token: str) -> Identity: ...

    def identify(self, request: web.BaseRequest) -> Identity | None:
        """Staff from the session cookie (or an API bearer token); ``None`` if neither."""
        ...


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
