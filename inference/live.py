"""The live grading pipeline: sampled video frames -> stream analyzers -> the agent's socket, and
the model's final view kept with the case.

:class:`GradingService` takes the frames media samples (it fits ``media.FrameSink``; its streams
are typed by :class:`LiveStream`, which media's ``StreamKey`` satisfies). A published video track
becomes one stream analyzer; every update is published to the staff of the stream's room as an
``analysis`` message; when the track ends the final view is stored, and the sharpest frames stay
available to the agent console as JPEG snapshots.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aioutil import OwnedTasks

from .analyzer import AnalysisHub
from .quality import SnapshotCandidate

__all__ = ["GradingService", "LiveStream", "compact"]

logger = logging.getLogger(__name__)

#: Rooms whose last snapshots are kept in memory for the console.
KEPT_CASES = 256
#: What an ``analysis`` message leaves out of a snapshot (the console does not need it).
_HEAVY_KEYS = ("snapshot_candidates",)

#: ``publish(room_id, message)``: send an ``analysis`` message to the room's staff.
Publish = Callable[[str, Mapping[str, Any]], Awaitable[None]]
#: ``lookup_refs(room_id)``: the order, tracking number and unit that read codes may match.
LookupRefs = Callable[[str], Awaitable[Mapping[str, str | None]]]
#: ``store_view(room_id, view)``: keep the model's final view of a stream.
StoreView = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class LiveStream(Protocol):
    """One published video track as the pipeline sees it."""

    @property
    def id(self) -> str: ...

    @property
    def room_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Frames:
    stream_id: str
    candidates: tuple[SnapshotCandidate, ...]


def compact(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a snapshot that is stored with the case and sent to the console."""
    return {key: value for key, value in snapshot.items() if key not in _HEAVY_KEYS}


class GradingService:
    """Fits ``media.FrameSink``; every method returns at once (work runs in owned tasks)."""

    def __init__(
        self,
        analyzers: AnalysisHub,
        *,
        publish: Publish,
        lookup_refs: LookupRefs,
        store_view: StoreView,
    ) -> None:
        self._analyzers = analyzers
        self._publish = publish
        self._lookup_refs = lookup_refs
        self._store_view = store_view
        self._latest: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._frames: OrderedDict[str, _Frames] = OrderedDict()
        self._tasks = OwnedTasks()
        #: Open streams by id (a room's streams are reopened by :meth:`begin_segment`).
        self._streams: dict[str, LiveStream] = {}
        self._closed = False

    # -- media.FrameSink ----------------------------------------------------------------------

    def wants(self, stream: LiveStream) -> bool:
        """Every stream offered is graded (the wiring offers only the rooms that are)."""
        return True

    def stream_started(self, stream: LiveStream) -> None:
        if self._closed:
            return
        self._streams[stream.id] = stream
        self._open(stream)
        # The case's references are looked up at once; they land long before the first frame.
        self._tasks.spawn(self._set_refs(stream.room_id, stream.id), f"grading-refs-{stream.id}")
        logger.info("grading stream %s", stream.id, extra={"case_id": stream.room_id})

    def _open(self, stream: LiveStream, refs: Mapping[str, str | None] | None = None) -> None:
        case_id = stream.room_id

        async def on_update(snapshot: dict[str, Any]) -> None:
            self._remember(case_id, stream.id, snapshot)
            await self._publish(
                case_id, {"type": "analysis", "case_id": case_id, "assessment": compact(snapshot)}
            )

        self._analyzers.open(stream.id, refs=refs, on_update=on_update)

    def frame_sampled(self, stream: LiveStream, image: np.ndarray[Any, Any], ts: float) -> None:
        self._analyzers.offer(stream.id, image, ts)

    def stream_ended(self, stream: LiveStream) -> None:
        self._streams.pop(stream.id, None)
        if not self._closed:
            self._tasks.spawn(self._finish(stream), f"grading-finish-{stream.id}")

    async def begin_segment(self, room_id: str, refs: Mapping[str, str | None]) -> None:
        """Start the model's view of ``room_id`` afresh: a returns QC station's next parcel is
        graded on its own frames, not averaged with the parcels before it. The room's open
        analyzers are reopened with ``refs`` (e.g. the parcel's tracking number, which a read
        code then matches) and what was kept of the room is dropped."""
        if self._closed:
            return
        self._latest.pop(room_id, None)
        self._frames.pop(room_id, None)
        for stream in [s for s in self._streams.values() if s.room_id == room_id]:
            await self._analyzers.close(stream.id)
            if stream.id in self._streams and not self._closed:
                self._open(stream, refs)

    # -- what the console and the decision read -------------------------------------------------

    def latest(self, case_id: str) -> dict[str, Any] | None:
        """The model's most recent view of a case (live, or final once the stream ended)."""
        snapshot = self._latest.get(case_id)
        return compact(snapshot) if snapshot is not None else None

    def frames(self, case_id: str) -> list[SnapshotCandidate]:
        """The sharpest frames of the case's latest stream, oldest first."""
        kept = self._frames.get(case_id)
        live = None
        if kept is not None:
            live = self._analyzers.get(kept.stream_id)
        if live is not None:
            return live.snapshot_candidates()
        return list(kept.candidates) if kept is not None else []

    async def assess_still(
        self, room_id: str, image: np.ndarray[Any, Any], still_id: str
    ) -> dict[str, Any]:
        """The model's view of one still image of ``room_id`` (a photo), matched against the
        room's references like its video."""
        refs = await self._lookup_refs(room_id)
        return compact(await self._analyzers.assess_still(image, refs=refs, still_id=still_id))

    # -- internals ------------------------------------------------------------------------------

    def _remember(self, case_id: str, stream_id: str, snapshot: dict[str, Any]) -> None:
        self._latest[case_id] = snapshot
        self._latest.move_to_end(case_id)
        previous = self._frames.get(case_id)
        if previous is None or previous.stream_id != stream_id:
            self._frames[case_id] = _Frames(stream_id, ())
        self._frames.move_to_end(case_id)
        for kept in (self._latest, self._frames):
            while len(kept) > KEPT_CASES:
                kept.popitem(last=False)

    async def _set_refs(self, case_id: str, stream_id: str) -> None:
        refs = await self._lookup_refs(case_id)
        analyzer = self._analyzers.get(stream_id)
        if analyzer is not None and any(refs.values()):
            # Nothing to set for a room that is no case (a station sets its own per parcel).
            analyzer.set_refs(refs)

    async def _finish(self, stream: LiveStream) -> None:
        analyzer = self._analyzers.get(stream.id)
        candidates = tuple(analyzer.snapshot_candidates()) if analyzer is not None else ()
        final = await self._analyzers.close(stream.id)
        if final is None:
            return
        case_id = stream.room_id
        self._remember(case_id, stream.id, final)
        self._frames[case_id] = _Frames(stream.id, candidates)
        frames = final.get("frames", {})
        if isinstance(frames, Mapping) and frames.get("analysed", 0):
            await self._store_view(case_id, compact(final))

    async def aclose(self) -> None:
        """Stop every analyzer; pending stores are cancelled. Idempotent."""
        self._closed = True
        await self._tasks.aclose()
        await self._analyzers.aclose()
