"""``inspectd worker`` as a real process, grading for a node through real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from redis import asyncio as aioredis

from inference.remote import RemoteBatcher
from server.settings import load_settings
from server.wiring.grading import open_grading
from tests.redis_server import redis_url  # noqa: F401 - the fixture

pytestmark = pytest.mark.redis
INSPECTD = Path(sys.executable).with_name("inspectd")


def test_worker_without_redis_names_the_setting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    done = subprocess.run(
        [str(INSPECTD), "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "INSPECT_REDIS_URL" in done.stderr


async def test_node_grades_through_a_worker_process(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "INSPECT_REDIS_URL": redis_url,
        "INSPECT_REDIS_PREFIX": prefix,
        "INSPECT_DATA_DIR": str(tmp_path),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        str(INSPECTD), "worker", "--provider", "cpu", env=env, stdout=log, stderr=log
    )
    client = aioredis.from_url(redis_url)
    try:
        settings = load_settings(
            {
                "INSPECT_DATA_DIR": str(tmp_path),
                "INSPECT_REDIS_URL": redis_url,
                "INSPECT_REDIS_PREFIX": prefix,
                "INSPECT_REMOTE_INFERENCE": "true",
            }
        )
        stack = await open_grading(settings, None)  # waits for the worker's model
        try:
            assert stack.grader is None and isinstance(stack.batcher, RemoteBatcher)
            image = np.full((240, 320, 3), 180, np.uint8)
            prediction = await stack.batcher.submit("cam", image)
            assert prediction.grade in ("A", "B", "C", "D")
            assert abs(sum(prediction.grade_probs) - 1) < 1e-3
            assert prediction.model_version == stack.batcher.info.version
        finally:
            await stack.aclose()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 20) == 0
        assert "worker stopped" in (tmp_path / "worker.log").read_text()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        log.close()
        found = [key async for key in client.scan_iter(f"{prefix}*")]
        if found:
            await client.delete(*found)
        await client.aclose()
