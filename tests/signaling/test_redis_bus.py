"""RedisBus across nodes: two buses on one Redis behave as two signaling nodes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from signaling.bus import BusUnavailable, Lagged, QueueEntry, RedisBus
from tests.redis_server import free_port
from tests.signaling._redis_buses import MakeRedisBus, eventually, stop_for_good, take

pytestmark = pytest.mark.redis


async def test_two_nodes_see_each_others_publishes_in_order(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()
    on_a, on_b = a.subscribe("room:1"), b.subscribe("room:1")
    # No waiting for the subscriptions: any bus operation after subscribe() waits for Redis
    # to confirm them (the hub subscribes, then reads the log, and must miss nothing).
    await a.publish("room:1", {"from": "a", "i": 0})
    await b.publish("room:1", {"from": "b", "i": 1})
    await a.publish("room:1", {"from": "a", "i": 2})
    expected = [{"from": "a", "i": 0}, {"from": "b", "i": 1}, {"from": "a", "i": 2}]
    assert await take(on_a, 3) == expected
    assert await take(on_b, 3) == expected
    await on_a.aclose()
    await on_b.aclose()


async def test_subscribe_then_read_misses_nothing_published_by_another_node(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()
    for i in range(20):
        subscription = a.subscribe(f"fresh:{i}")
        await a.chat_since("any", 0)  # "then read the log": Redis has the subscription now
        await b.publish(f"fresh:{i}", {"i": i})
        assert await take(subscription, 1) == [{"i": i}]
        await subscription.aclose()


async def test_a_topic_nobody_follows_any_more_is_unsubscribed(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()
    first = a.subscribe("t")
    await first.aclose()
    second = a.subscribe("t")
    await a.presence_list("any")
    await b.publish("t", {"after": "resubscribe"})
    assert await take(second, 1) == [{"after": "resubscribe"}]
    await second.aclose()
    await a.presence_list("any")
    assert (
        a._key("topic", "t") not in a._fanout._on_redis
    )  # the node no longer gets the topic's traffic


async def test_chat_from_two_nodes_has_one_gapless_order_readable_anywhere(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()

    async def send(bus: RedisBus, who: str, n: int) -> None:
        for i in range(n):
            await bus.chat_append("case-1", f"{who}:{i}", str(i), f"{who}{i}", float(i), {"w": who})

    await asyncio.gather(send(a, "agent", 25), send(b, "customer", 25))
    from_a = await a.chat_since("case-1", 0)
    from_b = await b.chat_since("case-1", 0)
    assert from_a == from_b
    assert [r.seq for r in from_a] == list(range(1, 51))
    assert [r.text for r in from_a if r.sender["w"] == "agent"] == [f"agent{i}" for i in range(25)]
    # A client reconnecting to the other node resumes exactly after its last seq.
    assert [r.seq for r in await b.chat_since("case-1", 47)] == [48, 49, 50]
    # The same client message retried through the other node is stored once.
    again, created = await b.chat_append("case-1", "agent:3", "3", "agent3", 9.0, {"w": "agent"})
    assert not created and again == from_a[[r.text for r in from_a].index("agent3")]


async def test_chat_since_pages_through_long_logs(make_redis_bus: MakeRedisBus) -> None:
    bus = await make_redis_bus(chat_history=5000)
    for i in range(2500):
        await bus.chat_append("long", f"k{i}", f"c{i}", f"m{i}", 0.0, {})
    records = await bus.chat_since("long", 0)
    assert [r.seq for r in records] == list(range(1, 2501))
    assert [r.seq for r in await bus.chat_since("long", 2498)] == [2499, 2500]


async def test_fifty_concurrent_claims_on_two_nodes_have_exactly_one_winner(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()
    await a.queue_put(QueueEntry("case-7", 100.0, {"customer_name": "Dana"}))
    await b.queue_put(QueueEntry("case-8", 200.0, {}))
    assert [e.case_id for e in await b.queue_entries()] == ["case-7", "case-8"]
    claims = [(a if i % 2 else b).queue_claim("case-7", f"agent-{i}") for i in range(50)]
    results = await asyncio.gather(*claims)
    assert results.count(True) == 1
    assert [e.case_id for e in await a.queue_entries()] == ["case-8"]
    assert [e.case_id for e in await b.queue_entries()] == ["case-8"]


async def test_presence_of_a_node_that_stops_heartbeating_expires(
    make_redis_bus: MakeRedisBus,
) -> None:
    a, b = await make_redis_bus(), await make_redis_bus()
    await a.presence_add("case-1", {"participant_id": "agent-on-a", "role": "agent"})
    await b.presence_add("case-1", {"participant_id": "customer-on-b", "role": "customer"})

    async def ids() -> set[str]:
        return {str(p["participant_id"]) for p in await a.presence_list("case-1")}

    assert await ids() == {"agent-on-a", "customer-on-b"}
    # Node b freezes or dies: its heartbeat stops, nobody removes its participants.
    heartbeat = b._heartbeat_task
    assert heartbeat is not None
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    await stop_for_good(heartbeat)

    async def b_gone() -> bool:
        return "customer-on-b" not in await ids()

    await eventually(b_gone, within=5.0)
    # Gone by expiry: the TTL is 1 s from b's last renewal (at most one 0.2 s beat before the
    # stop, more if b's loop stalled), not at once.
    assert loop.time() - stopped >= 0.5
    # a's entry outlives its TTL because a's heartbeat renews it.
    await asyncio.sleep(1.2)
    assert await ids() == {"agent-on-a"}


async def test_nodes_and_room_homes_follow_heartbeats(make_redis_bus: MakeRedisBus) -> None:
    a = await make_redis_bus(node_id="node-a")
    b = await make_redis_bus(node_id="node-b")
    await a.register_node("node-a", {"rtc": "10.0.0.1", "load": 3}, ttl=1.0)
    await b.register_node("node-b", {"rtc": "10.0.0.2", "load": 1}, ttl=1.0)
    assert await a.live_nodes() == {
        "node-a": {"rtc": "10.0.0.1", "load": 3},
        "node-b": {"rtc": "10.0.0.2", "load": 1},
    }
    assert await a.claim_room_home("case-1") == "node-a"
    assert await b.claim_room_home("case-1") == "node-a"  # a live home is kept
    assert await b.room_home("case-1") == "node-a"
    assert await b.room_home("case-2") is None
    await asyncio.sleep(1.5)  # longer than both TTLs: the heartbeat renewed them
    assert await b.room_home("case-1") == "node-a"
    assert set(await b.live_nodes()) == {"node-a", "node-b"}

    heartbeat = a._heartbeat_task
    assert heartbeat is not None
    await stop_for_good(heartbeat)  # node a dies

    async def a_gone() -> bool:
        return set(await b.live_nodes()) == {"node-b"} and await b.room_home("case-1") is None

    await eventually(a_gone)
    assert await b.claim_room_home("case-1") == "node-b"
    assert await a.release_room("case-1") is False  # not a's any more
    assert await b.release_room("case-1") is True
    assert await b.room_home("case-1") is None


async def test_a_lost_reply_is_retried_without_duplicating_or_misreporting(
    make_redis_bus: MakeRedisBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after Redis ran the command but before the reply arrived: the
    retry must not append twice, nor tell the hub the message was a duplicate, nor tell the
    winning agent that it lost the claim."""
    bus = await make_redis_bus()
    dropped: list[str] = []
    for name in ("CHAT_APPEND", "QUEUE_CLAIM"):
        real = bus._lua[name]

        async def reply_lost(
            *args: Any, real: Any = real, name: str = name, dropped: list[str] = dropped, **kw: Any
        ) -> Any:
            result = await real(*args, **kw)
            if name not in dropped:
                dropped.append(name)
                raise RedisConnectionError("Connection closed by server.")
            return result

        monkeypatch.setitem(bus._lua, name, reply_lost)

    record, created = await bus.chat_append("r", "u:1", "1", "hello", 5.0, {"n": "a"})
    assert (record.seq, created) == (1, True)
    assert [r.text for r in await bus.chat_since("r", 0)] == ["hello"]
    # A real duplicate (the client re-sent it) is still reported as one.
    assert (await bus.chat_append("r", "u:1", "1", "hello", 6.0, {"n": "a"}))[1] is False

    await bus.queue_put(QueueEntry("case-1", 1.0))
    assert await bus.queue_claim("case-1", "agent-1") is True
    assert await bus.queue_claim("case-1", "agent-2") is False


async def test_no_redis_at_all_is_reported_as_unavailable_after_the_timeout() -> None:
    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", unavailable_timeout_s=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BusUnavailable) as caught:
        await bus.start()
    assert 0.4 <= loop.time() - started < 3.0
    assert caught.value.retryable and isinstance(caught.value, ConnectionError)
    await bus.aclose()


async def test_lagged_subscription_continues_after_the_gap(make_redis_bus: MakeRedisBus) -> None:
    bus = await make_redis_bus(subscriber_buffer=2)
    subscription = bus.subscribe("t")
    for i in range(5):
        await bus.publish("t", {"i": i})
    await bus._flush()
    # 0 and 1 were buffered; 2 did not fit: 0-2 are the gap, 3 and 4 come after it.
    with pytest.raises(Lagged):
        await take(subscription, 1)
    await bus.publish("t", {"i": "after"})
    assert await take(subscription, 3) == [{"i": 3}, {"i": 4}, {"i": "after"}]
    await subscription.aclose()
