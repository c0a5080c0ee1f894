"""The ``/ws`` endpoint: authenticates sockets, runs the agent queue, rooms, chat and
negotiation with the server-side peers. See ``docs/protocol.md`` for the wire protocol.

``Hub`` is the front that ``server`` builds and calls; each concept behind it has its module:
the socket (``_connection``), who gets which event (``_audience``), ``join`` per role
(``_joins``), rooms, chat and resync (``_rooms``), the agent queue (``_queue``), site cameras
and their viewers (``_watching``), offers and candidates (``_negotiation``). Room ids are
``signaling.RoomId``; messages sent are built by ``signaling.outbound``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from aioutil import OwnedTasks

from . import outbound
from ._audience import deliver, for_staff, room_topic
from ._connection import Connection, Connections
from ._joins import Joins
from ._negotiation import Negotiation
from ._queue import AgentQueue
from ._rooms import Rooms
from ._watching import CameraWatching
from .bus import Bus
from .config import HubConfig
from .errors import CloseCode, SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import (
    AcceptMessage,
    CandidateMessage,
    ChatMessage,
    ClientMessage,
    JoinMessage,
    LeaveMessage,
    OfferMessage,
    PingMessage,
    UnwatchMessage,
    parse_client_message,
)
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseSummary,
    HubObserver,
    Identity,
    MediaGateway,
    SiteDirectory,
)

__all__ = ["Hub"]

logger = logging.getLogger(__name__)


class _NoObserver:
    def ws_message(self, direction: Literal["in", "out"], kind: str, /) -> None:
        return None

    def ws_connected(self, delta: int, /) -> None:
        return None


class Hub:
    """Owns every socket of this node; ``handle`` is the aiohttp handler for ``/ws``."""

    def __init__(
        self,
        *,
        bus: Bus,
        auth: Authenticator,
        cases: CaseDirectory,
        media: MediaGateway,
        ice_servers: Callable[[Identity], list[dict[str, Any]]] = lambda identity: [],
        config: HubConfig | None = None,
        observer: HubObserver | None = None,
        clock: Callable[[], float] = time.time,
        sites: SiteDirectory | None = None,
    ) -> None:
        self.bus = bus
        self.auth = auth
        self.cases = cases
        self.media = media
        self.sites = sites
        self.ice_servers = ice_servers
        self.config = config or HubConfig()
        self.observer: HubObserver = observer or _NoObserver()
        self.clock = clock
        #: Socket closes and departures of waiting customers: ended by :meth:`aclose`.
        self._tasks = OwnedTasks()
        self._connections = Connections()
        self._watching = CameraWatching(media)
        self._queue = AgentQueue(
            bus=bus,
            cases=cases,
            clock=clock,
            grace_s=self.config.waiting_grace_s,
            tasks=self._tasks,
        )
        self._rooms = Rooms(
            bus=bus,
            cases=cases,
            sites=sites,
            media=media,
            queue=self._queue,
            watching=self._watching,
            ice_servers=ice_servers,
            config=self.config,
            clock=clock,
        )
        self._joins = Joins(
            auth=auth,
            cases=cases,
            sites=sites,
            rooms=self._rooms,
            queue=self._queue,
            watching=self._watching,
            config=self.config,
        )
        self._negotiation = Negotiation(
            media=media, sites=sites, watching=self._watching, connections=self._connections
        )
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def live_calls(self) -> int:
        """Rooms on this node with both a customer and staff connected."""
        return self._connections.live_calls()

    async def aclose(self) -> None:
        """Close every socket with GOING_AWAY and free their peers, within the timeout."""
        if self._closing:
            return
        self._closing = True
        self._queue.close()
        closers = [
            conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            for conn in self._connections
        ]
        if closers:
            try:
                async with asyncio.timeout(self.config.shutdown_timeout_s):
                    await asyncio.gather(*closers, return_exceptions=True)
            except TimeoutError:
                logger.warning("%d sockets did not close in time", len(closers))
        await self._tasks.aclose(timeout_s=self.config.shutdown_timeout_s)

    # -- the handler --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat_s,
            # aiohttp closes above this; we answer ``too_large`` up to it without closing.
            max_msg_size=max(4 * self.config.max_message_bytes, 1024 * 1024),
        )
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        await ws.prepare(request)
        # A staff session made on another node is not in this node's cache yet.
        identity = self.auth.identify(request) or await self.auth.authenticate(request)
        conn = Connection(
            ws,
            identity,
            bus=self.bus,
            config=self.config,
            observer=self.observer,
            tasks=self._tasks,
            on_event=deliver,
            on_gap=self._rooms.resync,
        )
        self._connections.add(conn)
        self.observer.ws_connected(1)
        conn.start_writer()
        try:
            async for raw in ws:
                if raw.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_raw(conn, raw.data)
                elif raw.type == WSMsgType.ERROR:
                    logger.info("socket %s error: %s", conn.participant_id, ws.exception())
        finally:
            # The cleanup runs to its end even when the handler is cancelled (aiohttp cancels
            # it on a lost connection with ``handler_cancellation``): a socket half taken out
            # would stay in its room's presence and keep its customer's queue place for good.
            cleanup = asyncio.create_task(
                self._disconnect(conn), name=f"ws-disconnect-{conn.participant_id}"
            )
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup
                raise
        return ws

    async def _on_raw(self, conn: Connection, data: str | bytes) -> None:
        ref: str | None = None
        if not conn.bucket.take():
            self.observer.ws_message("in", "rate_limited")
            if conn.bucket.refused >= self.config.max_refused:
                logger.warning("socket %s: closed for flooding", conn.participant_id)
                conn.close_soon(CloseCode.POLICY_VIOLATION, "rate_limited")
                return
            conn.send(
                outbound.error(
                    SignalingErrorCode.RATE_LIMITED,
                    "too many messages: slow down "
                    f"(at most {self.config.message_rate:g} per second)",
                )
            )
            return
        try:
            message = parse_client_message(data, max_bytes=self.config.max_message_bytes)
            ref = message.type
            self.observer.ws_message("in", message.type)
            await self._dispatch(conn, message)
        except SignalingError as exc:
            self.observer.ws_message("in", "invalid")
            conn.send(outbound.error(exc.code, exc.message, exc.ref or ref))
            if conn.identity is None and exc.code in (
                SignalingErrorCode.UNAUTHORIZED,
                SignalingErrorCode.TOKEN_EXPIRED,
            ):
                conn.close_soon(CloseCode.UNAUTHORIZED, exc.code.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("socket %s: handling %s failed", conn.participant_id, ref)
            conn.send(outbound.error(SignalingErrorCode.INTERNAL, "internal error", ref))

    async def _dispatch(self, conn: Connection, message: ClientMessage) -> None:
        if isinstance(message, JoinMessage):
            await self._joins.join(conn, message)
            return
        if conn.identity is None:
            raise SignalingError(
                SignalingErrorCode.NOT_JOINED, "the first message must be 'join'", ref=message.type
            )
        match message:
            case PingMessage():
                conn.send(outbound.pong(message.nonce))
            case ChatMessage():
                await self._rooms.chat(conn, message)
            case OfferMessage():
                await self._negotiation.offer(conn, message)
            case CandidateMessage():
                await self._negotiation.candidate(conn, message)
            case AcceptMessage():
                if not conn.identity.can_take_calls:
                    raise SignalingError(
                        SignalingErrorCode.FORBIDDEN, "only agents take calls", ref="accept"
                    )
                summary = await self.accept_case(message.case_id, conn.identity)
                conn.send(outbound.accepted(summary))
                await self._rooms.enter_case(conn, summary, resume_from=0)
            case LeaveMessage():
                await self._rooms.leave(conn)
            case UnwatchMessage():
                await self._negotiation.unwatch(conn, message.camera_id)

    async def _disconnect(self, conn: Connection) -> None:
        conn.closing = True
        try:
            await self._rooms.leave(conn)
        except Exception:
            logger.exception("socket %s: leaving its room failed", conn.participant_id)
        await conn.unfollow_all()
        await self.media.close_peer(conn.participant_id)
        await conn.stop_writer()
        self._connections.discard(conn)
        self.observer.ws_connected(-1)

    # -- what the rest of the service tells the sockets -------------------------------------

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary:
        """Take a waiting case: exactly one of several racing agents wins; the others get
        ``already_accepted``. Used by the ``accept`` message and the REST route."""
        return await self._queue.accept(case_id, agent)

    async def case_changed(self, summary: CaseSummary) -> None:
        """Called by the case service after any change (REST decisions included)."""
        await self._queue.case_changed(summary)

    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        """The participant's peer has more remote tracks than receiving transceivers: its
        client is asked to offer again (``renegotiate``, with the camera for a viewer's
        per-camera peer)."""
        self._negotiation.renegotiation_needed(participant_id, tracks)

    def media_lost(self, participant_id: str, message: str) -> bool:
        """The node holding this participant's server-side peer stopped (multi-node): tell the
        client (``media_lost``) and close its socket (4012), so that it reconnects, resumes and
        offers again, and a live node takes the call. False if no such socket is here."""
        return self._negotiation.media_lost(participant_id, message)

    async def publish_to_site(self, site_id: str, event: Mapping[str, Any]) -> None:
        """Send ``event`` to everyone in a site's room (camera status, site changes)."""
        await self.bus.publish(room_topic(RoomId.site(site_id)), dict(event))

    async def publish_to_staff(self, case_id: str, event: Mapping[str, Any]) -> None:
        """Send ``event`` to the staff in a case's room (e.g. the model's live assessment,
        which the customer does not see)."""
        await self.bus.publish(room_topic(RoomId.parse(case_id)), for_staff(event))

    def disconnect_camera(
        self, camera_id: str, message: str, *, subject: str | None = None
    ) -> bool:
        """Close a camera page's socket (its token was revoked, the camera disabled or
        deleted): it is told why and does not reconnect. With ``subject``, only a page that
        joined as that identity (one token). False if no such page is connected here."""
        conn = self._watching.publisher(camera_id)
        if conn is None or conn.identity is None:
            return False
        if subject is not None and conn.identity.subject != subject:
            return False
        conn.send(outbound.error(SignalingErrorCode.UNAUTHORIZED, message))
        conn.close_soon(CloseCode.UNAUTHORIZED, "unauthorized")
        return True
