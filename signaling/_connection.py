"""One WebSocket as the Hub keeps it: who it is, where it is, its bounded outbound queue and
writer, and the bus topics it follows (one pump task each); plus the node's set of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import WSCloseCode, web

from aioutil import OwnedTasks, cancel_and_wait

from . import outbound
from .bus import Bus, Lagged, Reconnected, Subscription
from .config import HubConfig
from .errors import CloseCode
from .ids import RoomId
from .messages import Role
from .ports import HubObserver, Identity
from .ratelimit import RateLimit, TokenBucket

__all__ = ["Connection", "Connections", "EventHandler", "GapHandler"]

logger = logging.getLogger(__name__)

#: What a socket does with an event of a topic it follows (filter it, then send it).
EventHandler = Callable[["Connection", str, Mapping[str, Any]], None]
#: What it does when the bus may have lost events of a topic (read again what it follows).
GapHandler = Callable[["Connection", str], Awaitable[None]]


class Connection:
    """One WebSocket: its identity, its room, its outbound queue and subscriptions."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request_identity: Identity | None,
        *,
        bus: Bus,
        config: HubConfig,
        observer: HubObserver,
        tasks: OwnedTasks,
        on_event: EventHandler,
        on_gap: GapHandler,
        request: web.BaseRequest | None = None,
    ) -> None:
        self.ws = ws
        #: The upgrade request: its credentials are checked again while the socket is open.
        self.request = request
        #: Staff identified by the upgrade request (cookie or bearer token), if any.
        self.request_identity = request_identity
        self.identity: Identity | None = None
        #: Where a customer's shown name comes from (``customer`` or ``case``).
        self.name_source: str | None = None
        self.participant_id = uuid.uuid4().hex[:16]
        self.bucket = TokenBucket(RateLimit(config.message_rate, config.message_burst))
        self.room: RoomId | None = None
        #: Chat seqs this socket has been sent (history and live events can overlap).
        self.sent_seqs: set[int] = set()
        #: The ``resume_from`` it entered its room with, and the other participants it knows
        #: of: what a resync after a bus reconnect compares with.
        self.chat_base = 0
        self.known: set[str] = set()
        self.closing = False
        self._bus = bus
        self._observer = observer
        self._tasks = tasks
        self._on_event = on_event
        self._on_gap = on_gap
        self._outbox: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue(config.outbox_limit)
        self._subscriptions: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._writer: asyncio.Task[None] | None = None

    @property
    def site_id(self) -> str | None:
        """The site whose room this socket is in (staff watching it, or a camera page)."""
        return self.room.site_id if self.room is not None else None

    @property
    def role(self) -> Role | None:
        return self.identity.role if self.identity is not None else None

    def participant(self) -> dict[str, Any]:
        """This socket as the others in its room see it."""
        assert self.identity is not None
        return outbound.participant_info(
            self.participant_id,
            self.identity.role,
            self.identity.name,
            self.identity.camera_id,
            name_source=self.name_source,
        )

    # -- outbound ---------------------------------------------------------------------------

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(
            self._write_loop(), name=f"ws-writer-{self.participant_id}"
        )

    def send(self, message: Mapping[str, Any]) -> None:
        """Queue a message; a client too slow to drain its queue is told to resume instead."""
        if self.closing:
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("socket %s lagging; closing it to resume", self.participant_id)
            self.close_soon(CloseCode.LAGGING, "lagging: reconnect and resume")

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket without waiting for it (what is queued before is still sent)."""
        if self.closing:
            return
        self.closing = True

        async def close() -> None:
            await self.ws.close(code=code, message=reason.encode())

        self._tasks.spawn(close(), name=f"ws-close-{self.participant_id}")

    async def _write_loop(self) -> None:
        try:
            while True:
                message = await self._outbox.get()
                if message is None or self.ws.closed:
                    return
                await self.ws.send_json(message)
                self._observer.ws_message("out", str(message.get("type")))
        except (ConnectionResetError, RuntimeError) as exc:
            logger.debug("socket %s write ended: %s", self.participant_id, exc)

    async def stop_writer(self) -> None:
        """Let the writer send what is queued (for up to a second), then end it."""
        if self._writer is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        try:
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._writer)
        except TimeoutError:
            await cancel_and_wait(self._writer)

    # -- subscriptions ----------------------------------------------------------------------

    def follow(self, topic: str) -> None:
        if topic in self._subscriptions:
            return
        subscription = self._bus.subscribe(topic)
        task = asyncio.create_task(
            self._pump(topic, subscription), name=f"ws-follow-{topic}-{self.participant_id}"
        )
        self._subscriptions[topic] = (subscription, task)

    async def unfollow(self, topic: str) -> None:
        entry = self._subscriptions.pop(topic, None)
        if entry is None:
            return
        subscription, task = entry
        await subscription.aclose()
        await cancel_and_wait(task)

    async def unfollow_all(self) -> None:
        for topic in list(self._subscriptions):
            await self.unfollow(topic)

    async def _pump(self, topic: str, subscription: Subscription) -> None:
        while True:
            try:
                async for event in subscription:
                    self._on_event(self, topic, event)
                return
            except Reconnected:
                # The bus lost events while it reconnected, not because this socket was slow:
                # re-read what it follows and keep the socket (and the call's media) going.
                try:
                    await self._on_gap(self, topic)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "socket %s: resync of %s failed (%s); closing it to resume",
                        self.participant_id,
                        topic,
                        exc,
                    )
                    self.close_soon(CloseCode.LAGGING, "lagging: reconnect and resume")
                    return
            except Lagged:
                self.close_soon(CloseCode.LAGGING, "lagging: reconnect and resume")
                return
            except Exception:
                logger.exception("subscription %s of %s failed", topic, self.participant_id)
                self.close_soon(WSCloseCode.INTERNAL_ERROR, "internal error")
                return

    def chat_floor(self) -> int:
        """The highest seq up to which this socket has every chat message of its room."""
        seq = self.chat_base
        while seq + 1 in self.sent_seqs:
            seq += 1
        return seq


class Connections:
    """The sockets of this node, by participant id."""

    def __init__(self) -> None:
        self._by_participant: dict[str, Connection] = {}

    def __len__(self) -> int:
        return len(self._by_participant)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_participant.values()))

    def add(self, conn: Connection) -> None:
        self._by_participant[conn.participant_id] = conn

    def discard(self, conn: Connection) -> None:
        if self._by_participant.get(conn.participant_id) is conn:
            del self._by_participant[conn.participant_id]

    def get(self, participant_id: str) -> Connection | None:
        return self._by_participant.get(participant_id)

    def live_calls(self) -> int:
        """Rooms with both a customer and staff connected."""
        roles: dict[RoomId, set[Role]] = {}
        for conn in self._by_participant.values():
            if conn.room is not None and conn.role is not None:
                roles.setdefault(conn.room, set()).add(conn.role)
        return sum(1 for found in roles.values() if Role.CUSTOMER in found and len(found) > 1)
