"""Pub/Sub fan-out of :mod:`.redis`: one reader connection per node, local subscribers with
bounded buffers, a barrier for "Redis has confirmed my subscriptions", and the reconnect loop
that turns a lost connection into a :class:`~.base.Reconnected` for each subscription."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import Lagged, Reconnected

__all__ = ["UNREACHABLE", "Fanout", "RedisSubscription"]

logger = logging.getLogger(__name__)

#: Failures that mean "Redis is not reachable (right now)"; anything else is a bug or misuse.
UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,  # a replica being promoted
    OSError,
)
_KEEPALIVE = "keepalive"


class _Gap:
    """Where a subscription's events were interrupted by a lost connection; it becomes
    ``active`` once the next connection has subscribed again."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False


class RedisSubscription:
    """Events of one topic: a bounded buffer fed by the node's Pub/Sub reader."""

    def __init__(self, fanout: Fanout, topic: str, channel: str, buffer: int) -> None:
        self._fanout = fanout
        self._topic = topic
        self._channel = channel
        self._buffer = buffer
        self._events: deque[Mapping[str, Any] | _Gap] = deque()
        self._wakeup = asyncio.Event()
        self._lagged = False
        self._closed = False

    def _deliver(self, event: Mapping[str, Any]) -> None:
        if len(self._events) >= self._buffer:
            # Never grow without bound: this event is lost, the consumer resynchronises.
            self._gap()
        else:
            self._events.append(event)
            self._wakeup.set()

    def _gap(self) -> None:
        """Events were lost here. What is buffered predates the gap and goes too: after the
        Lagged, the consumer resynchronises and then gets only events from after the gap."""
        self._events.clear()
        self._lagged = True
        self._wakeup.set()

    def _disconnected(self) -> _Gap:
        """The connection dropped: events published from now until the next connection has
        subscribed are lost. What was buffered is still delivered, then :class:`Reconnected`
        (once that connection is in place, so that re-reading state then misses nothing)."""
        gap = _Gap()
        self._events.append(gap)
        return gap

    def _reconnected(self) -> None:
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]:
        while not self._closed:
            if self._lagged:
                self._lagged = False
                raise Lagged(self._topic)
            if self._events:
                head = self._events[0]
                if not isinstance(head, _Gap):
                    self._events.popleft()
                    yield head
                    continue
                if head.active:
                    self._events.popleft()
                    raise Reconnected(self._topic)
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._fanout._unsubscribe(self._channel, self)
            self._wakeup.set()


class Fanout:
    """This node's Pub/Sub side. ``subscribe`` is synchronous (as the Bus protocol wants);
    Redis confirms asynchronously, and :meth:`wait_subscribed` waits for that."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        sync_channel: str,
        keepalive_s: float,
        subscriber_buffer: int,
        on_live: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._sync_channel = sync_channel
        self._keepalive_s = keepalive_s
        self._subscriber_buffer = subscriber_buffer
        self._on_live = on_live
        self._channels: dict[str, set[RedisSubscription]] = defaultdict(set)
        #: The reader's Pub/Sub connection once live (its initial subscriptions confirmed).
        self._pubsub: Any = None
        self._session: Any = None
        self._reconnects = 0
        self._on_redis: set[str] = set()
        self._dirty: set[str] = set()
        self._control_lock = asyncio.Lock()
        self._control_wakeup = asyncio.Event()
        # The barrier: every subscribe/unsubscribe bumps ``_requested``; the reader raises
        # ``_confirmed`` as Redis acknowledges the commands that covered it.
        self._requested = 0
        self._confirmed = 0
        self._acks_expected = 0
        self._acks_received = 0
        self._ack_marks: deque[tuple[int, int]] = deque()
        self._synced = asyncio.Condition()
        self._flushes: dict[str, asyncio.Future[None]] = {}
        #: Gaps left by lost connections, activated when a new connection is live.
        self._gaps: list[tuple[RedisSubscription, _Gap]] = []
        self._closed = False

    @property
    def live(self) -> bool:
        """Whether the reader holds a confirmed connection right now."""
        return self._pubsub is not None

    def tasks(self, name: str) -> list[asyncio.Task[None]]:
        """Start the reader and the subscription changer (the caller owns the tasks)."""
        return [
            asyncio.create_task(self._read(), name=f"redis-bus-pubsub-{name}"),
            asyncio.create_task(self._control(), name=f"redis-bus-subscriptions-{name}"),
        ]

    async def aclose(self) -> None:
        """Close the connection (ending the reader's read) and every subscription."""
        self._closed = True
        await self._end_session()
        for subscribers in list(self._channels.values()):
            for subscription in list(subscribers):
                await subscription.aclose()

    def subscribe(self, topic: str, channel: str) -> RedisSubscription:
        subscription = RedisSubscription(self, topic, channel, self._subscriber_buffer)
        subscribers = self._channels[channel]
        subscribers.add(subscription)
        if len(subscribers) == 1:
            self._request(channel)
        return subscription

    def _unsubscribe(self, channel: str, subscription: RedisSubscription) -> None:
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._channels[channel]
            self._request(channel)

    def _request(self, channel: str) -> None:
        self._requested += 1
        self._dirty.add(channel)
        self._control_wakeup.set()

    async def _control(self) -> None:
        """Sends SUBSCRIBE / UNSUBSCRIBE for channels whose local subscribers changed."""
        while not self._closed:
            await self._control_wakeup.wait()
            self._control_wakeup.clear()
            async with self._control_lock:
                pubsub = self._pubsub
                if pubsub is None:
                    continue  # the reader subscribes everything when it reconnects
                version = self._requested
                dirty, self._dirty = self._dirty, set()
                add = sorted(c for c in dirty if c in self._channels and c not in self._on_redis)
                drop = sorted(c for c in dirty if c not in self._channels and c in self._on_redis)
                try:
                    if add:
                        self._acks_expected += len(add)
                        self._on_redis.update(add)
                        await pubsub.subscribe(*add)
                    if drop:
                        self._acks_expected += len(drop)
                        self._on_redis.difference_update(drop)
                        await pubsub.unsubscribe(*drop)
                except UNREACHABLE as exc:
                    # The reader sees the same broken connection and rebuilds everything.
                    logger.debug("subscription change failed: %s", exc)
                    continue
                except Exception:
                    logger.exception("subscription change failed")
                    continue
                self._ack_marks.append((self._acks_expected, version))
                await self._settle_acks()

    async def _settle_acks(self) -> None:
        confirmed = self._confirmed
        while self._ack_marks and self._ack_marks[0][0] <= self._acks_received:
            confirmed = max(confirmed, self._ack_marks.popleft()[1])
        if confirmed != self._confirmed:
            self._confirmed = confirmed
            async with self._synced:
                self._synced.notify_all()

    async def wait_subscribed(self, deadline: float) -> bool:
        """Wait (until the loop time ``deadline``) for Redis to confirm every subscription
        change asked for so far; returns whether it did."""
        target = self._requested
        if self._confirmed >= target:
            return True
        try:
            async with asyncio.timeout_at(deadline), self._synced:
                await self._synced.wait_for(lambda: self._confirmed >= target)
        except TimeoutError:
            return False
        return True

    async def _read(self) -> None:
        """Runs Pub/Sub sessions, one connection each, reconnecting with backoff. A session
        that ends leaves a gap in every subscription of the time; the next one subscribes every
        channel that still has subscribers and, once live, reports the gaps (Reconnected)."""
        delay = 0.0
        while not self._closed:
            try:
                await self._run_session()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                if self._pubsub is not None:
                    logger.warning("redis pub/sub connection lost (%s); reconnecting", exc)
                else:
                    logger.debug("redis pub/sub connection failed: %s", exc)
            except Exception:
                logger.exception("redis pub/sub reader failed; reconnecting")
            finally:
                was_live = await self._end_session()
            delay = 0.0 if was_live else min(max(delay * 2, 0.05), 1.0)
            await asyncio.sleep(delay)

    async def _run_session(self) -> None:
        pubsub = self._redis.pubsub()
        async with self._control_lock:
            self._session = pubsub
            version = self._requested
            self._dirty.clear()
            channels = [self._sync_channel, *self._channels]
            self._acks_expected = len(channels)
            self._acks_received = 0
            self._ack_marks = deque([(len(channels), version)])
            self._on_redis = set(channels)
            await pubsub.subscribe(*channels)
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        pinged = False
        while not self._closed:
            message = await pubsub.get_message(timeout=self._keepalive_s)
            now = loop.time()
            if message is None:
                # A peer that vanished without closing the socket is noticed here.
                if now - last_heard > 3 * self._keepalive_s:
                    raise RedisTimeoutError("pub/sub connection silent; keepalive unanswered")
                if not pinged and now - last_heard > self._keepalive_s:
                    await pubsub.ping(_KEEPALIVE)
                    pinged = True
                continue
            last_heard = now
            pinged = False
            await self._on_message(pubsub, message)

    async def _on_message(self, pubsub: Any, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            channel = message["channel"]
            if channel == self._sync_channel:
                waiter = self._flushes.pop(message["data"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                return
            subscribers = self._channels.get(channel)
            if not subscribers:
                return
            try:
                event = json.loads(message["data"])
            except ValueError:
                logger.warning("dropped a malformed event on %s", channel)
                return
            for subscription in list(subscribers):
                subscription._deliver(event)
        elif kind in ("subscribe", "unsubscribe"):
            self._acks_received += 1
            initial = self._ack_marks[0][0] if self._ack_marks else 0
            if self._pubsub is None and self._acks_received >= initial:
                # The session's initial subscriptions are in place: the session is live.
                self._pubsub = pubsub
                self._control_wakeup.set()  # changes asked for meanwhile
                gaps, self._gaps = self._gaps, []
                for subscription, gap in gaps:
                    gap.active = True
                    subscription._reconnected()
                self._on_live()
                if self._reconnects:
                    logger.info("redis pub/sub connection restored")
                self._reconnects += 1
            await self._settle_acks()

    async def _end_session(self) -> bool:
        """Close the session's connection; returns whether it had been live."""
        was_live = self._pubsub is not None
        self._pubsub = None
        pubsub, self._session = self._session, None
        if was_live and not self._closed:
            for subscribers in self._channels.values():
                for subscription in subscribers:
                    self._gaps.append((subscription, subscription._disconnected()))
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        return was_live

    async def flush(self, publish: Callable[[str, str], Awaitable[Any]]) -> None:
        """Wait until every event published (by anyone) before this call has reached this
        node's subscribers: Redis delivers in the order it executed the PUBLISH commands, so a
        token published to our own channel arrives after all of them."""
        token = uuid.uuid4().hex
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes[token] = waiter
        try:
            await publish(self._sync_channel, token)
            await waiter
        finally:
            self._flushes.pop(token, None)
