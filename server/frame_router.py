"""The media engine's one frame sink, fanned out to every service that reads decoded video: the
grading model (case rooms, returns QC stations) and the station barcode readers (station
cameras).

The engine asks its sink once, when a track is published, whether the track is wanted at all
(``wants``): a track nobody wants is never decoded. Who wants a track can change while it is
live (an admin makes a camera a station, or stops it being one), so the router asks each sink
again at every sampled frame: a sink that starts wanting a live stream gets ``stream_started``
before its first frame, one that stops gets ``stream_ended`` at once. :meth:`FrameRouter.refresh`
has the engine ask again for a room's live tracks (``MediaEngine.resample``): a track nobody
wanted starts being sampled at its next keyframe, one nobody wants any more stops being decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from media import FrameSink, StreamKey

__all__ = ["FrameRouter", "wants"]

logger = logging.getLogger(__name__)


class _Sources(Protocol):
    """What :meth:`FrameRouter.refresh` needs of the media engine (``MediaEngine``)."""

    def resample(self, room_id: str) -> None: ...


def wants(sink: FrameSink, stream: StreamKey) -> bool:
    """A sink's answer to ``wants(stream)``; a sink without the method wants every stream."""
    method = getattr(sink, "wants", None)
    return bool(method(stream)) if callable(method) else True


class FrameRouter:
    """Fits ``media.FrameSink``: hands each sampled stream to the sinks that want it now."""

    def __init__(self, sinks: Sequence[FrameSink] = ()) -> None:
        self._sinks = list(sinks)
        #: Open streams -> indexes of the sinks that were told it started.
        self._open: dict[StreamKey, set[int]] = {}
        self._media: _Sources | None = None

    def add(self, sink: FrameSink) -> None:
        """One more sink (the app adds them once the services they belong to exist)."""
        self._sinks.append(sink)

    def bind(self, media: _Sources) -> None:
        """The engine whose live tracks :meth:`refresh` may start sampling."""
        self._media = media

    # -- media.FrameSink --------------------------------------------------------------------------

    def wants(self, stream: StreamKey) -> bool:
        return any(self._wanted_by(sink, stream) for sink in self._sinks)

    def stream_started(self, stream: StreamKey) -> None:
        started = self._open.setdefault(stream, set())
        for index, sink in enumerate(self._sinks):
            if index not in started and self._wanted_by(sink, stream):
                self._call(sink, "stream_started", stream)
                started.add(index)

    def frame_sampled(self, stream: StreamKey, image: Any, ts: float) -> None:
        started = self._open.setdefault(stream, set())
        for index, sink in enumerate(self._sinks):
            wanted = self._wanted_by(sink, stream)
            if wanted and index not in started:
                self._call(sink, "stream_started", stream)
                started.add(index)
            elif not wanted and index in started:
                started.discard(index)
                self._call(sink, "stream_ended", stream)
            if wanted:
                self._call(sink, "frame_sampled", stream, image, ts)

    def stream_ended(self, stream: StreamKey) -> None:
        for index in sorted(self._open.pop(stream, ())):
            self._call(self._sinks[index], "stream_ended", stream)

    # -- following changes while tracks are live -----------------------------------------------

    def refresh(self, room_id: str) -> None:
        """Who wants the room's video may have changed: have the engine ask again."""
        if self._media is not None:
            self._media.resample(room_id)

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _wanted_by(sink: FrameSink, stream: StreamKey) -> bool:
        try:
            return wants(sink, stream)
        except Exception:
            logger.exception("frame sink %r failed to say whether it wants %s", sink, stream.id)
            return False

    @staticmethod
    def _call(sink: FrameSink, method: str, *args: Any) -> None:
        # One sink's failure must not keep the frame from the others.
        try:
            getattr(sink, method)(*args)
        except Exception:
            logger.exception("frame sink %r failed in %s", sink, method)
