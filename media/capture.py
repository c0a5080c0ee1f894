"""What the engine keeps per published track for recording: the pre-roll buffer and the
recorders its encoded frames feed, and the newest picture decoded on demand (snapshots)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from av import VideoFrame

from .forwarder import TrackSource
from .keyframes import EncodedFrame
from .preroll import PrerollBuffer
from .recorder import Recorder

__all__ = ["CaptureHandle", "Publication", "decode_newest"]

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


@dataclass(eq=False, slots=True)
class Publication:
    """One published track as the recorder sees it (encoded frames, on the loop thread)."""

    source: TrackSource
    preroll: PrerollBuffer | None
    sinks: set[Recorder] = field(default_factory=set)
    keyframe_task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return f"{self.source.kind}-{self.source.track_id}"

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def codec(self) -> str | None:
        return self.source.codec

    @property
    def participant_id(self) -> str:
        return self.source.publisher_id

    def on_encoded(self, frame: EncodedFrame) -> None:
        """The source's encoded tap: called on the loop thread for every complete frame."""
        if self.preroll is not None:
            self.preroll.push(frame)
        for recorder in self.sinks:
            recorder.write(self.key, frame)

    def newest_picture(self) -> list[EncodedFrame]:
        """The frames a decoder needs for the newest picture: newest keyframe to newest frame."""
        if self.kind != "video" or self.preroll is None:
            return []
        return self.preroll.last(0)


#: PyAV decoder names per codec.
_DECODERS = {"vp8": "vp8", "h264": "h264"}


def decode_newest(frames: list[EncodedFrame]) -> VideoFrame | None:
    """Decode a keyframe and the frames after it; the last picture (blocking: call in a thread)."""
    if not frames or frames[0].codec not in _DECODERS:
        return None
    context: Any = av.CodecContext.create(_DECODERS[frames[0].codec], "r")
    newest: VideoFrame | None = None
    for frame in frames:
        try:
            for picture in context.decode(av.Packet(frame.data)):
                newest = picture
        except av.FFmpegError as exc:
            logger.warning("snapshot decode failed at one frame: %s", exc)
    try:
        for picture in context.decode(None):
            newest = picture
    except av.FFmpegError:
        pass
    return newest
