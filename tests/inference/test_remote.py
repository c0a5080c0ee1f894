"""Remote inference through real Redis: a node's RemoteBatcher and an InferenceWorker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from redis import asyncio as aioredis

from inference import Grader
from inference.batcher import DynamicBatcher
from inference.errors import FrameDropped, InferenceError
from inference.remote import GROUP, InferenceWorker, RemoteBatcher, RemoteKeys, encode_frame
from tests.inference.conftest import solid
from tests.redis_server import redis_url  # noqa: F401 - the fixture

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:  # noqa: F811
    redis = aioredis.from_url(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def keys() -> RemoteKeys:
    return RemoteKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
async def cleanup(client: aioredis.Redis, keys: RemoteKeys) -> AsyncIterator[None]:
    yield
    found = [key async for key in client.scan_iter(f"{keys.prefix}*")]
    if found:
        await client.delete(*found)


@pytest.fixture
async def worker(
    client: aioredis.Redis, keys: RemoteKeys, tiny_model: Path, cleanup: None
) -> AsyncIterator[InferenceWorker]:
    worker = InferenceWorker(
        client, Grader.load(tiny_model, intra_op_threads=1), keys=keys, max_delay_ms=20
    )
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(ready=ready))
    async with asyncio.timeout(10):
        await ready.wait()
    yield worker
    worker.stop()
    await asyncio.wait_for(task, 5)
    await worker.aclose()


async def started(client: aioredis.Redis, keys: RemoteKeys, **options: float) -> RemoteBatcher:
    batcher = RemoteBatcher(client, node_id="node-a", keys=keys, **options)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


async def test_remote_grades_match_the_local_model_and_are_batched(
    client: aioredis.Redis, keys: RemoteKeys, worker: InferenceWorker, tiny_model: Path
) -> None:
    local = DynamicBatcher(Grader.load(tiny_model, intra_op_threads=1))
    local.start()
    remote = await started(client, keys)
    try:
        assert remote.info.version == local.info.version
        colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (128, 128, 128)] * 8
        frames = [solid(c, 96, 128) for c in colours]
        got = await asyncio.gather(*(remote.submit(f"s{i}", f) for i, f in enumerate(frames)))
        want = await asyncio.gather(*(local.submit(f"s{i}", f) for i, f in enumerate(frames)))
        for a, b in zip(got, want, strict=True):
            assert a.grade == b.grade
            assert np.allclose(a.grade_probs, b.grade_probs, atol=0.05)  # JPEG on the way
            assert a.grade_labels == b.grade_labels and a.model_version == b.model_version
        assert max(p.batch_size for p in got) > 1  # the worker batched concurrent frames
        assert worker.stats.graded == len(frames)
        pending = await client.xpending(keys.frames, GROUP)
        assert pending["pending"] == 0  # every frame acknowledged
    finally:
        await remote.aclose()
        await local.aclose()


async def test_no_worker_is_a_clear_error(
    client: aioredis.Redis, keys: RemoteKeys, cleanup: None
) -> None:
    batcher = RemoteBatcher(client, node_id="n", keys=keys, wait_for_worker_s=0.3)
    with pytest.raises(InferenceError, match="inspectd worker"):
        await batcher.start()


async def test_dead_workers_cost_frames_not_memory(
    client: aioredis.Redis, keys: RemoteKeys, worker: InferenceWorker
) -> None:
    remote = await started(client, keys, timeout_s=0.5, queue_size=4)
    worker.stop()  # the pool dies; the model description stays
    await asyncio.sleep(0.7)
    try:
        results = await asyncio.gather(
            *(remote.submit("s", solid((10, 10, 10))) for _ in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, FrameDropped) for r in results), results
        reasons = {r.reason for r in results if isinstance(r, FrameDropped)}
        assert reasons == {"queue_full", "timeout"}
        assert remote.depth == 0
        assert await client.xlen(keys.frames) <= 10
    finally:
        await remote.aclose()


async def test_stale_and_abandoned_frames_are_acknowledged_and_skipped(
    client: aioredis.Redis, keys: RemoteKeys, tiny_model: Path, cleanup: None
) -> None:
    await client.xgroup_create(keys.frames, GROUP, id="$", mkstream=True)
    image = encode_frame(solid((1, 2, 3)))
    # A frame a dead worker read and never acknowledged, and one that is simply old.
    await client.xadd(
        keys.frames,
        {"id": "a", "node": "n", "stream": "s", "ts": repr(time.time()), "image": image},
    )
    await client.xreadgroup(GROUP, "dead-worker", {keys.frames: ">"}, count=1)
    await client.xadd(
        keys.frames,
        {"id": "b", "node": "n", "stream": "s", "ts": repr(time.time() - 60), "image": image},
    )
    worker = InferenceWorker(
        client, Grader.load(tiny_model, intra_op_threads=1), keys=keys, stale_s=0.2
    )
    await asyncio.sleep(0.3)  # the dead worker's entry is now idle past stale_s
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(5):
            while worker.stats.stale < 2:  # noqa: ASYNC110 - the worker has no event for it
                await asyncio.sleep(0.05)
        assert worker.stats.claimed == 1 and worker.stats.graded == 0
        assert (await client.xpending(keys.frames, GROUP))["pending"] == 0
        assert await client.xlen(keys.replies("n")) == 0  # nobody is told about stale frames
        info = json.loads(await client.get(keys.model))
        assert info["grade_labels"] == ["A", "B", "C", "D"]
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await worker.aclose()
