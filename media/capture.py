"""What the engine keeps per published track for recording: the encoded-frame tap, the
pre-roll buffer, the recorders it feeds and the newest decoded picture (for snapshots)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from av import VideoFrame

from .forwarder import MediaItem, TrackSource
from .keyframes import EncodedFrame, codec_of, is_keyframe
from .preroll import PrerollBuffer
from .recorder import Recorder

__all__ = ["CaptureHandle", "LatestFrame", "Publication"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaptureHandle:
    """A running capture: :meth:`MediaEngine.stop_capture` takes it back."""

    id: str
    room_id: str
    name: str
    #: One file per publishing participant, in ``directory``.
    files: tuple[Path, ...]
    #: Wall-clock seconds when the capture was asked for.
    requested_at: float


class LatestFrame:
    """A forwarder tap that keeps only the newest decoded video frame."""

    def __init__(self) -> None:
        self.frame: VideoFrame | None = None

    def push(self, frame: MediaItem) -> None:
        if isinstance(frame, VideoFrame):
            self.frame = frame

    def close(self) -> None:
        pass


@dataclass(eq=False, slots=True)
class Publication:
    """One published track as the recorder sees it (encoded frames, on the loop thread)."""

    source: TrackSource
    preroll: PrerollBuffer | None
    clock: Callable[[], float] = time.monotonic
    receiver: Any = None
    codec: str | None = None
    latest: LatestFrame | None = None
    sinks: set[Recorder] = field(default_factory=set)
    #: Encoded frames / keyframes seen from the publisher.
    frames: int = 0
    keyframes: int = 0
    keyframe_task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return f"{self.source.kind}-{self.source.track_id}"

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def participant_id(self) -> str:
        return self.source.publisher_id

    def on_encoded(self, mime_type: str, clock_rate: int, data: bytes, timestamp: int) -> None:
        """The receiver's tap: called on the loop thread for every complete encoded frame."""
        codec = self.codec
        if codec is None or not mime_type.lower().endswith(codec):
            codec = self.codec = codec_of(mime_type)
        frame = EncodedFrame(
            kind=self.source.kind,
            codec=codec,
            data=data,
            timestamp=timestamp,
            clock_rate=clock_rate,
            keyframe=is_keyframe(codec, data),
            arrival=self.clock(),
        )
        self.frames += 1
        self.keyframes += frame.keyframe
        if self.preroll is not None:
            self.preroll.push(frame)
        for recorder in self.sinks:
            recorder.write(self.key, frame)
