from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp
from prometheus_client import CollectorRegistry

from inference import AnalysisHub, BatcherMetrics, DynamicBatcher, Grader
from inference.labels import LabelReader
from tests.fakes.labels import draw_label
from tests.inference.test_batcher import GatedModel


def textured(rgb: tuple[int, int, int], h: int = 240, w: int = 320) -> np.ndarray[Any, Any]:
    """A frame of one dominant colour with enough detail to pass the blur gate."""
    image = np.empty((h, w, 3), np.int16)
    image[...] = rgb
    checker = ((np.indices((h, w)) // 8).sum(axis=0) % 2 * 40 - 20).astype(np.int16)
    image += checker[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def with_qr(image: np.ndarray[Any, Any], text: str) -> np.ndarray[Any, Any]:
    qr = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=3))
    out = image.copy()
    out[10 : 10 + qr.shape[0], 10 : 10 + qr.shape[1]] = qr[..., None]
    return out


class Updates:
    """Collects on_update snapshots and lets a test wait for one that satisfies a condition."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def __call__(self, snapshot: dict[str, Any]) -> None:  # async callbacks are awaited
        self.items.append(snapshot)
        self._changed.set()

    async def until(self, condition: Any) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for item in reversed(self.items):
                    if condition(item):
                        return item
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def tiny_batcher(tiny_model: Path) -> AsyncIterator[DynamicBatcher]:
    batcher = DynamicBatcher(Grader.load(tiny_model, intra_op_threads=1), max_delay_ms=2)
    batcher.start()
    yield batcher
    await batcher.aclose()


async def test_frames_are_graded_and_reported(tiny_batcher: DynamicBatcher) -> None:
    registry = CollectorRegistry()
    hub = AnalysisHub(
        tiny_batcher, update_interval_ms=0, codes_every=1, metrics=BatcherMetrics(registry)
    )
    updates = Updates()
    analyzer = hub.open("room/alice/cam", refs={"order_id": "ORD-77"}, on_update=updates)
    try:
        for i in range(4):
            analyzer.offer(
                with_qr(textured((240, 40, 40)), "ORD-77") if i == 0 else textured((240, 40, 40)),
                ts=100.0 + i,
            )
            await updates.until(lambda s, n=i + 1: s["frames"]["analysed"] >= n)
        snap = await updates.until(lambda s: s["status"] == "sure")
    finally:
        final = await hub.close("room/alice/cam")
        await hub.aclose()
    assert snap["grade"] == "A" and snap["model_version"] == "tiny-test-1"
    assert snap["damage"][0]["label"] == "scratch"
    assert snap["codes"][0]["text"] == "ORD-77"
    assert snap["linked_refs"] == {"order_id": "ORD-77"}
    assert snap["snapshot_candidates"] and snap["stream_id"] == "room/alice/cam"
    assert final is not None and final["frames"]["analysed"] == 4
    assert analyzer.snapshot_candidates()[0].jpeg.startswith(b"\xff\xd8")
    assert registry.get_sample_value("inspect_inference_frames_total", {"outcome": "analysed"}) == 4


async def test_unusable_frames_are_counted_not_graded(tiny_batcher: DynamicBatcher) -> None:
    hub = AnalysisHub(tiny_batcher, update_interval_ms=0)
    updates = Updates()
    analyzer = hub.open("s", on_update=updates)
    analyzer.offer(np.full((240, 320, 3), 8, np.uint8), ts=1.0)
    snap = await updates.until(lambda s: s["frames"]["skipped"] == 1)
    await hub.aclose()
    assert snap["frames"]["analysed"] == 0
    assert snap["frames"]["skip_reasons"] == {"too_dark": 1}
    assert snap["quality"]["reason"] == "too_dark" and snap["status"] == "not_sure"


async def test_offer_never_blocks_and_replaces_the_waiting_frame() -> None:
    model = GatedModel()
    batcher = DynamicBatcher(model, max_delay_ms=1)
    batcher.start()
    hub = AnalysisHub(batcher, update_interval_ms=0)
    updates = Updates()
    analyzer = hub.open("s", on_update=updates)
    model.gate.clear()
    try:
        analyzer.offer(textured((90, 90, 200)), ts=0.0)
        assert await asyncio.to_thread(model.entered.wait, 5)  # frame 0 in the model, stuck
        started = time.perf_counter()
        for i in range(1, 101):
            analyzer.offer(textured((90, 90, 200)), ts=float(i))
        assert time.perf_counter() - started < 1.0  # returned at once, model still blocked
        assert analyzer.replaced == 99  # only the newest frame waits
        model.gate.set()
        snap = await updates.until(lambda s: s["frames"]["analysed"] == 2)
    finally:
        model.gate.set()
        await hub.aclose()
        await batcher.aclose()
    assert snap["frames"]["dropped"] == 99
    assert snap["updated_at"] == 100.0  # the frame graded second was the newest one
    assert model.batches == [[model.batches[0][0]], [model.batches[1][0]]]


async def test_updates_are_throttled_and_callback_errors_survive(
    tiny_batcher: DynamicBatcher,
) -> None:
    calls: list[dict[str, Any]] = []

    def flaky(snapshot: dict[str, Any]) -> None:  # sync callbacks work too
        calls.append(snapshot)
        raise RuntimeError("websocket gone")

    hub = AnalysisHub(tiny_batcher, update_interval_ms=60_000)
    analyzer = hub.open("s", on_update=flaky)
    for i in range(3):
        analyzer.offer(textured((40, 240, 40)), ts=float(i))
        async with asyncio.timeout(5):
            await analyzer.wait_idle()
    final = await hub.close("s")
    await hub.aclose()
    assert len(calls) == 1  # first update at once, the rest held back by the interval
    assert final is not None and final["frames"]["analysed"] == 3 and final["grade"] == "B"
    assert await hub.close("s") is None


async def test_the_text_on_a_label_is_read_beside_the_grading_and_matched(
    tiny_batcher: DynamicBatcher,
) -> None:
    label = draw_label(seed=11)
    hub = AnalysisHub(
        tiny_batcher, update_interval_ms=0, labels=LabelReader(threads=1), labels_every_s=60.0
    )
    updates = Updates()
    analyzer = hub.open("case:1", refs={"unit_id": label.serial}, on_update=updates)
    try:
        analyzer.offer(label.image, ts=50.0)
        # A second frame within labels_every_s is graded but not read again.
        await updates.until(lambda s: s["frames"]["analysed"] >= 1)
        analyzer.offer(label.image, ts=51.0)
        async with asyncio.timeout(30):  # the models load on first use
            snap = await updates.until(lambda s: bool(s["labels"]))
    finally:
        await hub.close("case:1")
        await hub.aclose()
    found = {(entry["kind"], entry["text"]) for entry in snap["labels"]}
    assert {("serial", label.serial), ("imei", label.imei), ("model", label.model)} <= found
    serial = next(entry for entry in snap["labels"] if entry["kind"] == "serial")
    assert serial["matches"] == [{"ref": "unit_id", "value": label.serial, "exact": True}]
    assert serial["count"] == 1 and serial["first_seen"] == 50.0
    assert snap["linked_refs"] == {"unit_id": label.serial}
