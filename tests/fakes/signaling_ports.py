"""In-memory stand-ins for what ``signaling.Hub`` asks of the rest of the service (the Protocols
of ``signaling.ports``), so that a real Hub can be driven over real sockets without the case
service, the database or the media engine.

Each fake keeps what it was asked, for a test to check, and behaves as the server's object does
where the Hub can tell: the case state machine moves as ``server.cases`` moves it, bad SDP and
candidates raise ``ValueError``, unknown tokens raise ``SignalingError``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from signaling import (
    CaseStatus,
    CaseSummary,
    Identity,
    MediaListener,
    Role,
    SignalingError,
    SignalingErrorCode,
    SiteSummary,
    SubjectId,
)

__all__ = ["FakeAuth", "FakeCases", "FakeMedia", "FakeSites", "Peer"]

#: The header a fake staff client sends its token in (as an API bearer token would be).
AUTHORIZATION = "Authorization"
#: The cookie a browser's staff session travels in (as the server's session cookie).
SESSION_COOKIE = "inspect_session"


class FakeAuth:
    """Join tokens for customers and bearer tokens (or session cookies) for staff, issued by
    the test; a staff token can be revoked and a subject disabled (``still_valid``)."""

    def __init__(self) -> None:
        self._join_tokens: dict[str, Identity] = {}
        self._expired: set[str] = set()
        self._staff: dict[str, Identity] = {}
        #: Staff known only once asked through :meth:`authenticate` (made on another node).
        self._elsewhere: dict[str, Identity] = {}
        #: Subjects whose identities no longer hold (a disabled user), for ``still_valid``.
        self.disabled: set[str] = set()
        self._ids = itertools.count(1)

    def join_token(self, case_id: str) -> str:
        token = f"join-{next(self._ids)}"
        self._join_tokens[token] = Identity(
            subject=SubjectId.customer(case_id),
            name="Customer",
            role=Role.CUSTOMER,
            case_id=case_id,
        )
        return token

    def expired_join_token(self) -> str:
        token = f"expired-{next(self._ids)}"
        self._expired.add(token)
        return token

    def staff(
        self,
        user_id: str,
        role: Role = Role.AGENT,
        *,
        name: str | None = None,
        remote: bool = False,
    ) -> dict[str, str]:
        """A staff member; the headers their socket authenticates with. ``remote``: a session
        this node's cache does not hold yet (only :meth:`authenticate` finds it)."""
        identity = Identity(subject=SubjectId.user(user_id), name=name or user_id, role=role)
        token = f"staff-{next(self._ids)}"
        (self._elsewhere if remote else self._staff)[token] = identity
        return {AUTHORIZATION: f"Bearer {token}"}

    def staff_cookie(self, user_id: str, role: Role = Role.AGENT) -> dict[str, str]:
        """A staff member signed in through a browser: the ``Cookie`` header of their page."""
        token = self.staff(user_id, role)[AUTHORIZATION].removeprefix("Bearer ")
        return {"Cookie": f"{SESSION_COOKIE}={token}"}

    def revoke(self, headers: dict[str, str]) -> None:
        """The credential in ``headers`` (from :meth:`staff`) no longer works."""
        token = headers[AUTHORIZATION].removeprefix("Bearer ")
        self._staff.pop(token, None)
        self._elsewhere.pop(token, None)

    def verify_join_token(self, token: str) -> Identity:
        if token in self._expired:
            raise SignalingError(SignalingErrorCode.TOKEN_EXPIRED, "this link has expired")
        identity = self._join_tokens.get(token)
        if identity is None:
            raise SignalingError(SignalingErrorCode.UNAUTHORIZED, "invalid join token")
        return identity

    @staticmethod
    def _bearer(request: web.BaseRequest) -> str:
        bearer = request.headers.get(AUTHORIZATION, "").removeprefix("Bearer ")
        return bearer or request.cookies.get(SESSION_COOKIE, "")

    def identify(self, request: web.BaseRequest) -> Identity | None:
        return self._staff.get(self._bearer(request))

    async def authenticate(self, request: web.BaseRequest) -> Identity | None:
        token = self._bearer(request)
        return self._staff.get(token) or self._elsewhere.get(token)

    async def still_valid(self, identity: Identity) -> bool:
        return identity.subject not in self.disabled


class FakeCases:
    """Cases in a dict, with the state machine of the case service."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._cases: dict[str, CaseSummary] = {}
        #: Chat messages kept per case, by seq (as the timeline keeps them: once each).
        self.chat: dict[str, dict[int, Mapping[str, Any]]] = {}
        #: Tools used in calls, per case: (action, actor, data), in the order they came.
        self.actions: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        self._ids = itertools.count(1)

    def create(self, customer_name: str = "Ada Customer", **fields: Any) -> CaseSummary:
        case_id = f"case{next(self._ids):04d}"
        summary = CaseSummary(
            case_id=case_id,
            kind=fields.pop("kind", "return"),
            state=CaseStatus.CREATED.value,
            customer_name=customer_name,
            **fields,
        )
        self._cases[case_id] = summary
        return summary

    def set_state(self, case_id: str, status: CaseStatus) -> CaseSummary:
        """A change made elsewhere (a REST decision); the test tells the Hub with
        ``hub.case_changed``."""
        summary = replace(self._cases[case_id], state=status.value)
        self._cases[case_id] = summary
        return summary

    def _move(
        self, case_id: str, source: CaseStatus, target: CaseStatus, **changes: Any
    ) -> CaseSummary:
        summary = self._cases[case_id]
        if summary.status is source:
            summary = replace(summary, state=target.value, **changes)
            self._cases[case_id] = summary
        return summary

    async def get(self, case_id: str) -> CaseSummary | None:
        return self._cases.get(case_id)

    async def customer_arrived(self, case_id: str) -> CaseSummary:
        return self._move(
            case_id, CaseStatus.CREATED, CaseStatus.WAITING, waiting_since=self._clock()
        )

    async def customer_left(self, case_id: str) -> CaseSummary:
        return self._move(case_id, CaseStatus.WAITING, CaseStatus.CREATED, waiting_since=None)

    async def call_started(self, case_id: str, agent: Identity) -> CaseSummary:
        return self._move(case_id, CaseStatus.WAITING, CaseStatus.IN_CALL, agent_id=agent.subject)

    async def record_chat(self, case_id: str, message: Mapping[str, Any]) -> None:
        self.chat.setdefault(case_id, {}).setdefault(int(message["seq"]), dict(message))

    async def record_action(
        self, case_id: str, action: str, *, actor: str, data: Mapping[str, Any]
    ) -> None:
        self.actions.setdefault(case_id, []).append((action, actor, dict(data)))


@dataclass
class Peer:
    """A server-side peer as the fake media gateway keeps it."""

    room_id: str
    offers: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)


class FakeMedia:
    """Peers without media: answers every offer, keeps every candidate. An offer whose SDP
    has no ``v=0`` line and a candidate that does not start with ``candidate:`` are refused
    (``ValueError``), as the engine refuses what it cannot parse."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.closed: list[str] = []
        self.listener: MediaListener | None = None

    def set_listener(self, listener: MediaListener) -> None:
        self.listener = listener

    async def answer(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        if not offer_sdp.startswith("v=0"):
            raise ValueError("not an SDP offer: it must start with v=0")
        peer = self.peers.get(participant_id)
        if peer is None or peer.room_id != room_id:
            peer = self.peers[participant_id] = Peer(str(room_id))
        peer.offers.append(offer_sdp)
        return f"v=0\r\ns=answer for {participant_id} in {room_id}\r\n"

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        peer = self.peers.get(participant_id)
        if peer is None:
            raise LookupError(f"no peer {participant_id}: offer first")
        if candidate and not candidate.startswith("candidate:"):
            raise ValueError("not an ICE candidate")
        peer.candidates.append(candidate)

    async def close_peer(self, participant_id: str) -> None:
        if self.peers.pop(participant_id, None) is not None:
            self.closed.append(participant_id)


class FakeSites:
    """Sites with cameras, camera tokens, and the cameras' connections as reported."""

    def __init__(self) -> None:
        self._sites: dict[str, SiteSummary] = {}
        self._tokens: dict[str, Identity] = {}
        self._ids = itertools.count(1)
        #: ("connected" | "disconnected", camera id, participant id), in order.
        self.events: list[tuple[str, str, str]] = []

    def add_site(self, site_id: str, name: str, *camera_ids: str) -> SiteSummary:
        cameras = tuple(
            {"id": camera_id, "name": f"Camera {camera_id}", "kind": "phone"}
            for camera_id in camera_ids
        )
        summary = SiteSummary(site_id, name, cameras)
        self._sites[site_id] = summary
        return summary

    def camera_token(self, site_id: str, camera_id: str) -> str:
        token_id = f"tok{next(self._ids)}"
        self._tokens[token_id] = Identity(
            subject=SubjectId.camera_token(token_id),
            name=f"Camera {camera_id}",
            role=Role.CAMERA,
            site_id=site_id,
            camera_id=camera_id,
        )
        return token_id

    def subject_of(self, token: str) -> str:
        return self._tokens[token].subject

    async def verify_camera_token(self, token: str) -> Identity:
        identity = self._tokens.get(token)
        if identity is None:
            raise SignalingError(
                SignalingErrorCode.UNAUTHORIZED, "unknown camera token", ref="join"
            )
        return identity

    async def site(self, site_id: str) -> SiteSummary | None:
        return self._sites.get(site_id)

    async def camera_connected(self, camera_id: str, participant_id: str) -> None:
        self.events.append(("connected", camera_id, participant_id))

    async def camera_disconnected(self, camera_id: str, participant_id: str) -> None:
        self.events.append(("disconnected", camera_id, participant_id))
