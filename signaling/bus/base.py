"""The bus seam: what signaling needs to share between connections (and, with Redis, nodes).

Two implementations, chosen by the ``bus`` setting: :mod:`.memory` (one process, the embedded
default) and ``redis`` (several processes or hosts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import SignalingError, SignalingErrorCode

__all__ = [
    "Bus",
    "BusUnavailable",
    "ChatRecord",
    "Lagged",
    "QueueEntry",
    "Reconnected",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A chat message as stored in a room's log; ``seq`` is assigned by the bus."""

    seq: int
    client_id: str
    text: str
    ts: float
    sender: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "chat",
            "seq": self.seq,
            "client_id": self.client_id,
            "text": self.text,
            "ts": self.ts,
            "sender": dict(self.sender),
        }


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A case whose customer is waiting for an agent."""

    case_id: str
    waiting_since: float
    summary: Mapping[str, Any] = field(default_factory=dict)


class Lagged(Exception):
    """A subscriber fell so far behind that events were dropped: it must resynchronise
    (clients reconnect and resume from their last sequence number)."""


class Reconnected(Lagged):
    """Events may have been lost while the bus was disconnected from its server (not because
    this subscriber was slow). Raised once the subscription is in place again, at the point of
    the gap: every event before it was delivered, every event published after it will be, so a
    consumer that re-reads the state it follows (the chat log) now misses nothing and may keep
    going; iterating again continues after the gap."""


class BusUnavailable(SignalingError, ConnectionError):
    """The shared bus (Redis) did not answer within the bus's unavailability timeout, retries
    with backoff included. The operation may or may not have taken effect; repeating it is safe
    for every bus operation (chat appends are deduplicated by their key).

    ``message`` is what a client may be told; ``detail`` (addresses, the driver's error) is for
    logs only."""

    code = SignalingErrorCode.UNAVAILABLE
    retryable = True

    def __init__(self, detail: str = "") -> None:
        super().__init__(message="the service is briefly unavailable; retry shortly")
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} ({self.detail})" if self.detail else self.message


class Subscription(Protocol):
    """Events published to one topic, in order. Iteration raises :class:`Lagged` when events
    were lost: the bounded buffer overflowed or (Redis) the connection to the bus dropped."""

    def __aiter__(self) -> AsyncIterator[Mapping[str, Any]]: ...

    async def aclose(self) -> None: ...


class Bus(Protocol):
    #: Chat records this bus (this node's appends) dropped to keep rooms within retention.
    chat_dropped: int

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def publish(self, topic: str, event: Mapping[str, Any]) -> None: ...

    def subscribe(self, topic: str) -> Subscription: ...

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
        """Append a message unless ``dedupe_key`` was seen in ``room``; returns the stored
        record (the original for a duplicate) and whether it was new. With ``publish_to``, a
        new record is also published to that topic in the same step as its seq is assigned,
        so every subscriber sees a room's messages in seq order, whichever node sent them."""
        ...

    async def chat_since(self, room: str, after_seq: int) -> list[ChatRecord]:
        """The room's retained records with ``seq > after_seq``, oldest first. A room keeps at
        most its bus's ``chat_history`` records and ``chat_history_bytes`` of record JSON; the
        oldest are dropped first (and counted in ``chat_dropped``)."""
        ...

    async def drop_room(self, room: str) -> None:
        """The room is finished: forget its chat log, sequence and dedupe keys (a room used
        again after this starts over from seq 1). Presence is left to those who leave."""
        ...

    async def presence_add(self, room: str, participant: Mapping[str, Any]) -> None: ...

    async def presence_remove(self, room: str, participant_id: str) -> None: ...

    async def presence_list(self, room: str) -> list[Mapping[str, Any]]: ...

    async def queue_put(self, entry: QueueEntry) -> None: ...

    async def queue_remove(self, case_id: str) -> bool: ...

    async def queue_entries(self) -> list[QueueEntry]:
        """Waiting cases, longest wait first."""
        ...

    async def queue_claim(self, case_id: str, agent_id: str) -> bool:
        """Atomically take ``case_id`` off the queue; exactly one concurrent caller wins."""
        ...
