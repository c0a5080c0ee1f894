"""In-process bus: the embedded default (one process, nothing shared)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .base import ChatRecord, Lagged, QueueEntry

__all__ = ["MemoryBus"]

logger = logging.getLogger(__name__)

#: Events buffered per subscriber before it is declared lagging.
SUBSCRIBER_BUFFER = 512
#: Chat messages and bytes of record JSON kept per room (older ones are still in the case
#: timeline); past either the oldest are dropped first.
CHAT_HISTORY = 1_000
CHAT_HISTORY_BYTES = 1024 * 1024


def record_size(record: ChatRecord) -> int:
    """A record's size as a room's retention counts it: the bytes of its stored JSON (as the
    Redis bus stores it: the client id, text, time and sender)."""
    stored = {
        "client_id": record.client_id,
        "text": record.text,
        "ts": record.ts,
        "sender": dict(record.sender),
    }
    return len(json.dumps(stored, separators=(",", ":")).encode())


class _ChatLog:
    """One room's retained chat: records oldest first with their sizes, and the dedupe key of
    each record still retained (a key is forgotten with its record)."""

    __slots__ = ("by_key", "bytes", "records", "seq")

    def __init__(self) -> None:
        self.records: deque[tuple[str, ChatRecord, int]] = deque()
        self.by_key: dict[str, ChatRecord] = {}
        self.bytes = 0
        self.seq = 0

    def append(self, key: str, record: ChatRecord, *, max_records: int, max_bytes: int) -> int:
        """Keep ``record``; drop the oldest past the bounds (never the newest); how many."""
        size = record_size(record)
        self.records.append((key, record, size))
        self.by_key[key] = record
        self.bytes += size
        dropped = 0
        while len(self.records) > 1 and (len(self.records) > max_records or self.bytes > max_bytes):
            old_key, _, old_size = self.records.popleft()
            self.by_key.pop(old_key, None)
            self.bytes -= old_size
            dropped += 1
        return dropped


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, topic: str) -> None:
        self._bus = bus
        self._topic = topic
        self._events: deque[Mapping[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._lagged = False
        self._closed = False

    def _deliver(self, event: Mapping[str, Any]) -> None:
        if len(self._events) >= SUBSCRIBER_BUFFER:
            # Never grow without bound: the consumer resynchronises from the logs instead.
            self._lagged = True
        else:
            self._events.append(event)
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]:
        while not self._closed:
            if self._lagged:
                raise Lagged(self._topic)
            if self._events:
                yield self._events.popleft()
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self._topic, self)
            self._wakeup.set()


class MemoryBus:
    """Everything in dictionaries; each operation completes without yielding, which makes
    ``queue_claim`` atomic on the event loop."""

    def __init__(
        self, *, chat_history: int = CHAT_HISTORY, chat_history_bytes: int = CHAT_HISTORY_BYTES
    ) -> None:
        if chat_history < 1 or chat_history_bytes < 1:
            raise ValueError("a room's chat history must hold at least one message")
        self.chat_history = chat_history
        self.chat_history_bytes = chat_history_bytes
        #: Chat records dropped to keep rooms within their retention, since start.
        self.chat_dropped = 0
        self._subscribers: dict[str, set[_MemorySubscription]] = defaultdict(set)
        self._chat: dict[str, _ChatLog] = {}
        self._presence: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
        self._queue: dict[str, QueueEntry] = {}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                await subscription.aclose()

    async def publish(self, topic: str, event: Mapping[str, Any]) -> None:
        for subscription in list(self._subscribers.get(topic, ())):
            subscription._deliver(event)

    def subscribe(self, topic: str) -> _MemorySubscription:
        subscription = _MemorySubscription(self, topic)
        self._subscribers[topic].add(subscription)
        return subscription

    def _unsubscribe(self, topic: str, subscription: _MemorySubscription) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[topic]

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
        log = self._chat.get(room)
        if log is None:
            log = self._chat[room] = _ChatLog()
        seen = log.by_key.get(dedupe_key)
        if seen is not None:
            return seen, False
        log.seq += 1
        record = ChatRecord(log.seq, client_id, text, ts, dict(sender))
        dropped = log.append(
            dedupe_key, record, max_records=self.chat_history, max_bytes=self.chat_history_bytes
        )
        if dropped:
            self.chat_dropped += dropped
            logger.debug("room %s: %d old chat messages dropped", room, dropped)
        if publish_to is not None:  # no await between the seq and the delivery: in order
            for subscription in list(self._subscribers.get(publish_to, ())):
                subscription._deliver(record.to_json())
        return record, True

    async def chat_since(self, room: str, after_seq: int) -> list[ChatRecord]:
        log = self._chat.get(room)
        if log is None:
            return []
        return [record for _, record, _ in log.records if record.seq > after_seq]

    async def drop_room(self, room: str) -> None:
        self._chat.pop(room, None)

    async def presence_add(self, room: str, participant: Mapping[str, Any]) -> None:
        self._presence[room][str(participant["participant_id"])] = dict(participant)

    async def presence_remove(self, room: str, participant_id: str) -> None:
        members = self._presence.get(room)
        if members is not None:
            members.pop(participant_id, None)
            if not members:
                del self._presence[room]

    async def presence_list(self, room: str) -> list[Mapping[str, Any]]:
        return list(self._presence.get(room, {}).values())

    async def queue_put(self, entry: QueueEntry) -> None:
        self._queue[entry.case_id] = entry

    async def queue_remove(self, case_id: str) -> bool:
        return self._queue.pop(case_id, None) is not None

    async def queue_entries(self) -> list[QueueEntry]:
        return sorted(self._queue.values(), key=lambda entry: entry.waiting_since)

    async def queue_claim(self, case_id: str, agent_id: str) -> bool:
        claimed = self._queue.pop(case_id, None) is not None
        if claimed:
            logger.debug("case %s claimed by %s", case_id, agent_id)
        return claimed
