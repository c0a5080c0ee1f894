"""Background tasks a service owns: started with a name, failures logged, all ended at close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

__all__ = ["OwnedTasks", "cancel_and_wait"]

logger = logging.getLogger(__name__)


class OwnedTasks:
    """The tasks one object started: each logs its own failure instead of losing it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Let running tasks finish for up to ``timeout_s`` (``None``: cancel them at once),
        then cancel what is left and wait for it."""
        tasks = list(self._tasks)
        if not tasks:
            return
        pending: set[asyncio.Task[None]] = set(tasks)
        if timeout_s is not None:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (if it is still running) and wait for it to end.

    Only the cancellation this call caused is absorbed: when the caller itself is being
    cancelled, that ``CancelledError`` propagates. A task that already ended, or ``None``, is
    fine; so is the current task (it is not awaited: a task cannot wait for itself)."""
    if task is None or task is asyncio.current_task():
        return
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
