"""The ``/ws`` endpoint: authenticates sockets, runs the agent queue, rooms, chat and
negotiation with the server-side peers. See ``docs/protocol.md`` for the wire protocol.

``Hub`` is the front that ``server`` builds and calls; each concept behind it has its module:
the socket (``_connection``), who gets which event (``_audience``), ``join`` per role
(``_joins``), rooms, chat and resync (``_rooms``), the agent queue (``_queue``), site cameras
and their viewers (``_watching``), offers and candidates (``_negotiation``). Room ids are
``signaling.RoomId``; messages sent are built by ``signaling.outbound``.

Before a socket is accepted the Hub checks the page's ``Origin`` (``_origin``) and how many
sockets without a staff credential its address holds; a socket that does not ``join`` in time
is closed; an open staff socket's credential is checked again every ``recheck_s``, and every
socket of a revoked subject can be closed at once, on every node (``revoke_subject``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from aioutil import OwnedTasks, cancel_and_wait

from . import outbound
from ._audience import REVOKED, deliver, for_staff, for_staff_and_camera, room_topic
from ._connection import Connection, Connections
from ._inspection import Inspection
from ._joins import Joins
from ._negotiation import Negotiation
from ._origin import origin_allowed
from ._queue import AgentQueue
from ._rooms import Rooms
from ._watching import CameraWatching
from .bus import Bus, Lagged
from .config import HubConfig
from .errors import CloseCode, SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import (
    AcceptMessage,
    CameraControlMessage,
    CameraStateMessage,
    CandidateMessage,
    ChatMessage,
    ClientMessage,
    JoinMessage,
    LeaveMessage,
    MarkupMessage,
    OfferMessage,
    PhotoRequestMessage,
    PingMessage,
    PointMessage,
    UnwatchMessage,
    VideoModeMessage,
    parse_client_message,
)
from .outbound import ServerMessageType
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseStatus,
    CaseSummary,
    CredentialCheck,
    HubObserver,
    Identity,
    MediaGateway,
    SiteDirectory,
)

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

#: Longest close reason a WebSocket close frame carries (RFC 6455: 123 bytes).
_MAX_CLOSE_REASON = 123


def _remote_address(request: web.BaseRequest) -> str | None:
    return request.remote


def _close_reason(text: str) -> str:
    return text.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore")


def _refusal(status: int, code: SignalingErrorCode, message: str) -> web.Response:
    """An upgrade refused before it became a socket, in the REST edge's error shape."""
    return web.json_response({"error": {"code": code.value, "message": message}}, status=status)


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
        client_address: Callable[[web.BaseRequest], str | None] = _remote_address,
    ) -> None:
        """``client_address``: the address a request came from, as the socket cap per address
        counts it (the server passes one that reads a trusted proxy's forwarded address)."""
        self.bus = bus
        self.auth = auth
        self.cases = cases
        self.media = media
        self.sites = sites
        self.ice_servers = ice_servers
        self.config = config or HubConfig()
        self.observer: HubObserver = observer or _NoObserver()
        self.clock = clock
        self.client_address = client_address
        #: An authenticator that can also say whether an identity still holds (optional).
        self._credential_check = auth if isinstance(auth, CredentialCheck) else None
        #: Open sockets without a staff credential, per client address.
        self._per_address: dict[str, int] = {}
        #: The credential re-check and the revocation listener, started with the first socket.
        self._background: list[asyncio.Task[None]] = []
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
            bus=bus,
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
        self._inspection = Inspection(bus=bus, cases=cases, tasks=self._tasks)
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
        for task in self._background:
            await cancel_and_wait(task)
        self._background.clear()
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
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        if not origin_allowed(request, self.config.allowed_origins):
            logger.warning(
                "refused a socket from another origin",
                extra={"origin": request.headers.get("Origin", "")},
            )
            return _refusal(
                403,
                SignalingErrorCode.FORBIDDEN,
                "this page may not open the service's socket; use the service's own pages",
            )
        # A staff session made on another node is not in this node's cache yet.
        identity = self.auth.identify(request) or await self.auth.authenticate(request)
        address = self.client_address(request) if identity is None else None
        if address is not None:
            if self._per_address.get(address, 0) >= self.config.max_sockets_per_address:
                logger.warning("refused a socket: %s holds too many", address)
                return _refusal(
                    429,
                    SignalingErrorCode.RATE_LIMITED,
                    "too many open connections from this address",
                )
            self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            return await self._serve(request, identity)
        finally:
            if address is not None:
                left = self._per_address.get(address, 1) - 1
                if left > 0:
                    self._per_address[address] = left
                else:
                    self._per_address.pop(address, None)

    async def _serve(self, request: web.Request, identity: Identity | None) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat_s,
            # aiohttp closes above this; we answer ``too_large`` up to it without closing.
            max_msg_size=max(4 * self.config.max_message_bytes, 1024 * 1024),
        )
        await ws.prepare(request)
        self._start_background()
        conn = Connection(
            ws,
            identity,
            bus=self.bus,
            config=self.config,
            observer=self.observer,
            tasks=self._tasks,
            on_event=self._on_event,
            on_gap=self._rooms.resync,
            request=request,
        )
        self._connections.add(conn)
        self.observer.ws_connected(1)
        conn.start_writer()
        deadline = asyncio.get_running_loop().call_later(
            self.config.join_deadline_s, self._join_overdue, conn
        )
        try:
            async for raw in ws:
                if raw.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_raw(conn, raw.data)
                elif raw.type == WSMsgType.ERROR:
                    logger.info("socket %s error: %s", conn.participant_id, ws.exception())
        finally:
            deadline.cancel()
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

    def _join_overdue(self, conn: Connection) -> None:
        """An anonymous socket must not sit open without joining (it costs a slot and memory)."""
        if conn.identity is not None or conn.closing:
            return
        conn.send(
            outbound.error(
                SignalingErrorCode.NOT_JOINED,
                f"no join within {self.config.join_deadline_s:g} s: connect again and join",
            )
        )
        conn.close_soon(CloseCode.POLICY_VIOLATION, "join deadline")

    def _on_event(self, conn: Connection, topic: str, event: Mapping[str, Any]) -> None:
        if conn.room is not None and topic == room_topic(conn.room):
            self._inspection.observe(conn.room, event)
        deliver(conn, topic, event)
        # A closed case's room is finished, on whichever node the socket is: take it out.
        if event.get("type") == ServerMessageType.CASE and conn.room is not None:
            case = event.get("case")
            if (
                isinstance(case, Mapping)
                and case.get("state") == CaseStatus.CLOSED.value
                and case.get("case_id") == conn.room.case_id
            ):
                self._tasks.spawn(self._rooms.leave(conn), name=f"ws-leave-{conn.participant_id}")

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
            self._inspection.replay(conn)
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
                self._inspection.replay(conn)
            case LeaveMessage():
                await self._rooms.leave(conn)
            case UnwatchMessage():
                await self._negotiation.unwatch(conn, message.camera_id)
            case MarkupMessage():
                await self._inspection.markup(conn, message)
            case PointMessage():
                await self._inspection.point(conn, message)
            case PhotoRequestMessage():
                await self._inspection.photo_request(conn, message)
            case CameraControlMessage():
                await self._inspection.camera_control(conn, message)
            case CameraStateMessage():
                await self._inspection.camera_state(conn, message)
            case VideoModeMessage():
                await self._inspection.video_mode(conn, message)

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
        """Called by the case service after any change (REST decisions included). A closed
        case's room is finished: its sockets leave it (staff go back to the lobby, on every
        node as the ``case`` event reaches them) and its chat log is dropped from the bus."""
        await self._queue.case_changed(summary)
        if summary.status is CaseStatus.CLOSED:
            await self.close_room(summary.case_id)

    async def close_room(self, room_id: str) -> None:
        """The room is finished (its case closed, or a site deleted): this node's sockets in it
        leave it (staff go back to the lobby; customers and camera pages stay connected without
        a room), and the bus forgets its chat log and dedupe keys."""
        room = RoomId.parse(room_id)
        for conn in self._connections:
            if conn.room == room:
                try:
                    await self._rooms.leave(conn)
                except Exception:
                    logger.exception("socket %s: leaving room %s failed", conn.participant_id, room)
        self._inspection.forget(room)
        await self.bus.drop_room(room)

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
        """Send ``event`` to the staff in a site's room (camera status, site changes): the site
        and its cameras (their RTSP URLs, errors and station state) are for staff. A camera
        page gets only ``camera`` events about its own camera."""
        camera_id = event.get("camera_id")
        if event.get("type") == ServerMessageType.CAMERA and isinstance(camera_id, str):
            tagged = for_staff_and_camera(event, camera_id)
        else:
            tagged = for_staff(event)
        await self.bus.publish(room_topic(RoomId.site(site_id)), tagged)

    async def publish_to_room(self, case_id: str, event: Mapping[str, Any]) -> None:
        """Send ``event`` to everyone in a case's room, the customer included (a frozen frame,
        back to live video)."""
        await self.bus.publish(room_topic(RoomId.parse(case_id)), event)

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

    # -- credentials that stop holding -------------------------------------------------------

    def close_subject(self, subject: str, reason: str) -> int:
        """Close every socket of this node that is ``subject`` (joined as it, or upgraded with
        its staff credential): it is sent ``unauthorized`` with ``reason``, then closed with
        4401. How many sockets were closed."""
        closed = 0
        for conn in self._connections:
            identities = (conn.identity, conn.request_identity)
            if conn.closing or not any(i is not None and i.subject == subject for i in identities):
                continue
            conn.send(outbound.error(SignalingErrorCode.UNAUTHORIZED, reason))
            conn.close_soon(CloseCode.UNAUTHORIZED, _close_reason(reason))
            closed += 1
        if closed:
            logger.info("closed %d sockets of %s: %s", closed, subject, reason)
        return closed

    async def revoke_subject(self, subject: str, reason: str) -> None:
        """:meth:`close_subject` on every node sharing this bus (this one included)."""
        await self.bus.publish(REVOKED, {"subject": subject, "reason": reason})

    def _start_background(self) -> None:
        if self._background or self._closing:
            return
        self._background = [
            asyncio.create_task(self._recheck_loop(), name="ws-credential-recheck"),
            asyncio.create_task(self._follow_revocations(), name="ws-revocations"),
        ]

    async def _follow_revocations(self) -> None:
        while True:
            subscription = self.bus.subscribe(REVOKED)
            try:
                async for event in subscription:
                    subject, reason = event.get("subject"), event.get("reason")
                    if isinstance(subject, str) and subject:
                        self.close_subject(subject, str(reason or "access was revoked"))
                return
            except Lagged:
                # Revocations lost in a gap are still caught by the periodic re-check.
                logger.warning("revocations may have been missed; listening again")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("listening for revocations failed; listening again")
                await asyncio.sleep(1.0)
            finally:
                await subscription.aclose()

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.recheck_s)
            for conn in self._connections:
                identity = conn.identity
                if conn.closing or identity is None or not identity.is_staff:
                    continue
                try:
                    valid = await self._still_valid(conn, identity)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The accounts store not answering is no reason to end a call.
                    logger.exception("socket %s: credential check failed", conn.participant_id)
                    continue
                if not valid and not conn.closing:
                    logger.info(
                        "socket %s: the credential of %s no longer holds",
                        conn.participant_id,
                        identity.subject,
                    )
                    conn.send(
                        outbound.error(
                            SignalingErrorCode.UNAUTHORIZED,
                            "your session has ended or was revoked: sign in again",
                        )
                    )
                    conn.close_soon(CloseCode.UNAUTHORIZED, "unauthorized")

    async def _still_valid(self, conn: Connection, identity: Identity) -> bool:
        """Whether the upgrade's credential still names this staff identity (with the same
        role), and the authenticator, if it can, says the identity still holds."""
        if conn.request is None:
            return False
        current = await self.auth.authenticate(conn.request)
        if current is None or (current.subject, current.role) != (identity.subject, identity.role):
            return False
        if self._credential_check is not None:
            return await self._credential_check.still_valid(identity)
        return True
