"""What evidence capture needs of the rest of the service: a recorder of media rooms (the
media engine, or with several nodes its stand-in that runs each call on the room's home node),
the frames grading kept, what was said in a call, and a few settings."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from media import CaptureHandle, RecordedFile

__all__ = ["CaptureConfig", "FrameSource", "RoomRecorder", "TranscriptSource"]


class RoomRecorder(Protocol):
    """Records a media room's published tracks (``media.MediaEngine`` fits it)."""

    async def start_capture(
        self,
        room_id: str,
        directory: Path,
        *,
        name: str,
        preroll: bool = True,
        preroll_seconds: float | None = None,
        participants: Collection[str] | None = None,
    ) -> CaptureHandle: ...

    async def stop_capture(self, handle: CaptureHandle) -> list[RecordedFile]: ...

    async def save_last(
        self,
        room_id: str,
        seconds: float,
        directory: Path,
        *,
        name: str,
        participants: Collection[str] | None = None,
    ) -> list[RecordedFile]: ...

    async def snapshot(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> bytes | None: ...


class FrameSource(Protocol):
    """Where the sharpest recent frames come from (``inference.GradingService``)."""

    def latest(self, case_id: str) -> dict[str, Any] | None: ...

    def frames(self, case_id: str) -> list[Any]: ...


class TranscriptSource(Protocol):
    """The captioned speech of a case's call (``server.cases.CaseService`` fits it)."""

    async def transcript(
        self, case_id: str, *, since: float | None, until: float | None
    ) -> Sequence[Mapping[str, Any]]:
        """The segments that overlap ``since``..``until`` (wall-clock seconds), oldest first;
        each has ``role``, ``name``, ``language``, ``text``, ``translation`` (English, or None),
        ``started_at`` and ``ended_at`` (epoch seconds)."""
        ...


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """The settings capture reads."""

    #: Where running recordings are written before they are filed (and found after a crash).
    spool_dir: Path
    #: Seconds a capture reaches back into the pre-roll.
    preroll_s: float
    privacy_notice_version: str
    retention_class: str
    #: The merchant's time zone, printed beside UTC on the stamped copies of stills.
    stamp_timezone: str = "UTC"
