"""Being in a room: entering it (history, presence, ``joined``), chatting, leaving it, the
staff lobby, and catching up after the bus reconnected.

A room is a case's (the customer and the agent) or a site's (its camera pages and the staff
watching them). Each has a bus topic for its live events, a chat log and a presence list on the
bus; a socket follows the topic before it reads the log, so nothing published in between is
missed (``_audience`` sends each message once). The chat a joining socket missed comes in
pages: the newest in ``joined``, older ones in ``chat_page`` messages right after it; and what
one participant or room may say is bounded (``_chat``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import outbound
from ._audience import LOBBY, deliver, room_topic
from ._chat import ChatLimits, pages
from ._connection import Connection
from ._queue import AgentQueue
from ._watching import CameraWatching
from .bus import Bus
from .config import HubConfig
from .errors import SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import ChatMessage, Role
from .ports import CaseDirectory, CaseStatus, CaseSummary, Identity, MediaGateway, SiteDirectory

__all__ = ["Rooms"]

logger = logging.getLogger(__name__)


class Rooms:
    def __init__(
        self,
        *,
        bus: Bus,
        cases: CaseDirectory,
        sites: SiteDirectory | None,
        media: MediaGateway,
        queue: AgentQueue,
        watching: CameraWatching,
        ice_servers: Callable[[Identity], list[dict[str, Any]]],
        config: HubConfig,
        clock: Callable[[], float],
    ) -> None:
        self._bus = bus
        self._cases = cases
        self._sites = sites
        self._media = media
        self._queue = queue
        self._watching = watching
        self._ice_servers = ice_servers
        self._config = config
        self._clock = clock
        self._limits = ChatLimits(config)

    # -- entering -----------------------------------------------------------------------------

    async def enter_lobby(self, conn: Connection) -> None:
        """Staff outside any room; those who take calls follow the queue."""
        assert conn.identity is not None
        if conn.identity.can_take_calls:
            conn.follow(LOBBY)
        conn.send(
            outbound.joined(
                conn.participant(), case=None, ice_servers=self._ice_servers(conn.identity)
            )
        )
        if conn.identity.can_take_calls:
            conn.send(await self._queue.message())

    async def enter_case(self, conn: Connection, summary: CaseSummary, resume_from: int) -> None:
        assert conn.identity is not None
        details: Mapping[str, Any] = {}
        if conn.identity.is_staff:
            details = outbound.call_details(
                grading=self._config.grading, preroll_s=self._config.preroll_s
            )
        await self.enter(conn, RoomId.case(summary.case_id), summary, details, resume_from)

    async def enter(
        self,
        conn: Connection,
        room: RoomId,
        summary: CaseSummary | None,
        details: Mapping[str, Any],
        resume_from: int,
    ) -> None:
        """Put ``conn`` in ``room``: it gets the chat after ``resume_from`` and who is there,
        and the others are told it joined."""
        assert conn.identity is not None
        await conn.unfollow(LOBBY)
        topic = room_topic(room)
        conn.follow(topic)
        conn.room = room
        history = await self._bus.chat_since(room, resume_from)
        others = [
            p
            for p in await self._bus.presence_list(room)
            if p["participant_id"] != conn.participant_id
        ]
        await self._bus.presence_add(room, conn.participant())
        conn.chat_base = resume_from
        conn.known = {str(p["participant_id"]) for p in others}
        conn.sent_seqs.update(record.seq for record in history)
        replay = pages(
            history, size=self._config.chat_page_size, max_bytes=self._config.chat_page_bytes
        ) or [[]]
        older, newest = replay[:-1], replay[-1]
        conn.send(
            outbound.joined(
                conn.participant(),
                case=summary,
                ice_servers=self._ice_servers(conn.identity),
                chat=newest,
                chat_more=bool(older),
                last_seq=max([resume_from, *conn.sent_seqs]),
                participants=others,
                details=details,
                staff=conn.identity.is_staff,
            )
        )
        for index, page in enumerate(older):
            conn.send(outbound.chat_page(page, more=index + 1 < len(older)))
        await self._bus.publish(topic, outbound.participant_joined(conn.participant()))
        logger.info(
            "%s %s joined room %s",
            conn.identity.role.value,
            conn.participant_id,
            room,
            extra={"case_id": room, "participant_id": conn.participant_id},
        )

    # -- in the room --------------------------------------------------------------------------

    async def chat(self, conn: Connection, message: ChatMessage) -> None:
        assert conn.identity is not None
        room = conn.room
        if room is None:
            raise SignalingError(SignalingErrorCode.NOT_IN_CALL, "join a call to chat", ref="chat")
        refusal = self._limits.refusal(conn.identity.subject, room, message.text)
        if refusal is not None:
            raise SignalingError(SignalingErrorCode.RATE_LIMITED, refusal, ref="chat")
        record, created = await self._bus.chat_append(
            room,
            f"{conn.identity.subject}:{message.client_id}",
            message.client_id,
            message.text,
            self._clock(),
            # The language the message is written in travels with its sender's details.
            {**conn.participant(), "lang": message.lang} if message.lang else conn.participant(),
            # Published by the bus with the seq it takes: the room sees seq order across nodes.
            publish_to=room_topic(room),
        )
        if not created:
            conn.send(outbound.chat(record))
            return
        if room.case_id is not None:  # a site room's chat has no case timeline to go to
            await self._cases.record_chat(room.case_id, outbound.chat(record))

    # -- leaving ------------------------------------------------------------------------------

    async def leave(self, conn: Connection) -> None:
        """Take ``conn`` out of its room (staff still connected go back to the lobby)."""
        room = conn.room
        if room is None or conn.identity is None:
            return
        conn.room = None
        await conn.unfollow(room_topic(room))
        await self._watching.unwatch_all(conn)
        await self._media.close_peer(conn.participant_id)
        await self._bus.presence_remove(room, conn.participant_id)
        await self._bus.publish(room_topic(room), outbound.participant_left(conn.participant()))
        if conn.identity.role is Role.CUSTOMER:
            if room.case_id is not None:
                self._queue.customer_gone(room.case_id)
        elif conn.identity.role is Role.CAMERA:
            camera_id = conn.identity.camera_id or ""
            self._watching.stop_publishing(camera_id, conn)
            if self._sites is not None:
                await self._sites.camera_disconnected(camera_id, conn.participant_id)
        elif not conn.closing and not conn.ws.closed:
            await self.enter_lobby(conn)

    # -- after the bus reconnected ------------------------------------------------------------

    async def resync(self, conn: Connection, topic: str) -> None:
        """What a socket may have missed while the bus reconnected: the lobby's queue, or its
        room's chat after the last message it has, participants who joined, and the case's
        (or site's) current state; a waiting customer is queued again (Redis may have lost
        the queue)."""
        logger.info("socket %s: resynchronising %s", conn.participant_id, topic)
        identity = conn.identity
        if identity is None:
            return
        room = conn.room
        if topic == LOBBY:
            if identity.can_take_calls and room is None:
                conn.send(await self._queue.message())
            return
        if room is None or topic != room_topic(room):
            return
        for record in await self._bus.chat_since(room, conn.chat_floor()):
            deliver(conn, topic, outbound.chat(record))
        for participant in await self._bus.presence_list(room):
            participant_id = str(participant.get("participant_id"))
            if participant_id != conn.participant_id and participant_id not in conn.known:
                deliver(conn, topic, outbound.participant_joined(participant))
        if room.site_id is not None:
            if self._sites is not None and identity.role is not Role.CAMERA:
                conn.send(outbound.site(await self._sites.site(room.site_id)))
            return
        if room.case_id is None:
            return
        summary = await self._cases.get(room.case_id)
        if summary is None:
            return
        conn.send(outbound.case(summary, staff=identity.is_staff))
        if identity.role is Role.CUSTOMER and summary.status is CaseStatus.WAITING:
            if await self._queue.enqueue(summary):
                await self._queue.publish()
