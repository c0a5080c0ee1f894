"""The Bus contract, run against every backend: what the hub relies on, whichever is wired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from signaling.bus import Bus, Lagged, MemoryBus, QueueEntry, RedisBus, memory
from tests.signaling._redis_buses import RedisBuses

MakeBus = Callable[..., Awaitable[Bus]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_bus(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeBus]:
    """Factory of started buses of one kind; ``subscriber_buffer=`` shrinks the per-subscriber
    buffer. Buses made by one factory share state (two "nodes" for Redis)."""
    memory_bus: MemoryBus | None = None
    redis_buses: RedisBuses | None = None
    if request.param == "redis":
        # Sync fixtures only: an async one cannot be requested from a running loop.
        url = request.getfixturevalue("redis_url")
        redis_buses = RedisBuses(url, request.getfixturevalue("redis_prefix"))

    extra: list[MemoryBus] = []

    async def make(subscriber_buffer: int | None = None, **retention: int) -> Bus:
        """``retention``: ``chat_history`` / ``chat_history_bytes`` of the bus (memory: a
        bus of its own)."""
        nonlocal memory_bus
        if redis_buses is not None:
            if subscriber_buffer is None:
                return await redis_buses(**retention)
            return await redis_buses(subscriber_buffer=subscriber_buffer, **retention)
        if retention:
            bus = MemoryBus(**retention)
            extra.append(bus)
            return bus
        if subscriber_buffer is not None:
            monkeypatch.setattr(memory, "SUBSCRIBER_BUFFER", subscriber_buffer)
        if memory_bus is None:
            memory_bus = MemoryBus()
            await memory_bus.start()
        return memory_bus

    yield make
    for bus in extra:
        await bus.aclose()
    if memory_bus is not None:
        await memory_bus.aclose()
    if redis_buses is not None:
        await redis_buses.aclose()


async def settled(bus: Bus) -> None:
    """Wait until what was published so far reached the bus's subscribers (memory delivers
    synchronously; Redis through its reader task)."""
    if isinstance(bus, RedisBus):
        await bus._flush()


async def take(subscription: object, count: int) -> list[dict[str, object]]:
    received: list[dict[str, object]] = []
    async with asyncio.timeout(5):
        async for event in subscription:  # type: ignore[attr-defined]
            received.append(dict(event))
            if len(received) == count:
                break
    return received


async def test_chat_log_assigns_sequence_numbers_and_dedupes(make_bus: MakeBus) -> None:
    bus = await make_bus()
    first, new = await bus.chat_append("r", "u:1", "1", "hello", 1.0, {"name": "a"})
    again, new_again = await bus.chat_append("r", "u:1", "1", "hello", 2.0, {"name": "a"})
    second, _ = await bus.chat_append("r", "u:2", "2", "world", 3.0, {"name": "a"})
    assert (first.seq, new) == (1, True)
    assert (again, new_again) == (first, False)
    assert second.seq == 2
    assert [r.text for r in await bus.chat_since("r", 0)] == ["hello", "world"]
    assert [r.seq for r in await bus.chat_since("r", 1)] == [2]
    assert await bus.chat_since("r", 2) == []
    assert await bus.chat_since("other", 0) == []
    # Rooms are separate logs with their own numbering.
    other, _ = await bus.chat_append("r2", "u:1", "1", "elsewhere", 4.0, {"name": "b"})
    assert other.seq == 1
    assert (await bus.chat_since("r", 0))[0].to_json() == {
        "type": "chat",
        "seq": 1,
        "client_id": "1",
        "text": "hello",
        "ts": 1.0,
        "sender": {"name": "a"},
    }


async def test_queue_is_ordered_by_wait_and_claim_is_exclusive(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await bus.queue_put(QueueEntry("late", 20.0, {"customer": "L"}))
    await bus.queue_put(QueueEntry("early", 10.0, {"customer": "E"}))
    entries = await bus.queue_entries()
    assert [(e.case_id, e.waiting_since) for e in entries] == [("early", 10.0), ("late", 20.0)]
    assert dict(entries[0].summary) == {"customer": "E"}
    results = await asyncio.gather(*(bus.queue_claim("early", f"agent{i}") for i in range(5)))
    assert results.count(True) == 1
    assert [e.case_id for e in await bus.queue_entries()] == ["late"]
    assert await bus.queue_claim("early", "agent9") is False
    assert await bus.queue_remove("late") is True
    assert await bus.queue_remove("late") is False
    assert await bus.queue_entries() == []


async def test_presence_lists_who_is_in_a_room(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await bus.presence_add("r", {"participant_id": "p1", "role": "agent", "name": "A"})
    await bus.presence_add("r", {"participant_id": "p2", "role": "customer", "name": "C"})
    await bus.presence_add("r", {"participant_id": "p2", "role": "customer", "name": "C2"})
    listed = sorted(await bus.presence_list("r"), key=lambda p: str(p["participant_id"]))
    assert [dict(p) for p in listed] == [
        {"participant_id": "p1", "role": "agent", "name": "A"},
        {"participant_id": "p2", "role": "customer", "name": "C2"},
    ]
    await bus.presence_remove("r", "p1")
    await bus.presence_remove("r", "nobody")
    assert [p["participant_id"] for p in await bus.presence_list("r")] == ["p2"]
    assert await bus.presence_list("empty") == []


async def test_subscribers_get_events_in_order(make_bus: MakeBus) -> None:
    bus = await make_bus()
    subscription = bus.subscribe("t")
    other = bus.subscribe("t")
    elsewhere = bus.subscribe("u")
    for i in range(3):
        await bus.publish("t", {"i": i, "nested": {"ok": True}})
    assert [e["i"] for e in await take(subscription, 3)] == [0, 1, 2]
    assert (await take(other, 3))[2] == {"i": 2, "nested": {"ok": True}}
    await bus.publish("u", {"i": "u"})
    assert await take(elsewhere, 1) == [{"i": "u"}]
    for closing in (subscription, other, elsewhere):
        await closing.aclose()


async def test_a_closed_subscription_ends_and_receives_nothing(make_bus: MakeBus) -> None:
    bus = await make_bus()
    subscription = bus.subscribe("t")
    await subscription.aclose()
    await bus.publish("t", {"i": 1})
    await settled(bus)
    async with asyncio.timeout(1):
        assert [event async for event in subscription] == []


async def test_a_slow_subscriber_is_told_it_lagged_instead_of_growing(make_bus: MakeBus) -> None:
    bus = await make_bus(subscriber_buffer=4)
    subscription = bus.subscribe("t")
    for i in range(10):
        await bus.publish("t", {"i": i})
    await settled(bus)
    assert len(subscription._events) <= 4  # type: ignore[attr-defined]
    with pytest.raises(Lagged):
        async with asyncio.timeout(1):
            async for _ in subscription:
                pass
    await subscription.aclose()


async def test_chat_published_with_its_seq_arrives_in_seq_order(make_bus: MakeBus) -> None:
    """Two nodes' senders racing: subscribers still see the room's messages in seq order."""
    nodes = [await make_bus(), await make_bus()]
    subscription = nodes[0].subscribe("room:r")
    await nodes[0].publish("warmup", {})  # (Redis: the next operation waits for the subscribe)

    async def send(i: int) -> None:
        bus = nodes[i % 2]
        await bus.chat_append("r", f"u:{i}", str(i), f"m{i}", float(i), {}, publish_to="room:r")

    await asyncio.gather(*(send(i) for i in range(40)))
    seqs: list[int] = []
    async with asyncio.timeout(10):
        async for event in subscription:
            seqs.append(int(event["seq"]))
            if len(seqs) == 40:
                break
    await subscription.aclose()
    assert seqs == list(range(1, 41))
    duplicate, created = await nodes[1].chat_append(
        "r", "u:3", "3", "m3", 3.0, {}, publish_to="room:r"
    )
    assert not created and duplicate.text == "m3"  # a resend is not published again


async def test_a_room_keeps_its_newest_chat_within_count_and_bytes(make_bus: MakeBus) -> None:
    bus = await make_bus(chat_history=5, chat_history_bytes=1_000_000)
    for i in range(8):
        await bus.chat_append("r", f"u:{i}", str(i), f"m{i}", float(i), {})
    assert [r.seq for r in await bus.chat_since("r", 0)] == [4, 5, 6, 7, 8]
    assert bus.chat_dropped == 3
    # A dropped message's dedupe key went with it; a retained one's is still known.
    _, kept_known = await bus.chat_append("r", "u:7", "7", "m7", 0.0, {})
    assert kept_known is False
    again, created = await bus.chat_append("r", "u:0", "0", "m0", 0.0, {})
    assert created and again.seq == 9

    small = await make_bus(chat_history=1_000, chat_history_bytes=1_200)
    for i in range(10):
        await small.chat_append("b", f"u:{i}", str(i), "x" * 300, float(i), {})
    kept = await small.chat_since("b", 0)
    assert [r.seq for r in kept] == [8, 9, 10], "about 1,200 bytes, the newest kept"
    huge, _ = await small.chat_append("b", "u:big", "big", "y" * 4_000, 11.0, {})
    assert [r.seq for r in await small.chat_since("b", 0)] == [huge.seq], "never the newest"


async def test_a_dropped_room_forgets_its_chat(make_bus: MakeBus) -> None:
    bus = await make_bus()
    for i in range(3):
        await bus.chat_append("done", f"u:{i}", str(i), f"m{i}", float(i), {})
    await bus.chat_append("other", "u:1", "1", "kept", 1.0, {})

    await bus.drop_room("done")
    await bus.drop_room("never-used")

    assert await bus.chat_since("done", 0) == []
    record, created = await bus.chat_append("done", "u:1", "1", "m1", 9.0, {})
    assert created and record.seq == 1, "its dedupe keys and sequence went with it"
    assert [r.text for r in await bus.chat_since("other", 0)] == ["kept"]
