"""One :class:`~media.FrameSink` for the engine, fanned out to every service that reads decoded
video (the grading model, station barcode readers...).

The engine asks its sink whether it wants a track when the track is published (and again at
:meth:`~media.MediaEngine.resample`): a track no sink wants is never decoded. Who wants a track
can change while it is live (a camera becomes a returns station, or stops being one), so the
router asks each sink again at every sampled frame: a sink that starts wanting a live stream
gets ``stream_started`` before its first frame, one that stops gets ``stream_ended`` at once.
:meth:`FrameRouter.refresh` has the engine ask again for a room's tracks, so a track nobody
wanted starts being sampled (at its next keyframe) and one nobody wants any more stops being
decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .sampler import FrameSink, StreamKey

__all__ = ["FrameRouter", "Resampler"]

logger = logging.getLogger(__name__)


class Resampler(Protocol):
    """What :meth:`FrameRouter.refresh` needs of the media engine."""

    def resample(self, room_id: str) -> None: ...


@dataclass(frozen=True, eq=False, slots=True)
class _Route:
    sink: FrameSink
    #: Streams outside it are never offered to the sink, whatever its ``wants`` says.
    when: Callable[[StreamKey], bool] | None


class FrameRouter:
    """Fits :class:`~media.FrameSink`: hands each sampled stream to the sinks that want it now.

    A sink wants a stream when its ``when`` predicate (if it was added with one) and then its
    own ``wants`` say so. One sink's failure, in any method, is logged and reaches no other.
    """

    def __init__(self, sinks: Sequence[FrameSink] = ()) -> None:
        self._routes = [_Route(sink, None) for sink in sinks]
        #: Open streams -> indexes of the routes whose sink was told it started.
        self._open: dict[StreamKey, set[int]] = {}
        self._media: Resampler | None = None

    def add(self, sink: FrameSink, *, when: Callable[[StreamKey], bool] | None = None) -> None:
        """One more sink, offered only the streams ``when`` accepts (``None``: every stream).
        Streams already open reach it from their next sampled frame."""
        self._routes.append(_Route(sink, when))

    def bind(self, media: Resampler) -> None:
        """The engine whose live tracks :meth:`refresh` has sampled again."""
        self._media = media

    def refresh(self, room_id: str) -> None:
        """Who wants the room's video may have changed: have the engine ask again."""
        if self._media is not None:
            self._media.resample(room_id)

    # -- media.FrameSink --------------------------------------------------------------------------

    def wants(self, stream: StreamKey) -> bool:
        return any(self._wanted_by(route, stream) for route in self._routes)

    def stream_started(self, stream: StreamKey) -> None:
        started = self._open.setdefault(stream, set())
        for index, route in enumerate(self._routes):
            if index not in started and self._wanted_by(route, stream):
                self._call(route, route.sink.stream_started, stream)
                started.add(index)

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        started = self._open.setdefault(stream, set())
        for index, route in enumerate(self._routes):
            wanted = self._wanted_by(route, stream)
            if wanted and index not in started:
                self._call(route, route.sink.stream_started, stream)
                started.add(index)
            elif not wanted and index in started:
                started.discard(index)
                self._call(route, route.sink.stream_ended, stream)
            if wanted:
                self._call(route, route.sink.frame_sampled, stream, image, ts)

    def stream_ended(self, stream: StreamKey) -> None:
        # Ended for every sink that was told it started, even one that no longer wants it.
        for index in sorted(self._open.pop(stream, ())):
            route = self._routes[index]
            self._call(route, route.sink.stream_ended, stream)

    # -- internals --------------------------------------------------------------------------------

    @staticmethod
    def _wanted_by(route: _Route, stream: StreamKey) -> bool:
        try:
            if route.when is not None and not route.when(stream):
                return False
            return bool(route.sink.wants(stream))
        except Exception:
            logger.exception(
                "frame sink %r failed to say whether it wants %s", route.sink, stream.id
            )
            return False

    @staticmethod
    def _call(route: _Route, method: Callable[..., None], *args: Any) -> None:
        # One sink's failure must not keep the frame from the others, nor reach the sampler.
        try:
            method(*args)
        except Exception:
            logger.exception("frame sink %r failed in %s", route.sink, method.__name__)
