"""One ``cleanup_ctx`` per subsystem: what starts it and what stops it, side by side.

aiohttp runs the contexts' start halves in the order they were added and their stop halves in
the reverse order, so the order subsystems are added in ``create_app`` is the only place the
start and stop order is kept.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

__all__ = ["CleanupCtx", "lifetime"]

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def lifetime(
    name: str,
    *,
    start: Callable[[], Awaitable[object] | object] | None = None,
    stop: Callable[[], Awaitable[object]] | None = None,
) -> CleanupCtx:
    """A cleanup context that calls ``start()`` (awaited when it is a coroutine) when the app
    starts and awaits ``stop()`` when it stops (also when a later subsystem failed to start)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if start is not None:
            started = start()
            if inspect.isawaitable(started):
                await started
        try:
            yield
        finally:
            if stop is not None:
                await stop()

    ctx.__name__ = ctx.__qualname__ = f"{name}_lifetime"
    return ctx
