from __future__ import annotations

import asyncio

import pytest

from signaling import Lagged, MemoryBus, QueueEntry
from signaling.bus import memory


async def test_chat_log_assigns_sequence_numbers_and_dedupes() -> None:
    bus = MemoryBus()
    first, new = await bus.chat_append("r", "u:1", "1", "hello", 1.0, {"name": "a"})
    again, new_again = await bus.chat_append("r", "u:1", "1", "hello", 2.0, {"name": "a"})
    second, _ = await bus.chat_append("r", "u:2", "2", "world", 3.0, {"name": "a"})
    assert (first.seq, new) == (1, True)
    assert (again, new_again) == (first, False)
    assert second.seq == 2
    assert [r.text for r in await bus.chat_since("r", 0)] == ["hello", "world"]
    assert [r.seq for r in await bus.chat_since("r", 1)] == [2]
    assert await bus.chat_since("other", 0) == []


async def test_queue_is_ordered_by_wait_and_claim_is_exclusive() -> None:
    bus = MemoryBus()
    await bus.queue_put(QueueEntry("late", 20.0))
    await bus.queue_put(QueueEntry("early", 10.0))
    assert [e.case_id for e in await bus.queue_entries()] == ["early", "late"]
    results = await asyncio.gather(*(bus.queue_claim("early", f"agent{i}") for i in range(5)))
    assert results.count(True) == 1
    assert [e.case_id for e in await bus.queue_entries()] == ["late"]


async def test_subscribers_get_events_in_order() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("t")
    for i in range(3):
        await bus.publish("t", {"i": i})
    received = []
    async with asyncio.timeout(1):
        async for event in subscription:
            received.append(event["i"])
            if len(received) == 3:
                break
    assert received == [0, 1, 2]
    await subscription.aclose()


async def test_a_slow_subscriber_is_told_it_lagged_instead_of_growing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "SUBSCRIBER_BUFFER", 4)
    bus = MemoryBus()
    subscription = bus.subscribe("t")
    for i in range(10):
        await bus.publish("t", {"i": i})
    assert len(subscription._events) == 4
    with pytest.raises(Lagged):
        async with asyncio.timeout(1):
            async for _ in subscription:
                pass
    await subscription.aclose()
