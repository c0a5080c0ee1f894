"""RedisBus through a Redis crash and restart (our own redis-server, killed with SIGKILL and
started again empty on the same port, as the machine's Redis keeps nothing on disk)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signaling import SignalingErrorCode
from signaling.bus import BusUnavailable, ChatRecord, Lagged, RedisBus
from tests.redis_server import RedisProcess
from tests.signaling._redis_buses import eventually, take

pytestmark = pytest.mark.redis


@pytest.fixture
async def server() -> AsyncIterator[RedisProcess]:
    process = RedisProcess()
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


def node(server: RedisProcess, node_id: str, **options: Any) -> RedisBus:
    settings: dict[str, Any] = {
        "node_id": node_id,
        "prefix": "restart-test:",
        "heartbeat_s": 0.2,
        "presence_ttl_s": 1.0,
        "room_home_ttl_s": 1.0,
        "unavailable_timeout_s": 15.0,
        **options,
    }
    return RedisBus(server.url, **settings)


async def say(bus: RedisBus, room: str, key: str, text: str) -> ChatRecord:
    record, created = await bus.chat_append(room, key, key, text, 1.0, {"name": bus.node_id})
    assert created
    return record


async def test_the_bus_recovers_from_a_redis_restart_by_itself(server: RedisProcess) -> None:
    """What RedisBus guarantees when Redis restarts empty (the nodes keep running):

    1. A ``chat_append`` issued while Redis is down blocks and retries (up to
       ``unavailable_timeout_s``); every append that returns after Redis is back (including
       those) is in the new Redis: ``chat_since`` on every node returns it, in seq order with
       all other such appends, until trimmed (``chat_history``) or expired (``chat_ttl_s``).
       That is: no message acknowledged to a client after the restart completes is lost.
    2. Seqs handed out after the restart are higher than any seq a node handed out or read
       before it, and than any ``after_seq`` a client resumes from, so clients that drop
       already-seen seqs never drop a new message.
    3. Records acknowledged *before* the restart are gone from Redis (nothing on disk); their
       durable copy is the case timeline the server writes. The page re-sends the messages the
       server never confirmed, under the same client id.
    4. Each subscription that existed when the node noticed the disconnect raises ``Lagged``
       once (events were lost), then delivers again; one made after that just delivers.
    5. Each node's presence entries, registration and room homes are back within a heartbeat.
    """
    a, b = node(server, "node-a"), node(server, "node-b")
    await a.start()
    await b.start()
    try:
        await a.register_node("node-a", {"load": 1}, ttl=1.0)
        assert await a.claim_room_home("case-1") == "node-a"
        await a.presence_add("case-1", {"participant_id": "agent-1", "role": "agent"})
        following = b.subscribe("room:case-1")
        before = [await say(a, "case-1", f"k{i}", f"before {i}") for i in range(5)]
        assert [r.seq for r in await b.chat_since("case-1", 0)] == [1, 2, 3, 4, 5]

        await asyncio.to_thread(server.stop)  # SIGKILL
        in_flight = asyncio.create_task(say(a, "case-1", "k5", "sent during the outage"))

        async def b_noticed() -> bool:
            return not b._fanout.live

        await eventually(b_noticed)
        joined_during_outage = b.subscribe("room:late")
        await asyncio.sleep(0.5)
        assert not in_flight.done()  # waiting for Redis, not failed
        await asyncio.to_thread(server.start)  # same port, empty

        # 1 + 2: the in-flight append lands, numbered after everything seen before.
        async with asyncio.timeout(10):
            during = await in_flight
        assert during.seq == before[-1].seq + 1 == 6
        # A client on node b resuming from seq 5 gets it.
        assert await b.chat_since("case-1", 5) == [during]

        # 4: the old subscription reports the gap once, then delivers again; the new one
        # delivers from the start.
        await a.publish("room:case-1", during.to_json())
        await a.publish("room:late", {"type": "hello"})
        with pytest.raises(Lagged):
            await take(following, 1)
        assert await take(following, 1) == [during.to_json()]
        assert await take(joined_during_outage, 1) == [{"type": "hello"}]

        # 1: traffic after the restart, from both nodes: nothing lost, one order.
        after = [await say((a, b)[i % 2], "case-1", f"n{i}", f"after {i}") for i in range(20)]
        expected = [during, *after]
        assert [r.seq for r in expected] == list(range(6, 27))
        assert await a.chat_since("case-1", 0) == expected
        assert await b.chat_since("case-1", 0) == expected
        # 3: what was acknowledged before the restart is not in Redis any more.
        assert not {r.seq for r in before} & {r.seq for r in await b.chat_since("case-1", 0)}

        # 2: a room neither node knew, resumed by a client that had seen seq 42.
        assert await b.chat_since("case-9", 42) == []
        assert (await say(a, "case-9", "x", "first after resume")).seq == 43

        # 5: node a's state is back without anybody calling it again.
        async def restored() -> bool:
            return bool(
                await b.presence_list("case-1")
                and await b.room_home("case-1") == "node-a"
                and "node-a" in await b.live_nodes()
            )

        await eventually(restored)
        assert await b.presence_list("case-1") == [{"participant_id": "agent-1", "role": "agent"}]
        await following.aclose()
        await joined_during_outage.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_past_the_timeout_is_reported_and_survived(
    server: RedisProcess,
) -> None:
    bus = node(server, "node-c", unavailable_timeout_s=0.5)
    await bus.start()
    try:
        await say(bus, "case-1", "k0", "before")
        await asyncio.to_thread(server.stop)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusUnavailable) as caught:
            await say(bus, "case-1", "k1", "while down")
        assert 0.5 <= loop.time() - started < 3.0
        assert "redis did not answer chat_append" in caught.value.detail
        assert "127.0.0.1" not in caught.value.message  # what a client may see
        assert caught.value.code is SignalingErrorCode.UNAVAILABLE  # the code clients get
        with pytest.raises(BusUnavailable):
            await bus.queue_entries()

        await asyncio.to_thread(server.start)
        # The same bus works again: the client retries its message, stored once.
        record = await say(bus, "case-1", "k1", "while down")
        assert record.seq == 2
        assert await bus.queue_entries() == []
    finally:
        await bus.aclose()
