"""What the routes need from the live side of the service, as Protocols the wiring fills in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from inference import SnapshotCandidate
from server.cases import CaseService
from signaling import CaseSummary, Identity

__all__ = [
    "CallControl",
    "CameraSessions",
    "CaptionSwitch",
    "DirectCallControl",
    "GradingView",
    "NoCaptions",
    "NoGrading",
]


class CallControl(Protocol):
    """What the accept route needs from the call hub (``signaling``): take a waiting case
    atomically. Raises ``SignalingError`` ``already_accepted`` / ``not_waiting`` / ``not_found``."""

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary: ...


class DirectCallControl:
    """Accepts straight through the case service (no live hub: nothing is pushed to sockets).
    The default when the edge is given no call hub."""

    def __init__(self, cases: CaseService) -> None:
        self._cases = cases

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary:
        case = await self._cases.accept(case_id, agent)
        return case.summary()


class GradingView(Protocol):
    """What the routes read of live grading (``inference.GradingService``)."""

    def latest(self, case_id: str) -> dict[str, Any] | None: ...

    def frames(self, case_id: str) -> list[SnapshotCandidate]: ...


class NoGrading:
    """Grading switched off (``INSPECT_GRADING=false``): no live view, no frames."""

    def latest(self, case_id: str) -> dict[str, Any] | None:
        return None

    def frames(self, case_id: str) -> list[SnapshotCandidate]:
        return []


class CameraSessions(Protocol):
    """What the site routes need from the live side: end a camera's connections, tell a site's
    room that the site changed, say why an RTSP pull failed."""

    async def end_camera(self, camera_id: str, reason: str, *, token_id: str | None = None) -> None:
        """Close the camera's phone page and WHIP session (only those of ``token_id``)."""
        ...

    async def site_changed(self, site_id: str) -> None: ...

    def rtsp_error(self, camera_id: str) -> str | None:
        """Why the camera's RTSP pull last failed, in full (for admins only: to anyone else it
        maps which internal hosts and ports answer); ``None`` when it did not."""
        ...


class CaptionSwitch(Protocol):
    """What the captions route needs from the live side: the case's captions were switched
    (recorded already); stop or start transcribing and tell the room."""

    @property
    def available(self) -> bool:
        """Whether this service transcribes speech at all (``INSPECT_CAPTIONS``)."""
        ...

    async def switched(self, case_id: str, enabled: bool, by: Mapping[str, Any]) -> None: ...


class NoCaptions:
    """Captions switched off for the service: a case's switch is kept, nothing is live."""

    available = False

    async def switched(self, case_id: str, enabled: bool, by: Mapping[str, Any]) -> None:
        return None
