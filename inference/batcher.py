"""Dynamic batching of frames from many streams into model runs (Triton's dynamic batcher rules).

- A batch is formed when ``max_batch`` requests are queued, or when the **oldest** queued
  request has waited ``max_delay_ms``, whichever comes first (a lone request waits at most the
  delay; under load batches fill without waiting).
- The queue is bounded (``queue_size``). When it is full, a new frame replaces the oldest queued
  frame *of its own stream* if there is one, else the globally oldest frame; the dropped
  request's future fails with :class:`~inference.errors.FrameDropped` and the drop is counted.
  Live grading wants the newest picture, never a growing backlog.
- Fairness: a batch takes one request per stream per round, streams ordered by how long their
  oldest request has waited, so a stream sending many frames cannot starve a quiet one.
- Preprocessing and the model run in a dedicated ``ThreadPoolExecutor`` with an explicit thread
  count (``concurrency`` batches in flight), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aioutil import cancel_and_wait

from .contract import ModelInfo
from .errors import BatcherClosed, FrameDropped, InferenceError
from .preprocess import to_model_input

__all__ = ["BatchModel", "BatcherMetrics", "DynamicBatcher", "Prediction"]

logger = logging.getLogger(__name__)

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BatchModel(Protocol):
    """What the batcher runs: a :class:`~inference.session.Grader` or a test double."""

    @property
    def info(self) -> ModelInfo: ...

    def predict(
        self, batch: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]: ...


class FrameBatcher(Protocol):
    """What the analyzers submit frames to: the local :class:`DynamicBatcher` or a remote one
    (``inference.remote.RemoteBatcher``)."""

    @property
    def info(self) -> ModelInfo: ...

    async def submit(self, stream_id: str, image: np.ndarray[Any, Any]) -> Prediction: ...

    async def aclose(self, drain: bool = True, drain_timeout: float | None = 10.0) -> None: ...


class BatcherMetrics:
    """Prometheus metrics of the batcher and the per-stream analyzers, in a given registry."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "inspect_inference") -> None:
        self.batch_size = Histogram(
            f"{prefix}_batch_size",
            "Requests per model run",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            f"{prefix}_queue_wait_seconds",
            "Time a frame waited in the batcher queue",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_latency_seconds",
            "Preprocessing plus model run time of one batch",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.drops = Counter(
            f"{prefix}_dropped_frames",
            "Frames dropped before the model, by reason",
            ["reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            f"{prefix}_queue_depth", "Frames waiting in the batcher queue", registry=registry
        )
        self.failures = Counter(
            f"{prefix}_failed_batches", "Model runs that raised", registry=registry
        )
        self.frames = Counter(
            f"{prefix}_frames",
            "Sampled frames seen by the analyzers, by outcome "
            "(analysed, skipped_quality, replaced, dropped, failed)",
            ["outcome"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's output for one frame, with the labels it is keyed by."""

    grade_probs: tuple[float, ...]
    damage_probs: tuple[float, ...]
    grade_labels: tuple[str, ...]
    damage_labels: tuple[str, ...]
    model_version: str
    #: Size of the batch this frame ran in.
    batch_size: int
    queue_wait_ms: float
    #: Preprocessing + model time of that batch.
    latency_ms: float

    @property
    def grade(self) -> str:
        """The most probable grade label."""
        return self.grade_labels[int(np.argmax(self.grade_probs))]

    def grades(self) -> dict[str, float]:
        return dict(zip(self.grade_labels, self.grade_probs, strict=True))

    def damages(self) -> dict[str, float]:
        return dict(zip(self.damage_labels, self.damage_probs, strict=True))


@dataclass(slots=True)
class _Request:
    stream_id: str
    image: np.ndarray[Any, Any]
    future: asyncio.Future[Prediction]
    enqueued: float
    seq: int
    waited: float = field(default=0.0)


class DynamicBatcher:
    """Collects frames from many streams and runs them through the model in batches.

    ``submit`` is called on the event loop; results come back as :class:`Prediction`.
    ``start()`` must be called before ``submit``; ``aclose()`` stops it (idempotent).
    """

    def __init__(
        self,
        model: BatchModel,
        *,
        max_batch: int = 16,
        max_delay_ms: float = 10.0,
        queue_size: int = 64,
        executor: ThreadPoolExecutor | None = None,
        concurrency: int = 1,
        metrics: BatcherMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "inference-batcher",
    ) -> None:
        if max_batch < 1 or queue_size < 1 or concurrency < 1 or max_delay_ms < 0:
            raise ValueError(
                "max_batch, queue_size and concurrency must be >= 1, max_delay_ms >= 0"
            )
        self._model = model
        self.info = model.info
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.queue_size = queue_size
        self._own_executor = executor is None
        # The model gets its own threads: never the loop's default executor, which other
        # blocking work (DNS, files) shares.
        self._executor = executor or ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="inference"
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._metrics = metrics
        self._clock = clock
        self._name = name
        self._streams: dict[str, deque[_Request]] = {}
        self._depth = 0
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = False
        #: Counters (also exported as metrics when ``metrics`` is given).
        self.dropped = 0
        self.batches = 0
        self.completed = 0

    # -- public --------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Requests waiting in the queue."""
        return self._depth

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    def start(self) -> None:
        """Start the batching task (on the running loop). Idempotent."""
        if self._closed or self._closing:
            raise BatcherClosed("batcher is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def submit(self, stream_id: str, image: np.ndarray[Any, Any]) -> Prediction:
        """Queue one H x W x 3 uint8 RGB frame and wait for its prediction.

        Raises :class:`FrameDropped` when a newer frame pushed it out of the full queue,
        :class:`BatcherClosed` when the batcher is closing, :class:`InferenceError` when the
        model failed. Cancelling the call removes the request from the batch it would join.
        """
        if self._task is None or self._closing or self._task.done():
            raise BatcherClosed("inference batcher is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        if self._depth >= self.queue_size:
            self._drop_for(stream_id)
        self._seq += 1
        request = _Request(stream_id, image, future, self._clock(), self._seq)
        queue = self._streams.get(stream_id)
        if queue is None:
            queue = self._streams[stream_id] = deque()
        queue.append(request)
        self._depth += 1
        self._set_depth()
        self._wakeup.set()
        try:
            return await future
        except asyncio.CancelledError:
            self._remove(request)
            raise

    async def aclose(self, drain: bool = True, drain_timeout: float | None = 10.0) -> None:
        """Stop taking requests. ``drain``: run what is queued first (up to ``drain_timeout``
        seconds); otherwise, or past the timeout, queued requests fail with
        :class:`BatcherClosed`. Batches already running always complete. Idempotent."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        task = self._task
        if task is not None:
            if drain and not task.done():
                try:
                    async with asyncio.timeout(drain_timeout):
                        await asyncio.shield(task)
                except TimeoutError:
                    logger.warning("inference batcher drain timed out with %d queued", self._depth)
                except Exception:
                    pass  # the loop logged its own failure
            if not task.done():
                await cancel_and_wait(task)
        self._fail_all(BatcherClosed("inference batcher closed before this frame ran"))
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self._closed = True
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # -- queue ---------------------------------------------------------------------------------

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._depth)

    def _count_drop(self, reason: str) -> None:
        self.dropped += 1
        if self._metrics is not None:
            self._metrics.drops.labels(reason=reason).inc()

    def _drop_for(self, stream_id: str) -> None:
        """Make room for one request of ``stream_id``: its own oldest first, else the oldest."""
        own = self._streams.get(stream_id)
        if own:
            victim = own.popleft()
        else:
            oldest = min(
                (q for q in self._streams.values() if q), key=lambda q: q[0].seq, default=None
            )
            if oldest is None:
                return
            victim = oldest.popleft()
        self._forget_empty(victim.stream_id)
        self._depth -= 1
        self._count_drop("queue_full")
        if not victim.future.done():
            victim.future.set_exception(FrameDropped(victim.stream_id, "queue_full"))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped queued frame", extra={"stream_id": victim.stream_id})

    def _forget_empty(self, stream_id: str) -> None:
        queue = self._streams.get(stream_id)
        if queue is not None and not queue:
            del self._streams[stream_id]

    def _remove(self, request: _Request) -> None:
        queue = self._streams.get(request.stream_id)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(request)
            self._depth -= 1
            self._set_depth()
        self._forget_empty(request.stream_id)

    def _oldest_enqueued(self) -> float | None:
        heads = [q[0].enqueued for q in self._streams.values() if q]
        return min(heads) if heads else None

    def _take_batch(self) -> list[_Request]:
        """Up to ``max_batch`` requests, one per stream per round, longest-waiting first."""
        batch: list[_Request] = []
        while len(batch) < self.max_batch and self._depth:
            order = sorted((q for q in self._streams.values() if q), key=lambda q: q[0].seq)
            for queue in order:
                if len(batch) >= self.max_batch:
                    break
                request = queue.popleft()
                self._depth -= 1
                if not request.future.done():  # cancelled by its caller meanwhile
                    batch.append(request)
            for stream_id in [s for s, q in self._streams.items() if not q]:
                del self._streams[stream_id]
        self._set_depth()
        return batch

    def _fail_all(self, error: InferenceError) -> None:
        for queue in self._streams.values():
            for request in queue:
                if not request.future.done():
                    request.future.set_exception(error)
                    self._count_drop("closed")
        self._streams.clear()
        self._depth = 0
        self._set_depth()

    # -- loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Form batches and hand them to the executor; exits when closing and drained."""
        try:
            while True:
                # A free slot first: while every slot is busy, requests keep arriving and the
                # next batch is larger, which is what a busy model wants.
                await self._slots.acquire()
                try:
                    batch = await self._gather()
                except BaseException:
                    self._slots.release()
                    raise
                if not batch:
                    self._slots.release()
                    if self._closing:
                        break
                    continue
                task = asyncio.get_running_loop().create_task(
                    self._execute(batch), name=f"{self._name}-run-{self.batches}"
                )
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("inference batcher loop failed")
            self._fail_all(InferenceError("inference batcher stopped", code="batcher_failed"))
            raise
        finally:
            logger.debug("inference batcher loop exited")

    async def _gather(self) -> list[_Request]:
        """Wait for the batch rule (full, or oldest waited max_delay, or closing) to hold."""
        while True:
            if self._depth >= self.max_batch or (self._closing and self._depth):
                return self._take_batch()
            if self._closing:
                return []
            oldest = self._oldest_enqueued()
            if oldest is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            remaining = oldest + self.max_delay - self._clock()
            if remaining <= 0:
                return self._take_batch()
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    async def _execute(self, batch: list[_Request]) -> None:
        try:
            now = self._clock()
            for request in batch:
                request.waited = max(0.0, now - request.enqueued)
            self.batches += 1
            images = [r.image for r in batch]
            loop = asyncio.get_running_loop()
            try:
                grade, damage, seconds = await loop.run_in_executor(
                    self._executor, self._infer, images
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("inference batch of %d failed", len(batch))
                if self._metrics is not None:
                    self._metrics.failures.inc()
                error = InferenceError(f"model run failed: {exc}", code="inference_failed")
                error.__cause__ = exc
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                return
            info = self.info
            n = len(batch)
            if self._metrics is not None:
                self._metrics.batch_size.observe(n)
                self._metrics.latency.observe(seconds)
            for i, request in enumerate(batch):
                if self._metrics is not None:
                    self._metrics.queue_wait.observe(request.waited)
                if request.future.done():
                    continue
                request.future.set_result(
                    Prediction(
                        grade_probs=tuple(float(v) for v in grade[i]),
                        damage_probs=tuple(float(v) for v in damage[i]),
                        grade_labels=info.grade_labels,
                        damage_labels=info.damage_labels,
                        model_version=info.version,
                        batch_size=n,
                        queue_wait_ms=request.waited * 1000.0,
                        latency_ms=seconds * 1000.0,
                    )
                )
                self.completed += 1
        finally:
            self._slots.release()

    def _infer(
        self, images: Sequence[np.ndarray[Any, Any]]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], float]:
        """Executor side: preprocess the whole batch, run the model, check the output shape."""
        start = time.perf_counter()
        batch = to_model_input(images, self.info.input_size, self.info.resize)
        grade, damage = self._model.predict(batch)
        n = len(images)
        if grade.shape != (n, len(self.info.grade_labels)) or damage.shape != (
            n,
            len(self.info.damage_labels),
        ):
            raise InferenceError(
                f"model returned grade_probs {grade.shape} / damage_probs {damage.shape} for a "
                f"batch of {n}",
                code="inference_failed",
            )
        return grade, damage, time.perf_counter() - start
