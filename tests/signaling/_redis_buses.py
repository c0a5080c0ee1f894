"""Helpers of the bus tests: RedisBus "nodes" on one prefix, and waiting on subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from signaling.bus import RedisBus, Subscription

__all__ = ["MakeRedisBus", "RedisBuses", "eventually", "stop_for_good", "take"]

MakeRedisBus = Callable[..., Awaitable[RedisBus]]


class RedisBuses:
    """Makes started RedisBus "nodes" sharing one key prefix, with short timers; ``url=``
    points one at another server. ``aclose()`` closes them all."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.buses: list[RedisBus] = []

    async def __call__(self, **options: Any) -> RedisBus:
        settings: dict[str, Any] = {
            "prefix": self.prefix,
            "heartbeat_s": 0.2,
            "presence_ttl_s": 1.0,
            "room_home_ttl_s": 1.0,
            "unavailable_timeout_s": 5.0,
            **options,
        }
        url = settings.pop("url", self.url)
        bus = RedisBus(url, **settings)
        self.buses.append(bus)
        await bus.start()
        return bus

    async def aclose(self) -> None:
        for bus in reversed(self.buses):
            await bus.aclose()


async def take(subscription: Subscription, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` events of ``subscription`` (raising what iteration raises)."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        async for event in subscription:
            received.append(dict(event))
            if len(received) == count:
                break
    return received


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll ``check`` until it holds: for state that changes with time (expiry, heartbeats),
    where there is no event to wait on."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def stop_for_good(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` until it has ended. One cancel is not always enough: a cancellation
    that lands while redis-py's read times out can be swallowed by it (Python 3.11)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
