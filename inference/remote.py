"""Inference on other hosts: frames go through a Redis stream to ``inspectd worker`` processes.

A node without a GPU grades through a :class:`RemoteBatcher`, which has the
:class:`~inference.batcher.DynamicBatcher` interface the analyzers use (``info``, ``submit``,
``start``, ``aclose``). Each frame is JPEG-encoded and appended to one Redis stream
(``XADD ... MAXLEN ~``: a bounded backlog, oldest trimmed first). Workers read it as one
consumer group (each frame goes to one worker), batch what they read through their own
``DynamicBatcher`` on their own model, append the prediction to the asking node's reply stream
and acknowledge the frame. Frames older than ``stale_s`` when a worker gets to them are
acknowledged and skipped: a late grade of a live picture is worth nothing. Entries a dead
worker read but never acknowledged are claimed by a live one after ``stale_s`` and skipped the
same way.

A worker publishes its model's description under ``<prefix>inference:model``; a node takes its
labels and version from there, so both sides agree on what a prediction means.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
from redis import asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from .batcher import BatcherMetrics, BatchModel, DynamicBatcher, Prediction
from .contract import ModelInfo
from .errors import BatcherClosed, FrameDropped, InferenceError

__all__ = ["RemoteBatcher", "RemoteKeys", "InferenceWorker", "model_info_from_json"]

logger = logging.getLogger(__name__)

GROUP = "inference-workers"


@dataclass(frozen=True, slots=True)
class RemoteKeys:
    """The Redis keys of remote inference, under one prefix."""

    prefix: str = "inspect:"

    @property
    def frames(self) -> str:
        return f"{self.prefix}inference:frames"

    @property
    def model(self) -> str:
        return f"{self.prefix}inference:model"

    @property
    def workers(self) -> str:
        return f"{self.prefix}inference:workers"

    def replies(self, node_id: str) -> str:
        return f"{self.prefix}inference:replies:{node_id}"


def model_info_to_json(info: ModelInfo) -> str:
    data = {f.name: getattr(info, f.name) for f in fields(info)}
    data["metadata"] = dict(info.metadata)
    return json.dumps(data)


def model_info_from_json(text: str | bytes) -> ModelInfo:
    """The :class:`ModelInfo` a worker published (raises ``InferenceError`` if unreadable)."""
    try:
        data = json.loads(text)
        data["grade_labels"] = tuple(data["grade_labels"])
        data["damage_labels"] = tuple(data["damage_labels"])
        data["input_size"] = tuple(data["input_size"])
        data["metadata"] = MappingProxyType(dict(data.get("metadata") or {}))
        return ModelInfo(**data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InferenceError(f"the model description in Redis is unreadable: {exc}") from exc


def encode_frame(image: np.ndarray[Any, Any], quality: int = 90) -> bytes:
    """An RGB frame as JPEG (what travels through Redis: ~20x smaller than raw pixels)."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise InferenceError("JPEG encoding of a frame failed")
    return bytes(data.tobytes())


def decode_frame(data: bytes) -> np.ndarray[Any, Any]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InferenceError("a frame in the stream is not a JPEG")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


@dataclass(slots=True)
class _Pending:
    stream_id: str
    future: asyncio.Future[Prediction]
    sent: float


class RemoteBatcher:
    """Grades frames on ``inspectd worker`` processes through Redis (see the module doc).

    At most ``queue_size`` frames are in flight from this node; past that the oldest one of
    the same stream (else the oldest overall) fails with :class:`FrameDropped`, as in the local
    batcher. A frame not answered within ``timeout_s`` fails with :class:`FrameDropped`
    (reason ``timeout``), so a dead or overloaded worker pool costs grading, never memory.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        node_id: str,
        keys: RemoteKeys | None = None,
        queue_size: int = 64,
        max_backlog: int = 1000,
        timeout_s: float = 5.0,
        wait_for_worker_s: float = 30.0,
        jpeg_quality: int = 90,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self.node_id = node_id
        self.keys = keys or RemoteKeys()
        self.queue_size = queue_size
        self.max_backlog = max_backlog
        self.timeout_s = timeout_s
        self.wait_for_worker_s = wait_for_worker_s
        self._quality = jpeg_quality
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._order: deque[str] = deque()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference-remote-jpeg")
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._info: ModelInfo | None = None
        #: Counters.
        self.sent = 0
        self.completed = 0
        self.dropped = 0
        self.timed_out = 0

    @property
    def info(self) -> ModelInfo:
        """The workers' model (known once :meth:`start` returned)."""
        if self._info is None:
            raise InferenceError("remote inference has not started")
        return self._info

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._reader is not None and not self._reader.done() and not self._closed

    async def start(self) -> None:
        """Take the model description a worker published (waiting up to ``wait_for_worker_s``)
        and start reading replies."""
        deadline = self._clock() + self.wait_for_worker_s
        while True:
            text = await self._redis.get(self.keys.model)
            if text is not None:
                self._info = model_info_from_json(text)
                break
            if self._clock() >= deadline:
                raise InferenceError(
                    f"no inference worker has published a model under {self.keys.model!r} "
                    f"within {self.wait_for_worker_s:.0f} s: start `inspectd worker`"
                )
            await asyncio.sleep(0.2)
        self._reader = asyncio.create_task(self._read_replies(), name="inference-remote-replies")
        logger.info("grading through Redis workers with model %s", self.info.version)

    async def submit(self, stream_id: str, image: np.ndarray[Any, Any]) -> Prediction:
        if not self.running or self._info is None:
            raise BatcherClosed("remote inference is not running")
        if len(self._pending) >= self.queue_size:
            self._drop_for(stream_id)
        loop = asyncio.get_running_loop()
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending[request_id] = _Pending(stream_id, future, self._clock())
        self._order.append(request_id)
        try:
            data = await loop.run_in_executor(self._executor, encode_frame, image, self._quality)
            await self._redis.xadd(
                self.keys.frames,
                {
                    "id": request_id,
                    "node": self.node_id,
                    "stream": stream_id,
                    "ts": repr(time.time()),
                    "image": data,
                },
                maxlen=self.max_backlog,
                approximate=True,
            )
            self.sent += 1
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(future)
        except TimeoutError:
            self.timed_out += 1
            raise FrameDropped(stream_id, "timeout") from None
        except RedisError as exc:
            raise InferenceError(f"Redis is unavailable for inference: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

    def _drop_for(self, stream_id: str) -> None:
        victim = next((rid for rid in self._order if self._is(rid, stream_id)), None)
        while victim is None and self._order:
            candidate = self._order.popleft()
            if candidate in self._pending:
                victim = candidate
        if victim is None:
            return
        pending = self._pending.pop(victim, None)
        if pending is not None and not pending.future.done():
            self.dropped += 1
            pending.future.set_exception(FrameDropped(pending.stream_id, "queue_full"))

    def _is(self, request_id: str, stream_id: str) -> bool:
        pending = self._pending.get(request_id)
        return pending is not None and pending.stream_id == stream_id

    async def _read_replies(self) -> None:
        stream = self.keys.replies(self.node_id)
        last = "$"
        while not self._closed:
            try:
                batches: Any = await self._redis.xread({stream: last}, count=256, block=1000)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                logger.warning("reading inference replies failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            ids = []
            for _, entries in batches or []:
                for entry_id, reply in entries:
                    last = entry_id
                    ids.append(entry_id)
                    self._resolve(reply)
            if ids:
                try:
                    await self._redis.xdel(stream, *ids)
                except RedisError:
                    pass
            while self._order and self._order[0] not in self._pending:
                self._order.popleft()

    def _resolve(self, entry: Mapping[bytes, bytes]) -> None:
        request_id = entry.get(b"id", b"").decode()
        pending = self._pending.get(request_id)
        if pending is None or pending.future.done() or self._info is None:
            return  # answered too late: the caller gave up on it
        try:
            reply = json.loads(entry[b"reply"])
            if "error" in reply:
                pending.future.set_exception(InferenceError(str(reply["error"])))
                return
            waited = (self._clock() - pending.sent) * 1000
            pending.future.set_result(
                Prediction(
                    grade_probs=tuple(float(p) for p in reply["grade_probs"]),
                    damage_probs=tuple(float(p) for p in reply["damage_probs"]),
                    grade_labels=self.info.grade_labels,
                    damage_labels=self.info.damage_labels,
                    model_version=str(reply["model_version"]),
                    batch_size=int(reply["batch_size"]),
                    queue_wait_ms=max(0.0, waited - float(reply["latency_ms"])),
                    latency_ms=float(reply["latency_ms"]),
                )
            )
            self.completed += 1
        except (KeyError, ValueError, TypeError) as exc:
            pending.future.set_exception(InferenceError(f"unreadable inference reply: {exc}"))

    async def aclose(self, drain: bool = True, drain_timeout: float | None = 10.0) -> None:
        """Stop; frames still in flight fail with :class:`BatcherClosed`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed("remote inference closed"))
        self._pending.clear()
        self._executor.shutdown(wait=False)


@dataclass(slots=True)
class WorkerStats:
    graded: int = 0
    stale: int = 0
    failed: int = 0
    claimed: int = 0
    batches: list[int] = field(default_factory=list)


class InferenceWorker:
    """``inspectd worker``: grades frames from the Redis stream with a local model."""

    def __init__(
        self,
        client: aioredis.Redis,
        model: BatchModel,
        *,
        keys: RemoteKeys | None = None,
        consumer: str | None = None,
        max_batch: int = 16,
        max_delay_ms: float = 10.0,
        stale_s: float = 5.0,
        reply_backlog: int = 1000,
        metrics: BatcherMetrics | None = None,
    ) -> None:
        self._redis = client
        self._model = model
        self.keys = keys or RemoteKeys()
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.max_batch = max_batch
        self.stale_s = stale_s
        self._reply_backlog = reply_backlog
        self._batcher = DynamicBatcher(
            model,
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            queue_size=max(4 * max_batch, 64),
            metrics=metrics,
            name="inference-worker-batcher",
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.stats = WorkerStats()

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.keys.frames, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Serve until :meth:`stop` (or cancellation)."""
        await self._ensure_group()
        await self._redis.set(self.keys.model, model_info_to_json(self._model.info))
        self._batcher.start()
        logger.info("inference worker %s serving %s", self.consumer, self._model.info.version)
        if ready is not None:
            ready.set()
        last_claim = 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                await self._redis.hset(self.keys.workers, self.consumer, repr(time.time()))
                if now - last_claim > self.stale_s:
                    last_claim = now
                    await self._claim_abandoned()
                try:
                    batches: Any = await self._redis.xreadgroup(
                        GROUP,
                        self.consumer,
                        {self.keys.frames: ">"},
                        count=self.max_batch,
                        block=500,
                    )
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # Redis lost its data (a restart): start again
                        await self._ensure_group()
                        continue
                    raise
                for _, entries in batches or []:
                    for entry_id, frame in entries:
                        self._spawn(self._grade(entry_id, frame))
        finally:
            await self._redis.hdel(self.keys.workers, self.consumer)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _claim_abandoned(self) -> None:
        """Entries another (dead) worker read but never acknowledged: stale now, drop them."""
        try:
            result = await self._redis.xautoclaim(
                self.keys.frames,
                GROUP,
                self.consumer,
                min_idle_time=int(self.stale_s * 1000),
                start_id="0-0",
                count=100,
            )
        except ResponseError:
            return
        claimed = result[1] if len(result) > 1 else []
        ids = [entry_id for entry_id, _ in claimed]
        if ids:
            self.stats.claimed += len(ids)
            self.stats.stale += len(ids)
            await self._redis.xack(self.keys.frames, GROUP, *ids)

    async def _grade(self, entry_id: bytes, frame: Mapping[bytes, bytes]) -> None:
        try:
            node = frame[b"node"].decode()
            request_id = frame[b"id"].decode()
            sent_at = float(frame[b"ts"])
        except (KeyError, ValueError):
            await self._redis.xack(self.keys.frames, GROUP, entry_id)
            return
        reply: dict[str, Any]
        if time.time() - sent_at > self.stale_s:
            self.stats.stale += 1
            await self._redis.xack(self.keys.frames, GROUP, entry_id)
            return
        try:
            image = decode_frame(frame[b"image"])
            prediction = await self._batcher.submit(frame.get(b"stream", b"").decode(), image)
            reply = {
                "grade_probs": list(prediction.grade_probs),
                "damage_probs": list(prediction.damage_probs),
                "model_version": prediction.model_version,
                "batch_size": prediction.batch_size,
                "latency_ms": prediction.latency_ms,
            }
            self.stats.graded += 1
            self.stats.batches.append(prediction.batch_size)
            del self.stats.batches[:-1000]
        except FrameDropped:
            self.stats.stale += 1
            await self._redis.xack(self.keys.frames, GROUP, entry_id)
            return
        except (InferenceError, KeyError) as exc:
            self.stats.failed += 1
            reply = {"error": str(exc)}
        await self._redis.xadd(
            self.keys.replies(node),
            {"id": request_id, "reply": json.dumps(reply)},
            maxlen=self._reply_backlog,
            approximate=True,
        )
        await self._redis.xack(self.keys.frames, GROUP, entry_id)

    def stop(self) -> None:
        self._stopping.set()

    async def aclose(self) -> None:
        self.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._batcher.aclose()
