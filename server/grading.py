"""Live grading wired together: media's sampled frames -> inference's analyzers -> the agent's
socket, and the model's view kept with the case.

:class:`GradingService` is the ``media.FrameSink``. A published video track becomes one stream
analyzer; every update goes to the staff in the case's room as an ``analysis`` message; when the
track ends the final view is stored on the case, and the sharpest frames stay available to the
agent console as JPEG snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from redis import asyncio as aioredis

import inference
from inference import (
    AnalysisHub,
    BatcherMetrics,
    DynamicBatcher,
    Grader,
    SnapshotCandidate,
    derive_grade,
)
from inference.batcher import FrameBatcher
from inference.remote import RemoteBatcher, RemoteKeys
from media import StreamKey

from aioutil import OwnedTasks
from .settings import Settings

__all__ = ["DEFAULT_MODEL", "GradingService", "build_grading_record", "open_grading"]

logger = logging.getLogger(__name__)

#: The model shipped with the package (trained on synthetic images; see the README).
DEFAULT_MODEL = Path(inference.__file__).parent / "models" / "grader-v1.onnx"
#: Cases whose last snapshots are kept in memory for the console.
KEPT_CASES = 256
#: What an ``analysis`` message leaves out of a snapshot (the console does not need it).
_HEAVY_KEYS = ("snapshot_candidates",)

Publish = Callable[[str, Mapping[str, Any]], Awaitable[None]]
LookupRefs = Callable[[str], Awaitable[Mapping[str, str | None]]]
StoreView = Callable[[str, Mapping[str, Any]], Awaitable[None]]


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
        self._streams: dict[str, StreamKey] = {}
        self._closed = False

    # -- media.FrameSink ----------------------------------------------------------------------

    def stream_started(self, stream: StreamKey) -> None:
        if self._closed:
            return
        self._streams[stream.id] = stream
        self._open(stream)
        # The case's references are looked up at once; they land long before the first frame.
        self._tasks.spawn(self._set_refs(stream.room_id, stream.id), f"grading-refs-{stream.id}")
        logger.info("grading stream %s", stream.id, extra={"case_id": stream.room_id})

    def _open(self, stream: StreamKey, refs: Mapping[str, str | None] | None = None) -> None:
        case_id = stream.room_id

        async def on_update(snapshot: dict[str, Any]) -> None:
            self._remember(case_id, stream.id, snapshot)
            await self._publish(
                case_id, {"type": "analysis", "case_id": case_id, "assessment": compact(snapshot)}
            )

        self._analyzers.open(stream.id, refs=refs, on_update=on_update)

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        self._analyzers.offer(stream.id, image, ts)

    def stream_ended(self, stream: StreamKey) -> None:
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

    async def _finish(self, stream: StreamKey) -> None:
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


@dataclass(slots=True)
class GradingStack:
    """The analyzers of one process and what grades their frames: a local model session and
    batcher, or remote workers through Redis (``grader`` is then ``None``)."""

    grader: Grader | None
    batcher: FrameBatcher
    analyzers: AnalysisHub
    redis: aioredis.Redis | None = None

    async def aclose(self) -> None:
        await self.analyzers.aclose()
        await self.batcher.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def _threads(settings: Settings) -> int:
    if settings.inference_threads:
        return settings.inference_threads
    # Half the cores: the media plane (decoding, the event loop) needs the rest.
    return max(1, (os.cpu_count() or 2) // 2)


async def open_grading(settings: Settings, metrics: BatcherMetrics | None) -> GradingStack:
    """Load the model (refusing one that breaks the contract) and start the batcher; or, with
    ``remote_inference``, connect to the ``inspectd worker`` pool through Redis."""
    if settings.remote_inference:
        client = aioredis.from_url(settings.redis_url)
        remote = RemoteBatcher(
            client,
            node_id=f"{socket.gethostname()}-{os.getpid()}",
            keys=RemoteKeys(settings.redis_prefix),
            queue_size=settings.batch_queue,
            timeout_s=settings.remote_inference_timeout_s,
        )
        try:
            await remote.start()
        except BaseException:
            await client.aclose()
            raise
        return GradingStack(None, remote, AnalysisHub(remote, metrics=metrics), redis=client)
    path = settings.model_path or DEFAULT_MODEL
    loop = asyncio.get_running_loop()
    grader = await loop.run_in_executor(
        None,
        lambda: Grader.load(
            path, providers=settings.inference_provider, intra_op_threads=_threads(settings)
        ),
    )
    logger.info(
        "grading model %s on %s", grader.info.version, grader.provider, extra={"model": str(path)}
    )
    batcher = DynamicBatcher(
        grader,
        max_batch=settings.batch_max,
        max_delay_ms=settings.batch_delay_ms,
        queue_size=settings.batch_queue,
        metrics=metrics,
    )
    batcher.start()
    return GradingStack(grader, batcher, AnalysisHub(batcher, metrics=metrics))


def build_grading_record(
    facts: Mapping[str, Any],
    *,
    model_view: Mapping[str, Any] | None,
    override: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a return decision stores about the grade: the model's view (evidence, not the
    verdict), the grade the rule table derives from the agent's facts, the agent's override if
    any, and the final grade with its resale channel."""
    derived = derive_grade(facts)
    final = str(override["grade"]) if override else derived.grade.value
    channel = derived.channel if not override else inference.resale_channel(final)
    return {
        "model": dict(model_view) if model_view is not None else None,
        "derived": derived.as_dict(),
        "override": dict(override) if override else None,
        "final_grade": final,
        "source": "override" if override else "rules",
        "rules_version": derived.rules_version,
        "resale_channel": channel.as_dict(),
    }
