from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inference import (
    BatcherClosed,
    BatcherMetrics,
    DynamicBatcher,
    FrameDropped,
    Grader,
    InferenceError,
    ModelInfo,
)
from tests.inference.conftest import solid

SIZE = (8, 8)


class GatedModel:
    """A stand-in model: grade_probs[i] = [mean pixel of frame i, 0, 0, 0]; records every batch
    (as the list of those means) and blocks while the gate is closed."""

    def __init__(self) -> None:
        self.info = ModelInfo(
            path="fake.onnx",
            version="fake-1",
            grade_labels=("A", "B", "C", "D"),
            damage_labels=("scratch",),
            input_size=SIZE,
            normalisation="none",
            trained_on="nothing",
            opset=17,
        )
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[int]] = []
        self.fail = False

    def predict(self, batch: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
        values = [int(round(v)) for v in batch.mean(axis=(1, 2, 3))]
        self.batches.append(values)
        self.entered.set()
        assert self.gate.wait(10), "test left the gate closed"
        if self.fail:
            raise RuntimeError("boom")
        n = batch.shape[0]
        grade = np.zeros((n, 4), np.float32)
        grade[:, 0] = values
        return grade, np.zeros((n, 1), np.float32)


def frame(value: int) -> np.ndarray[Any, Any]:
    return np.full((*SIZE, 3), value, np.uint8)


@pytest.fixture
def model() -> GatedModel:
    return GatedModel()


@pytest.fixture
async def make_batcher(model: GatedModel) -> AsyncIterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def make(**kwargs: Any) -> DynamicBatcher:
        batcher = DynamicBatcher(model, **kwargs)
        batcher.start()
        made.append(batcher)
        return batcher

    yield make
    model.gate.set()
    for batcher in made:
        await batcher.aclose(drain=False)


async def block(model: GatedModel, batcher: DynamicBatcher) -> asyncio.Task[Any]:
    """Occupy the only model slot with one request (value 1) until the gate opens."""
    model.gate.clear()
    model.entered.clear()
    task = asyncio.create_task(batcher.submit("blocker", frame(1)))
    await asyncio.to_thread(model.entered.wait, 5)
    return task


async def test_batches_fill_up_to_max_batch(model: GatedModel, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch=8, max_delay_ms=5)
    blocker = await block(model, batcher)
    tasks = [asyncio.create_task(batcher.submit(f"s{i}", frame(10 + i))) for i in range(20)]
    await asyncio.sleep(0)
    model.gate.set()
    async with asyncio.timeout(5):
        results = await asyncio.gather(*tasks)
        await blocker
    assert [len(b) for b in model.batches] == [1, 8, 8, 4]
    assert [r.grade_probs[0] for r in results] == [10 + i for i in range(20)]  # routed back right
    assert results[0].batch_size == 8 and results[-1].batch_size == 4
    assert results[0].model_version == "fake-1" and results[0].grade == "A"


async def test_lone_request_waits_for_the_delay_full_batch_does_not(
    model: GatedModel, make_batcher: Any
) -> None:
    batcher = make_batcher(max_batch=16, max_delay_ms=60)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*(batcher.submit(f"s{i}", frame(i)) for i in range(3)))
    assert model.batches == [[0, 1, 2]]  # gathered together while the oldest waited
    assert all(r.queue_wait_ms >= 50 for r in results)

    eager = make_batcher(max_batch=3, max_delay_ms=60_000)
    async with asyncio.timeout(5):  # would hang for a minute if it waited for the delay
        results = await asyncio.gather(*(eager.submit(f"s{i}", frame(i)) for i in range(3)))
    assert [r.batch_size for r in results] == [3, 3, 3]


async def test_delay_follows_the_injected_clock(model: GatedModel, make_batcher: Any) -> None:
    now = [1000.0]
    batcher = make_batcher(max_batch=16, max_delay_ms=60_000, clock=lambda: now[0])
    task = asyncio.create_task(batcher.submit("s", frame(5)))
    await asyncio.sleep(0.05)
    assert not task.done() and batcher.depth == 1
    now[0] += 61.0  # the oldest request has now waited past max_delay
    batcher._wakeup.set()  # the loop re-checks the clock when woken
    async with asyncio.timeout(5):
        result = await task
    assert result.queue_wait_ms >= 61_000


async def test_full_queue_drops_oldest_of_same_stream_then_globally_oldest(
    model: GatedModel, make_batcher: Any
) -> None:
    registry = CollectorRegistry()
    batcher = make_batcher(
        max_batch=8, max_delay_ms=1, queue_size=3, metrics=BatcherMetrics(registry)
    )
    blocker = await block(model, batcher)
    a1 = asyncio.create_task(batcher.submit("a", frame(11)))
    a2 = asyncio.create_task(batcher.submit("a", frame(12)))
    b1 = asyncio.create_task(batcher.submit("b", frame(21)))
    await asyncio.sleep(0)
    a3 = asyncio.create_task(batcher.submit("a", frame(13)))  # full: a's oldest goes
    await asyncio.sleep(0)
    c1 = asyncio.create_task(batcher.submit("c", frame(31)))  # full, c has none: oldest (a2) goes
    await asyncio.sleep(0)
    assert batcher.depth == 3
    model.gate.set()
    async with asyncio.timeout(5):
        done = await asyncio.gather(a1, a2, b1, a3, c1, blocker, return_exceptions=True)
    assert isinstance(done[0], FrameDropped) and done[0].stream_id == "a"
    assert isinstance(done[1], FrameDropped)
    assert [d.grade_probs[0] for d in done[2:5]] == [21, 13, 31]  # type: ignore[union-attr]
    assert batcher.dropped == 2
    assert (
        registry.get_sample_value(
            "inspect_inference_dropped_frames_total", {"reason": "queue_full"}
        )
        == 2.0
    )


async def test_busy_stream_cannot_starve_a_quiet_one(model: GatedModel, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch=4, max_delay_ms=1, queue_size=64)
    blocker = await block(model, batcher)
    busy = [asyncio.create_task(batcher.submit("busy", frame(50))) for _ in range(20)]
    await asyncio.sleep(0)
    quiet = asyncio.create_task(batcher.submit("quiet", frame(200)))
    await asyncio.sleep(0)
    model.gate.set()
    async with asyncio.timeout(5):
        await asyncio.gather(blocker, quiet, *busy)
    # the batch right after the blocker carries the quiet stream's frame, although 20 busy
    # frames were queued before it
    assert 200 in model.batches[1]
    assert model.batches[1].count(50) == 3


async def test_close_drains_pending_requests(model: GatedModel, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch=2, max_delay_ms=1)
    blocker = await block(model, batcher)
    tasks = [asyncio.create_task(batcher.submit(f"s{i}", frame(i + 2))) for i in range(5)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose(drain=True))
    await asyncio.sleep(0.01)
    with pytest.raises(BatcherClosed):
        await batcher.submit("late", frame(9))
    model.gate.set()
    async with asyncio.timeout(5):
        await closing
        results = await asyncio.gather(*tasks)
    assert [r.grade_probs[0] for r in results] == [2, 3, 4, 5, 6]
    assert (await blocker).grade_probs[0] == 1


async def test_close_without_drain_fails_pending_clearly(
    model: GatedModel, make_batcher: Any
) -> None:
    batcher = make_batcher(max_batch=2, max_delay_ms=1)
    blocker = await block(model, batcher)
    tasks = [asyncio.create_task(batcher.submit(f"s{i}", frame(i + 2))) for i in range(3)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose(drain=False))
    await asyncio.sleep(0.01)
    for task in tasks:
        with pytest.raises(BatcherClosed, match="closed before this frame ran"):
            await task
    model.gate.set()
    async with asyncio.timeout(5):
        await closing
    assert (await blocker).grade_probs[0] == 1  # the batch already running completed
    await batcher.aclose()  # idempotent


async def test_model_failure_fails_the_batch_only(model: GatedModel, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch=4, max_delay_ms=1)
    model.fail = True
    with pytest.raises(InferenceError, match="model run failed: boom") as caught:
        await batcher.submit("s", frame(3))
    assert caught.value.code == "inference_failed"
    model.fail = False
    assert (await batcher.submit("s", frame(4))).grade_probs[0] == 4


async def test_cancelled_submit_leaves_the_queue(model: GatedModel, make_batcher: Any) -> None:
    batcher = make_batcher(max_batch=4, max_delay_ms=1)
    blocker = await block(model, batcher)
    task = asyncio.create_task(batcher.submit("s", frame(3)))
    await asyncio.sleep(0)
    assert batcher.depth == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batcher.depth == 0
    model.gate.set()
    await blocker
    assert model.batches == [[1]]


async def test_real_model_through_the_batcher(tiny_model: Path) -> None:
    registry = CollectorRegistry()
    grader = Grader.load(tiny_model, intra_op_threads=1)
    batcher = DynamicBatcher(grader, max_batch=8, max_delay_ms=5, metrics=BatcherMetrics(registry))
    batcher.start()
    try:
        colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250)] * 3
        async with asyncio.timeout(5):
            results = await asyncio.gather(
                *(batcher.submit(f"s{i}", solid(c, 120, 160)) for i, c in enumerate(colours))
            )
    finally:
        await batcher.aclose()
    assert [r.grade for r in results] == ["A", "B", "C"] * 3
    assert results[0].damages()["scratch"] > 0.5
    assert results[0].model_version == "tiny-test-1"
    assert registry.get_sample_value("inspect_inference_batch_size_count") >= 1
    assert registry.get_sample_value("inspect_inference_queue_depth") == 0
