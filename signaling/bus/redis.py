"""Redis bus: several processes or hosts share signaling state through one Redis primary.

Layout (every key and channel starts with ``prefix``, default ``inspect:``; nothing else in
the database is read or written):

=====================================  ======================================================
``{p}topic:<topic>``                   Pub/Sub channel of a topic (JSON events)
``{p}sync:<node>``                     Pub/Sub channel a node uses to flush its own reader
``{p}chat:<room>:log``                 Stream, entry id ``<seq>-0``, field ``r`` = record JSON,
                                       at most ``chat_history`` entries
``{p}chat:<room>:seq``                 last sequence number handed out in the room
``{p}chat:<room>:dedupe``              zset dedupe key -> seq (of the records still in the log)
``{p}chat:<room>:bytes``               bytes of record JSON in the log (``chat_history_bytes``)
``{p}presence:<room>``                 hash participant id -> ``<expiry ms> <node> <JSON>``
``{p}queue`` / ``{p}queue:entries``    zset case -> waiting since / hash case -> entry JSON
``{p}queue:claim:<case>``              token of the claim that won (short TTL)
``{p}node:<node>`` / ``{p}nodes``      node info with a TTL / set of registered node ids
``{p}room:<room>:home``                node id holding the room's media, with a TTL
``{p}epoch``                           random token; a new one means Redis lost its data
=====================================  ======================================================

Failure model. Every operation retries connection failures with exponential backoff (first
retry at once: a pooled connection may be stale after a restart) and raises
:class:`~.base.BusUnavailable` only when Redis stays unreachable for ``unavailable_timeout_s``.
The Pub/Sub reader reconnects by itself and subscribes every channel that still has
subscribers; events published while it was disconnected are gone, so each subscription that
existed when the reader noticed the disconnect delivers what it had buffered, then raises
:class:`~.base.Reconnected` (a :class:`~.base.Lagged`) once the new connection has subscribed
again (the hub then re-reads the chat log and the room's state for that socket, which stays
open), and iterating it again continues after the gap.

Redis keeps nothing on disk here, so a restart loses all of the above. What the bus does:

* chat: records acknowledged before the loss are gone from Redis (the server also records each
  message in the case timeline, which is the durable copy). Appends in flight during the outage
  are retried until Redis answers, and the page re-sends what the server never confirmed with
  the same client id, so nothing unacknowledged is lost. Sequence numbers never go backwards for
  a room this node has seen or that a reconnecting client resumes in (see :meth:`chat_since`),
  so clients that dedupe by seq do not drop new messages.
* presence, node registrations and room homes: re-written by this node's heartbeat.
* the agent queue and events: lost; the hub's resync after :class:`~.base.Reconnected` queues
  waiting customers again and sends every socket its room's current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import _redis_lua as lua
from ._redis_fanout import UNREACHABLE, Fanout, RedisSubscription
from .base import BusUnavailable, ChatRecord, QueueEntry

__all__ = ["RedisBus"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Events buffered per subscriber before it is declared lagging (as in the memory bus).
SUBSCRIBER_BUFFER = 512
#: Chat messages and bytes of record JSON kept per room (as in the memory bus); the dedupe
#: keys of the records kept are remembered.
CHAT_HISTORY = 1_000
CHAT_HISTORY_BYTES = 1024 * 1024
#: Rooms whose highest seq this node remembers, to keep seqs monotonic across a data loss.
FLOOR_ROOMS = 100_000
#: Client resume hints above this are ignored (a bogus client must not exhaust the counter).
MAX_SEQ_HINT = 2**40
_UNREACHABLE_OR_SLOW: tuple[type[BaseException], ...] = (TimeoutError, *UNREACHABLE)


class RedisBus:
    """The :class:`~.base.Bus` on Redis (``redis.asyncio``), for several nodes.

    ``start()`` launches three named tasks: the Pub/Sub reader, the subscription changer and
    the heartbeat (this node's presence entries, node registrations and room homes, and
    data-loss detection); ``aclose()`` stops them and removes what this node registered.
    """

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        prefix: str = "inspect:",
        heartbeat_s: float = 2.0,
        presence_ttl_s: float = 10.0,
        room_home_ttl_s: float = 10.0,
        unavailable_timeout_s: float = 10.0,
        chat_ttl_s: float = 7 * 24 * 3600,
        chat_history: int = CHAT_HISTORY,
        chat_history_bytes: int = CHAT_HISTORY_BYTES,
        subscriber_buffer: int = SUBSCRIBER_BUFFER,
        max_connections: int = 32,
        command_timeout_s: float = 5.0,
    ) -> None:
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if not self.node_id or any(c.isspace() for c in self.node_id):
            raise ValueError(f"node id must be non-empty without whitespace: {self.node_id!r}")
        if heartbeat_s <= 0 or presence_ttl_s <= heartbeat_s or room_home_ttl_s <= heartbeat_s:
            raise ValueError("heartbeat_s must be positive and shorter than the TTLs it renews")
        self.prefix = prefix
        self.heartbeat_s = heartbeat_s
        self.presence_ttl_s = presence_ttl_s
        self.room_home_ttl_s = room_home_ttl_s
        self.unavailable_timeout_s = unavailable_timeout_s
        self.chat_ttl_s = chat_ttl_s
        if chat_history < 1 or chat_history_bytes < 1:
            raise ValueError("a room's chat history must hold at least one message")
        self.chat_history = chat_history
        self.chat_history_bytes = chat_history_bytes
        #: Chat records this node's appends dropped to keep rooms within their retention.
        self.chat_dropped = 0
        self.subscriber_buffer = subscriber_buffer
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=command_timeout_s,
            decode_responses=True,
            socket_connect_timeout=min(1.0, command_timeout_s),
            socket_timeout=command_timeout_s,
            # Retries (with backoff and the unavailability deadline) are ours: see ``_op``.
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis.from_pool(pool)
        scripts = {name: self._redis.register_script(getattr(lua, name)) for name in lua.__all__}
        self._lua = scripts

        self._beat_now = asyncio.Event()
        self._fanout = Fanout(
            self._redis,
            sync_channel=f"{prefix}sync:{self.node_id}",
            keepalive_s=heartbeat_s,
            subscriber_buffer=subscriber_buffer,
            # A new connection: check for a data loss and restore this node's state now.
            on_live=self._beat_now.set,
        )

        # What this node re-writes on every heartbeat.
        self._own_presence: dict[str, dict[str, str]] = defaultdict(dict)
        self._own_nodes: dict[str, tuple[str, float]] = {}
        self._own_homes: set[str] = set()
        self._floors: OrderedDict[str, int] = OrderedDict()
        self._epoch: str | None = None

        self._down_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (waiting up to the unavailability timeout), then start the reader and the
        heartbeat. Raises :class:`BusUnavailable` if Redis does not answer."""
        if self._started:
            return
        epoch = await self._op("start", lambda _: self._ensure_epoch(), barrier=False)
        if self._started:  # a concurrent start() won
            return
        self._started = True
        self._epoch = epoch
        self._heartbeat_task = asyncio.create_task(
            self._heartbeat(), name=f"redis-bus-heartbeat-{self.node_id}"
        )
        self._tasks = [*self._fanout.tasks(self.node_id), self._heartbeat_task]
        logger.info("redis bus started as node %s (prefix %r)", self.node_id, self.prefix)

    async def aclose(self) -> None:
        """Stop the tasks, close every subscription, and (best effort, briefly) remove this
        node's registrations, room homes and presence entries; then close the connections."""
        if self._closed:
            return
        self._closed = True
        # Dropping the Pub/Sub connection first ends the reader's read at once; the loops
        # also check for closing, because a cancellation landing while redis-py's read times
        # out can be swallowed by it.
        await self._fanout.aclose()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.heartbeat_s + 1.0)
            for task in stuck:
                logger.warning("redis bus task %s did not stop", task.get_name())
        try:
            async with asyncio.timeout(1.0):
                await self._forget_own_state()
        except _UNREACHABLE_OR_SLOW as exc:
            logger.warning("redis bus %s closed without cleaning up: %s", self.node_id, exc)
        await self._fanout.aclose()
        await self._redis.aclose(close_connection_pool=True)

    async def _forget_own_state(self) -> None:
        for room, members in list(self._own_presence.items()):
            if members:
                await self._redis.hdel(self._key("presence", room), *members)
        self._own_presence.clear()
        for room in list(self._own_homes):
            await self._lua["RELEASE_HOME"](keys=[self._home_key(room)], args=[self.node_id])
        self._own_homes.clear()
        for node_id in list(self._own_nodes):
            await self._redis.delete(self._key("node", node_id))
            await self._redis.srem(self._key("nodes"), node_id)
        self._own_nodes.clear()

    # -- keys and retries -------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _chat_keys(self, room: str) -> list[str]:
        return [self._key("chat", room, "seq"), self._key("chat", room, "log")]

    def _chat_all_keys(self, room: str) -> list[str]:
        """Seq, log, dedupe and byte count: every key of a room's chat."""
        return [
            *self._chat_keys(room),
            self._key("chat", room, "dedupe"),
            self._key("chat", room, "bytes"),
        ]

    def _home_key(self, room: str) -> str:
        return self._key("room", room, "home")

    async def _op(
        self,
        what: str,
        attempt: Callable[[int], Awaitable[T]],
        *,
        barrier: bool = True,
    ) -> T:
        """Run ``attempt(n)`` until it succeeds, retrying while Redis is unreachable; raise
        :class:`BusUnavailable` past the deadline. With ``barrier``, first wait until Redis
        has confirmed every subscription asked for so far, so that "subscribe, then read the
        log" misses nothing (the hub relies on it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unavailable_timeout_s
        if barrier and not await self._fanout.wait_subscribed(deadline):
            raise BusUnavailable(
                f"redis did not confirm subscriptions before {what} within "
                f"{self.unavailable_timeout_s:g}s"
            )
        delay = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                result = await attempt(tries)
            except UNREACHABLE as exc:
                now = loop.time()
                if self._down_since is None:
                    self._down_since = now
                    logger.warning("redis unreachable during %s (%s); retrying", what, exc)
                if now >= deadline:
                    raise BusUnavailable(
                        f"redis did not answer {what} within {self.unavailable_timeout_s:g}s: {exc}"
                    ) from exc
                await asyncio.sleep(min(delay, deadline - now))
                delay = min(max(delay * 2, 0.05), 1.0)
                continue
            if self._down_since is not None:
                logger.info("redis reachable again after %.1fs", loop.time() - self._down_since)
                self._down_since = None
            return result

    # -- publish / subscribe ----------------------------------------------------------------

    async def publish(self, topic: str, event: Mapping[str, Any]) -> None:
        """Deliver ``event`` to every subscriber of ``topic`` on every node. Retried after a
        lost connection, so an event can (rarely) arrive twice; subscribers dedupe chat by seq."""
        channel = self._key("topic", topic)
        payload = json.dumps(event, separators=(",", ":"))
        await self._op("publish", lambda _: self._redis.publish(channel, payload))

    async def send(self, topic: str, event: Mapping[str, Any]) -> int:
        """:meth:`publish`, returning how many nodes follow ``topic`` right now (each node
        reads through one connection): 0 means nobody got it, e.g. a node that is gone."""
        channel = self._key("topic", topic)
        payload = json.dumps(event, separators=(",", ":"))
        receivers = await self._op("send", lambda _: self._redis.publish(channel, payload))
        return int(receivers)

    def subscribe(self, topic: str) -> RedisSubscription:
        """Follow ``topic``. Returns at once; the next operation on this bus waits until Redis
        has confirmed the subscription, so "subscribe, then read the log" misses nothing."""
        return self._fanout.subscribe(topic, self._key("topic", topic))

    async def _flush(self) -> None:
        """Wait until every event published (by anyone) before this call has reached this
        node's subscribers: Redis delivers in the order it executed the PUBLISH commands."""

        async def publish(channel: str, token: str) -> None:
            await self._op("flush", lambda _: self._redis.publish(channel, token))

        async with asyncio.timeout(self.unavailable_timeout_s):
            await self._fanout.flush(publish)

    # -- chat -------------------------------------------------------------------------------

    def _note_floor(self, room: str, seq: int) -> None:
        if seq > self._floors.get(room, 0):
            self._floors[room] = seq
        if room in self._floors:
            self._floors.move_to_end(room)
            while len(self._floors) > FLOOR_ROOMS:
                self._floors.popitem(last=False)

    async def chat_append(
        self,
        room: str,
        dedupe_key: str,
        client_id: str,
        text: str,
        ts: float,
        sender: Mapping[str, Any],
        *,
        publish_to: str | None = None,
    ) -> tuple[ChatRecord, bool]:
        """Append atomically (one script: dedupe check, seq, ``XADD`` and, with
        ``publish_to``, the ``PUBLISH`` of the new record). After Redis lost its
        data the seq continues above the highest one this node knows for the room.

        A retry after a lost reply may find its own first attempt stored: it is recognised
        (same text, time and sender) and reported as new, so the hub still publishes it."""
        keys = self._chat_all_keys(room)
        record_json = json.dumps(
            {"client_id": client_id, "text": text, "ts": ts, "sender": dict(sender)},
            separators=(",", ":"),
        )

        async def attempt(tries: int) -> tuple[ChatRecord, bool]:
            created, seq_raw, stored, dropped = await self._lua["CHAT_APPEND"](
                keys=keys,
                args=[
                    dedupe_key,
                    record_json,
                    self.chat_history,
                    int(self.chat_ttl_s),
                    self._floors.get(room, 0),
                    self._key("topic", publish_to) if publish_to is not None else "",
                    self.chat_history_bytes,
                ],
            )
            seq = int(seq_raw)
            if dropped:
                self.chat_dropped += int(dropped)
            if created:
                return ChatRecord(seq, client_id, text, ts, dict(sender)), True
            if stored is None:  # trimmed from the log: the client only needs the seq back
                return ChatRecord(seq, client_id, text, ts, dict(sender)), False
            original = _record(seq, stored)
            return original, tries > 1 and stored == record_json

        record, created = await self._op("chat_append", attempt)
        self._note_floor(room, record.seq)
        return record, created

    async def chat_since(self, room: str, after_seq: int) -> list[ChatRecord]:
        """Records with ``seq > after_seq``, oldest first, read from the room's stream.

        ``after_seq`` is also taken as proof that the room reached it: if Redis lost the room
        (restart), its counter is raised so new messages get higher seqs than the client has."""
        if after_seq >= 2**53:
            return []
        keys = self._chat_keys(room)
        hint = after_seq if after_seq < MAX_SEQ_HINT else 0
        self._note_floor(room, hint)
        page = 1000
        records: list[ChatRecord] = []
        start = after_seq + 1
        while True:
            first = not records

            async def attempt(_: int, start: int = start, first: bool = first) -> Any:
                if first:
                    return await self._lua["CHAT_SINCE"](
                        keys=keys, args=[hint, f"{start}-0", page, int(self.chat_ttl_s)]
                    )
                return await self._redis.xrange(keys[1], min=f"{start}-0", count=page)

            entries = await self._op("chat_since", attempt)
            for entry_id, fields in entries:
                seq = int(str(entry_id).split("-", 1)[0])
                data = fields["r"] if isinstance(fields, Mapping) else _field(fields, "r")
                records.append(_record(seq, data))
            if len(entries) < page:
                break
            start = records[-1].seq + 1
        if records:
            self._note_floor(room, records[-1].seq)
        return records

    async def drop_room(self, room: str) -> None:
        """Forget the room's chat (log, seq, dedupe keys, byte count) and this node's floor
        for it: a finished room's seqs need not stay monotonic."""
        keys = self._chat_all_keys(room)
        self._floors.pop(room, None)
        await self._op("drop_room", lambda _: self._lua["CHAT_DROP"](keys=keys))

    # -- presence ---------------------------------------------------------------------------

    async def presence_add(self, room: str, participant: Mapping[str, Any]) -> None:
        """Add or replace a participant, tagged with this node and an expiry that this node's
        heartbeat extends: entries of a node that stops vanish after ``presence_ttl_s``."""
        participant_id = str(participant["participant_id"])
        data = json.dumps(dict(participant), separators=(",", ":"))
        self._own_presence[room][participant_id] = data
        ttl_ms = int(self.presence_ttl_s * 1000)
        await self._op(
            "presence_add",
            lambda _: self._lua["PRESENCE_ADD"](
                keys=[self._key("presence", room)],
                args=[participant_id, data, self.node_id, ttl_ms],
            ),
        )

    async def presence_remove(self, room: str, participant_id: str) -> None:
        members = self._own_presence.get(room)
        if members is not None:
            members.pop(participant_id, None)
            if not members:
                del self._own_presence[room]
        await self._op(
            "presence_remove",
            lambda _: self._redis.hdel(self._key("presence", room), participant_id),
        )

    async def presence_list(self, room: str) -> list[Mapping[str, Any]]:
        values = await self._op(
            "presence_list",
            lambda _: self._lua["PRESENCE_LIST"](keys=[self._key("presence", room)]),
        )
        participants: list[Mapping[str, Any]] = []
        for value in values:
            _, _, data = str(value).split(" ", 2)
            participants.append(json.loads(data))
        return participants

    # -- agent queue ------------------------------------------------------------------------

    def _queue_keys(self) -> list[str]:
        return [self._key("queue"), self._key("queue", "entries")]

    async def queue_put(self, entry: QueueEntry) -> None:
        data = json.dumps(
            {"summary": dict(entry.summary), "node": self.node_id}, separators=(",", ":")
        )
        await self._op(
            "queue_put",
            lambda _: self._lua["QUEUE_PUT"](
                keys=self._queue_keys(), args=[entry.case_id, repr(entry.waiting_since), data]
            ),
        )

    async def queue_remove(self, case_id: str) -> bool:
        removed = await self._op(
            "queue_remove",
            lambda _: self._lua["QUEUE_REMOVE"](keys=self._queue_keys(), args=[case_id]),
        )
        return bool(removed)

    async def queue_entries(self) -> list[QueueEntry]:
        """Waiting cases, longest wait first."""
        flat = await self._op(
            "queue_entries", lambda _: self._lua["QUEUE_ENTRIES"](keys=self._queue_keys())
        )
        entries = []
        for i in range(0, len(flat), 3):
            stored = json.loads(flat[i + 2])
            entries.append(QueueEntry(flat[i], float(flat[i + 1]), stored.get("summary", {})))
        return entries

    async def queue_claim(self, case_id: str, agent_id: str) -> bool:
        """Atomically take ``case_id`` off the queue (one script): exactly one of any number
        of concurrent callers, on any nodes, wins."""
        token = f"{agent_id}:{uuid.uuid4().hex}"
        claimed = await self._op(
            "queue_claim",
            lambda _: self._lua["QUEUE_CLAIM"](
                keys=[*self._queue_keys(), self._key("queue", "claim", case_id)],
                args=[case_id, token, 60],
            ),
        )
        if claimed:
            logger.debug("case %s claimed by %s", case_id, agent_id)
        return bool(claimed)

    # -- nodes and room homes (for routing rooms to the node holding their media) -----------

    async def register_node(self, node_id: str, info: Mapping[str, Any], ttl: float) -> None:
        """Announce a node with ``info`` (e.g. addresses, load) for ``ttl`` seconds; this bus
        renews it on every heartbeat until :meth:`unregister_node` or :meth:`aclose`. Call it
        again to update ``info``."""
        data = json.dumps(dict(info), separators=(",", ":"))
        self._own_nodes[node_id] = (data, ttl)
        await self._op("register_node", lambda _: self._write_node(node_id, data, ttl))

    async def _write_node(self, node_id: str, data: str, ttl: float) -> None:
        await self._lua["REGISTER_NODE"](
            keys=[self._key("node", node_id), self._key("nodes")],
            args=[node_id, data, max(1, int(ttl * 1000))],
        )

    async def unregister_node(self, node_id: str) -> None:
        self._own_nodes.pop(node_id, None)

        async def attempt(_: int) -> None:
            await self._redis.delete(self._key("node", node_id))
            await self._redis.srem(self._key("nodes"), node_id)

        await self._op("unregister_node", attempt)

    async def live_nodes(self) -> dict[str, dict[str, Any]]:
        """Registered nodes whose registration has not expired: node id -> info."""
        flat = await self._op(
            "live_nodes",
            lambda _: self._lua["LIVE_NODES"](
                keys=[self._key("nodes")], args=[self._key("node", "")]
            ),
        )
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def claim_room_home(self, room: str, node_id: str | None = None) -> str:
        """Make ``node_id`` (default this node) the room's home unless a live one exists;
        returns the home. The home expires ``room_home_ttl_s`` after its node stops renewing
        it: this bus renews the homes it claimed for itself; a node claimed for by another one
        takes it over by calling this with its own id."""
        node = node_id or self.node_id
        ttl_ms = int(self.room_home_ttl_s * 1000)
        home = await self._op(
            "claim_room_home",
            lambda _: self._lua["CLAIM_HOME"](keys=[self._home_key(room)], args=[node, ttl_ms]),
        )
        if home == self.node_id:
            self._own_homes.add(room)
        return str(home)

    async def room_home(self, room: str) -> str | None:
        home = await self._op("room_home", lambda _: self._redis.get(self._home_key(room)))
        return None if home is None else str(home)

    async def release_room(self, room: str, node_id: str | None = None) -> bool:
        """Drop the room's home if ``node_id`` (default this node) holds it."""
        node = node_id or self.node_id
        if node == self.node_id:
            self._own_homes.discard(room)
        released = await self._op(
            "release_room",
            lambda _: self._lua["RELEASE_HOME"](keys=[self._home_key(room)], args=[node]),
        )
        return bool(released)

    # -- heartbeat --------------------------------------------------------------------------

    async def _ensure_epoch(self) -> str:
        epoch = await self._lua["ENSURE_EPOCH"](keys=[self._key("epoch")], args=[uuid.uuid4().hex])
        return str(epoch)

    async def _heartbeat(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await self._beat_now.wait()
            self._beat_now.clear()
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                logger.debug("heartbeat of %s skipped: %s", self.node_id, exc)
            except Exception:
                logger.exception("heartbeat of %s failed", self.node_id)

    async def _beat(self) -> None:
        epoch = await self._ensure_epoch()
        if epoch != self._epoch:
            logger.warning(
                "redis lost its data (epoch %s -> %s): restoring this node's state",
                self._epoch,
                epoch,
            )
            await self._raise_floors()
            self._epoch = epoch
        ttl_ms = int(self.presence_ttl_s * 1000)
        for room, members in list(self._own_presence.items()):
            args: list[Any] = [self.node_id, ttl_ms]
            for participant_id, data in list(members.items()):
                args += [participant_id, data]
            await self._lua["PRESENCE_REFRESH"](keys=[self._key("presence", room)], args=args)
        for node_id, (data, ttl) in list(self._own_nodes.items()):
            await self._write_node(node_id, data, ttl)
        home_ttl_ms = int(self.room_home_ttl_s * 1000)
        for room in list(self._own_homes):
            held = await self._lua["REFRESH_HOME"](
                keys=[self._home_key(room)], args=[self.node_id, home_ttl_ms]
            )
            if not held:
                self._own_homes.discard(room)
                logger.warning("room %s: home moved to another node", room)

    async def _raise_floors(self) -> None:
        floors = list(self._floors.items())
        for i in range(0, len(floors), 500):
            chunk = floors[i : i + 500]
            await self._lua["RAISE_FLOORS"](
                keys=[self._key("chat", room, "seq") for room, _ in chunk],
                args=[int(self.chat_ttl_s), *(seq for _, seq in chunk)],
            )


def _record(seq: int, data: str) -> ChatRecord:
    fields = json.loads(data)
    return ChatRecord(seq, fields["client_id"], fields["text"], fields["ts"], fields["sender"])


def _field(fields: Any, name: str) -> str:
    items = list(fields)
    for i in range(0, len(items) - 1, 2):
        if items[i] == name:
            return str(items[i + 1])
    raise KeyError(name)
