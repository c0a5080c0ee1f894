"""Waiting on state that changes on its own schedule (media, ICE, cameras) in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["until"]


async def until(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``within`` seconds, with
    ``what`` as the message when given."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - no event to wait on: aiortc, aioice, cameras
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(what or f"not within {within} s") from None
