"""Grading, wired: the model session and batcher of this process (or the remote worker pool),
and the analyzers that the live pipeline (``inference.GradingService``) feeds."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from redis import asyncio as aioredis

import inference
from inference import (
    AnalysisHub,
    BatcherMetrics,
    DynamicBatcher,
    FrameBatcher,
    Grader,
    LabelReader,
    RemoteBatcher,
    RemoteKeys,
)
from server.settings import Settings

__all__ = ["DEFAULT_MODEL", "GradingStack", "open_grading"]

logger = logging.getLogger(__name__)

#: The model shipped with the package (trained on synthetic images; see the README).
DEFAULT_MODEL = Path(inference.__file__).parent / "models" / "grader-v1.onnx"


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
        return GradingStack(None, remote, _analysis_hub(settings, remote, metrics), redis=client)
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
    return GradingStack(grader, batcher, _analysis_hub(settings, batcher, metrics))


def _analysis_hub(
    settings: Settings, batcher: FrameBatcher, metrics: BatcherMetrics | None
) -> AnalysisHub:
    """The per-stream pipelines; with label reading on, each also reads the text on labels
    (on this node's CPUs, also when the model runs on remote workers)."""
    if settings.label_reading_s <= 0:
        return AnalysisHub(batcher, metrics=metrics)
    reader = LabelReader(threads=_threads(settings))
    return AnalysisHub(
        batcher, metrics=metrics, labels=reader, labels_every_s=settings.label_reading_s
    )
