"""The per-stream grading pipeline the media sampler feeds, and the registry of them.

For each sampled frame: quality gate (unusable frames are counted, not graded) -> sharpest
frames kept as snapshot candidates -> codes read (every ``codes_every``-th frame) -> the dynamic
batcher -> the session's live assessment -> ``on_update(snapshot)`` at most every
``update_interval_ms`` (at once when a code that matches the case is first read). Beside it,
on a thread of its own, the text on labels (serials, IMEIs, model numbers) is read from one
frame every ``labels_every_s`` when a :class:`~inference.labels.LabelReader` is given.

:meth:`StreamAnalyzer.offer` never blocks and never queues: one frame is processed and at most
one waits; a newer frame replaces the waiting one and the replacement is counted as a drop.
The live video never waits for grading.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from aioutil import cancel_and_wait

from .assessment import AssessmentConfig, SessionAssessment
from .batcher import BatcherMetrics, FrameBatcher, Prediction
from .codes import ReadCode, match_codes, read_codes
from .errors import BatcherClosed, FrameDropped, InferenceError
from .labels import LabelReader, match_label
from .quality import BestFrames, FrameQuality, SnapshotCandidate, assess_quality

__all__ = ["AnalysisHub", "OnUpdate", "StreamAnalyzer"]

logger = logging.getLogger(__name__)

#: Receives the JSON-ready snapshot of :meth:`SessionAssessment.snapshot`; may be async.
OnUpdate = Callable[[dict[str, Any]], Awaitable[None] | None]


class StreamAnalyzer:
    """Grades one stream's sampled frames; created by :meth:`AnalysisHub.open`.

    ``offer`` must be called on the event loop thread (the media sampler's tap runs there).
    """

    def __init__(
        self,
        stream_id: str,
        batcher: FrameBatcher,
        executor: ThreadPoolExecutor,
        *,
        refs: Mapping[str, str | None] | None = None,
        on_update: OnUpdate | None = None,
        codes_every: int = 2,
        update_interval_ms: float = 500.0,
        best_frames: int = 4,
        best_gap_s: float = 1.0,
        config: AssessmentConfig | None = None,
        metrics: BatcherMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        labels: LabelReader | None = None,
        label_executor: ThreadPoolExecutor | None = None,
        labels_every_s: float = 3.0,
    ) -> None:
        self.stream_id = stream_id
        self._labels = labels if label_executor is not None else None
        self._label_executor = label_executor
        self.labels_every_s = labels_every_s
        self._label_task: asyncio.Task[None] | None = None
        self._last_label = float("-inf")
        self._batcher = batcher
        self._executor = executor
        self.on_update = on_update
        self.codes_every = max(1, codes_every)
        self._interval = update_interval_ms / 1000.0
        self._metrics = metrics
        self._clock = clock
        info = batcher.info
        self.assessment = SessionAssessment(
            info.grade_labels, info.damage_labels, stream_id=stream_id, refs=refs, config=config
        )
        self.best_frames = BestFrames(best_frames, best_gap_s)
        self._pending: tuple[np.ndarray[Any, Any], float] | None = None
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dirty = False
        self._force = False
        self._last_emit = float("-inf")
        #: Frames offered / replaced while one was in progress / processed.
        self.offered = 0
        self.replaced = 0
        self.processed = 0

    @property
    def refs(self) -> dict[str, str]:
        return self.assessment.refs

    def set_refs(self, refs: Mapping[str, str | None]) -> None:
        """Case references (order_id, tracking_number, unit_id...) that read codes may match."""
        self.assessment.refs = {k: v for k, v in refs.items() if v}

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"analyzer:{self.stream_id}"
            )

    def offer(self, image: np.ndarray[Any, Any], ts: float) -> None:
        """Hand over one H x W x 3 uint8 RGB frame sampled at wall-clock ``ts``; returns at once.

        If a frame is already waiting (the previous one is still being graded), the new one
        replaces it and the replaced frame is counted as dropped.
        """
        if self._closed:
            return
        self.offered += 1
        if self._pending is not None:
            self.replaced += 1
            self.assessment.add_dropped()
            self._count("replaced")
        self._pending = (image, ts)
        self._idle.clear()
        self._ready.set()

    async def wait_idle(self) -> None:
        """Wait until every offered frame has been processed or dropped (e.g. before taking the
        final snapshot of a session)."""
        await self._idle.wait()

    def snapshot(self) -> dict[str, Any]:
        """The current live view (what ``on_update`` receives)."""
        view = self.assessment.snapshot()
        view["snapshot_candidates"] = [
            {"ts": c.ts, "sharpness": round(c.sharpness, 1), "width": c.width, "height": c.height}
            for c in self.best_frames.candidates()
        ]
        return view

    def snapshot_candidates(self) -> list[SnapshotCandidate]:
        """The sharpest frames so far, JPEG-encoded, in time order (evidence snapshots)."""
        return self.best_frames.candidates()

    async def aclose(self) -> dict[str, Any]:
        """Stop (the frame in progress is abandoned); returns the final snapshot. Idempotent."""
        self._closed = True
        self._pending = None
        self._idle.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        label_task, self._label_task = self._label_task, None
        await cancel_and_wait(label_task)
        return self.snapshot()

    # -- worker --------------------------------------------------------------------------------

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.frames.labels(outcome=outcome).inc()

    async def _run(self) -> None:
        try:
            while True:
                if self._pending is None:
                    self._ready.clear()
                    if self._dirty:
                        wait = self._last_emit + self._interval - self._clock()
                        try:
                            async with asyncio.timeout(max(0.0, wait)):
                                await self._ready.wait()
                        except TimeoutError:
                            pass
                    else:
                        await self._ready.wait()
                if self._pending is not None:
                    image, ts = self._pending
                    self._pending = None
                    await self._process(image, ts)
                if self._pending is None:
                    self._idle.set()
                await self._maybe_emit()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("stream analyzer failed", extra={"stream_id": self.stream_id})
        finally:
            logger.debug("stream analyzer exited", extra={"stream_id": self.stream_id})

    def _prepare(
        self, image: np.ndarray[Any, Any], ts: float, want_codes: bool
    ) -> tuple[FrameQuality, list[ReadCode]]:
        """Executor side: quality gate, snapshot candidate, codes."""
        quality = assess_quality(image)
        if quality.usable:
            self.best_frames.offer(image, ts, quality)
        codes: list[ReadCode] = []
        # A label held close to the camera may read as blurry or overexposed and still decode.
        if want_codes and quality.reason != "too_dark":
            codes = read_codes(image)
        return quality, codes

    async def _process(self, image: np.ndarray[Any, Any], ts: float) -> None:
        index = self.processed
        self.processed += 1
        loop = asyncio.get_running_loop()
        quality, codes = await loop.run_in_executor(
            self._executor, self._prepare, image, ts, index % self.codes_every == 0
        )
        if quality.reason != "too_dark":
            self._maybe_read_label(image, ts)
        if codes:
            matches = match_codes(codes, self.assessment.refs)
            new = self.assessment.add_codes(codes, matches, ts)
            if any(entry["matches"] for entry in new):
                self._force = True  # a code links the session to its case: show it now
            self._dirty = True
        if not quality.usable:
            self.assessment.add_skipped(quality, ts)
            self._count("skipped_quality")
            self._dirty = True
            return
        try:
            prediction = await self._batcher.submit(self.stream_id, image)
        except FrameDropped:
            self.assessment.add_dropped()
            self._count("dropped")
            return
        except BatcherClosed:
            self.assessment.add_failed()
            self._count("failed")
            return
        except InferenceError as exc:
            self.assessment.add_failed()
            self._count("failed")
            logger.warning(
                "grading failed: %s", exc, extra={"stream_id": self.stream_id, "code": exc.code}
            )
            self._dirty = True
            return
        self.assessment.add_prediction(prediction, quality, ts)
        self._count("analysed")
        self._dirty = True

    def _maybe_read_label(self, image: np.ndarray[Any, Any], ts: float) -> None:
        """Read the text on labels in this frame, beside the grading: at most one reading at a
        time and one every ``labels_every_s`` (a reading costs about a second of a core)."""
        if self._labels is None or self._label_task is not None or self._closed:
            return
        now = self._clock()
        if now - self._last_label < self.labels_every_s:
            return
        self._last_label = now
        self._label_task = asyncio.get_running_loop().create_task(
            self._read_label(self._labels, image, ts), name=f"labels:{self.stream_id}"
        )

    async def _read_label(
        self, reader: LabelReader, image: np.ndarray[Any, Any], ts: float
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
            fields = await loop.run_in_executor(self._label_executor, reader.fields, image)
            if fields:
                matches = match_label(fields, self.assessment.refs)
                new = self.assessment.add_labels(fields, matches, ts)
                if matches:
                    self._force = True  # the unit's own serial: show it now
                if new or matches:
                    self._dirty = True
                    self._ready.set()  # the worker emits the update
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("reading labels failed", extra={"stream_id": self.stream_id})
        finally:
            self._label_task = None

    async def _maybe_emit(self) -> None:
        if not self._dirty or self.on_update is None:
            return
        now = self._clock()
        if not self._force and now - self._last_emit < self._interval:
            return
        self._dirty = self._force = False
        self._last_emit = now
        try:
            result = self.on_update(self.snapshot())
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("on_update callback failed", extra={"stream_id": self.stream_id})


class AnalysisHub:
    """The stream analyzers of this process, keyed by stream id, sharing one batcher and one
    executor for the per-frame CPU work (quality, JPEG, codes).

    The hub does not own the batcher: whoever created it closes it after the hub.
    """

    def __init__(
        self,
        batcher: FrameBatcher,
        *,
        frame_threads: int = 2,
        executor: ThreadPoolExecutor | None = None,
        codes_every: int = 2,
        update_interval_ms: float = 500.0,
        best_frames: int = 4,
        best_gap_s: float = 1.0,
        config: AssessmentConfig | None = None,
        metrics: BatcherMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        labels: LabelReader | None = None,
        labels_every_s: float = 3.0,
    ) -> None:
        self.batcher = batcher
        # Label reading has its own thread: a second-long OCR never holds up the frames.
        self._label_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-labels")
            if labels is not None
            else None
        )
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=frame_threads, thread_name_prefix="inference-frames"
        )
        self._options: dict[str, Any] = {
            "codes_every": codes_every,
            "update_interval_ms": update_interval_ms,
            "best_frames": best_frames,
            "best_gap_s": best_gap_s,
            "config": config,
            "metrics": metrics,
            "clock": clock,
            "labels": labels,
            "label_executor": self._label_executor,
            "labels_every_s": labels_every_s,
        }
        self._analyzers: dict[str, StreamAnalyzer] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._analyzers)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._analyzers

    def __iter__(self) -> Iterator[StreamAnalyzer]:
        return iter(list(self._analyzers.values()))

    def open(
        self,
        stream_id: str,
        refs: Mapping[str, str | None] | None = None,
        on_update: OnUpdate | None = None,
    ) -> StreamAnalyzer:
        """Start analysing ``stream_id`` (on the running loop). Opening an open stream updates
        its refs and callback and returns the same analyzer."""
        if self._closed:
            raise BatcherClosed("analysis hub is closed")
        analyzer = self._analyzers.get(stream_id)
        if analyzer is not None:
            if refs is not None:
                analyzer.set_refs(refs)
            if on_update is not None:
                analyzer.on_update = on_update
            return analyzer
        analyzer = StreamAnalyzer(
            stream_id,
            self.batcher,
            self._executor,
            refs=refs,
            on_update=on_update,
            **self._options,
        )
        analyzer.start()
        self._analyzers[stream_id] = analyzer
        logger.debug("analysing stream", extra={"stream_id": stream_id})
        return analyzer

    def get(self, stream_id: str) -> StreamAnalyzer | None:
        return self._analyzers.get(stream_id)

    def offer(self, stream_id: str, image: np.ndarray[Any, Any], ts: float) -> bool:
        """Pass a frame to the stream's analyzer; False when the stream is not open."""
        analyzer = self._analyzers.get(stream_id)
        if analyzer is None:
            return False
        analyzer.offer(image, ts)
        return True

    async def assess_still(
        self, image: np.ndarray[Any, Any], *, refs: Mapping[str, str | None], still_id: str
    ) -> dict[str, Any]:
        """Grade one still image (a photo the customer sent) on its own: quality, codes, the
        text on labels and one prediction, as a snapshot of the same shape as a stream's (its
        ``frames`` counts say whether the model graded it). Runs on the hub's executors."""
        if self._closed:
            raise BatcherClosed("analysis hub is closed")
        info = self.batcher.info
        assessment = SessionAssessment(
            info.grade_labels,
            info.damage_labels,
            stream_id=still_id,
            refs=refs,
            config=self._options["config"],
        )
        loop = asyncio.get_running_loop()
        quality = await loop.run_in_executor(self._executor, assess_quality, image)
        codes = await loop.run_in_executor(self._executor, read_codes, image)
        if codes:
            assessment.add_codes(codes, match_codes(codes, assessment.refs))
        reader: LabelReader | None = self._options["labels"]
        if reader is not None and self._label_executor is not None:
            fields = await loop.run_in_executor(self._label_executor, reader.fields, image)
            if fields:
                assessment.add_labels(fields, match_label(fields, assessment.refs))
        # A photo is graded whatever its quality: it was taken on purpose, and its quality is
        # kept beside the grade for whoever reads the record.
        try:
            prediction = await self._submit_still(still_id, image)
        except (FrameDropped, BatcherClosed):
            assessment.add_dropped()
            assessment.last_quality = quality
        except InferenceError as exc:
            assessment.add_failed()
            assessment.last_quality = quality
            logger.warning("grading a still failed: %s", exc, extra={"stream_id": still_id})
        else:
            # Counted as usable so that its grade shows; its real quality stays in the view.
            assessment.add_prediction(prediction, replace(quality, usable=True, reason=None))
            assessment.last_quality = quality
        return assessment.snapshot()

    async def _submit_still(self, still_id: str, image: np.ndarray[Any, Any]) -> Prediction:
        """A photo is one frame asked for on purpose: pushed out of a full queue by the live
        video's frames, it is queued again (three tries) rather than left ungraded."""
        for attempt in range(2):
            try:
                return await self.batcher.submit(still_id, image)
            except FrameDropped:
                await asyncio.sleep(0.05 * (attempt + 1))
        return await self.batcher.submit(still_id, image)

    async def close(self, stream_id: str) -> dict[str, Any] | None:
        """Stop analysing ``stream_id``; returns its final snapshot (None if it was not open)."""
        analyzer = self._analyzers.pop(stream_id, None)
        if analyzer is None:
            return None
        return await analyzer.aclose()

    async def aclose(self) -> None:
        """Close every analyzer and the hub's own executor. Idempotent."""
        self._closed = True
        analyzers, self._analyzers = list(self._analyzers.values()), {}
        for analyzer in analyzers:
            await analyzer.aclose()
        if self._own_executor:
            self._executor.shutdown(wait=False)
        if self._label_executor is not None:
            self._label_executor.shutdown(wait=False)
