"""Decoded frames for the grading model, taken from a published video track at a fixed rate.

The sampler sits on the forwarding path (a tap on :class:`~media.source.TrackSource`), so it
must never make that path wait: it keeps one frame per period, converts it to RGB and hands it
to the :class:`FrameSink`, which must return at once (it drops, never queues without bound).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from av import VideoFrame

__all__ = ["FrameSampler", "FrameSink", "StreamKey"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One published track (video for the sampler, audio for speech)."""

    room_id: str
    publisher_id: str
    track_id: str

    @property
    def id(self) -> str:
        return f"{self.room_id}/{self.publisher_id}/{self.track_id}"


class FrameSink(Protocol):
    """Where sampled frames go (the server wires the grading pipeline in). Every method must
    return without waiting on inference."""

    def wants(self, stream: StreamKey) -> bool:
        """Whether to sample ``stream`` at all. A track nobody wants is never decoded (a
        warehouse camera nobody grades costs no decoder). Asked when the track is published
        and again at ``MediaEngine.resample``."""
        ...

    def stream_started(self, stream: StreamKey) -> None: ...

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        """``image``: H x W x 3 uint8 RGB; ``ts``: wall-clock seconds when it was sampled."""
        ...

    def stream_ended(self, stream: StreamKey) -> None: ...


class FrameSampler:
    """Keeps one decoded frame per ``1/fps`` seconds of one track and passes it on."""

    #: A few frames a second are enough, so a publisher's base temporal layer is all that is
    #: decoded for it (:meth:`~media.source.TrackSource.push`): a quarter of the frames of
    #: VP8 L1T3.
    base_layer_only = True

    def __init__(
        self,
        stream: StreamKey,
        sink: FrameSink,
        fps: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.stream = stream
        self._sink = sink
        self._period = 1.0 / fps
        self._clock = clock
        self._wall_clock = wall_clock
        self._next_at = 0.0
        self._closed = False
        #: Frames handed to the sink / frames passed over between samples.
        self.sampled = 0
        self.skipped = 0
        sink.stream_started(stream)

    def push(self, frame: object) -> None:
        """Called for every frame the source reads; samples at most one per period."""
        if self._closed or not isinstance(frame, VideoFrame):
            return
        now = self._clock()
        if now < self._next_at:
            self.skipped += 1
            return
        # Keep the cadence when frames arrive on time; restart it after a gap.
        self._next_at = max(self._next_at + self._period, now + self._period / 2)
        try:
            image = frame.to_ndarray(format="rgb24")
            self._sink.frame_sampled(self.stream, image, self._wall_clock())
            self.sampled += 1
        except Exception:
            logger.exception("sampling a frame of %s failed", self.stream.id)

    def close(self) -> None:
        """The track ended; tell the sink once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.stream_ended(self.stream)
        except Exception:
            logger.exception("closing the sampled stream %s failed", self.stream.id)
