"""The ``/ws`` endpoint: authenticates sockets, runs the agent queue, rooms, chat and
negotiation with the server-side peers. See ``docs/protocol.md`` for the wire protocol.

Two kinds of rooms: a case's room (the customer and the agent; its media room is the case id)
and a site's room (``site:<id>``: the site's camera pages and the staff watching them). In a site
room media is per camera: a camera page publishes into ``camera:<camera id>``, and a viewer has
one server-side peer per camera it watches (``<participant id>-<camera id>``, named by the
``camera_id`` of its offers), so every received track is known to be that camera's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from .bus import Bus, Lagged, QueueEntry, Reconnected, Subscription
from .errors import SignalingError, SignalingErrorCode
from .messages import (
    AcceptMessage,
    CandidateMessage,
    ChatMessage,
    ClientMessage,
    JoinMessage,
    LeaveMessage,
    OfferMessage,
    PingMessage,
    Role,
    UnwatchMessage,
    parse_client_message,
)
from .ports import (
    Authenticator,
    CaseDirectory,
    CaseSummary,
    Identity,
    MediaGateway,
    SiteDirectory,
    camera_room,
    site_room,
)
from .ratelimit import RateLimit, TokenBucket

__all__ = ["Hub", "HubConfig", "HubObserver"]

logger = logging.getLogger(__name__)

LOBBY = "lobby"
#: Close codes the pages understand: 4401 = not authorised (do not retry with the same token),
#: 4008 = fell behind (reconnect and resume), 4409 = a camera page opened again elsewhere (do
#: not reconnect: the newer page publishes now), 4012 = the node holding the call's media
#: stopped (reconnect, resume and offer again: another node takes the call), 1001 = server
#: going away.
CLOSE_UNAUTHORIZED = 4401
CLOSE_LAGGING = 4008
CLOSE_REPLACED = 4409
CLOSE_MEDIA_LOST = 4012
OUTBOX_LIMIT = 512
#: Bus events carrying this key go only to that audience; the key is not sent on.
_AUDIENCE = "_audience"
#: States in which a customer may still open the call.
OPEN_STATES = frozenset({"created", "waiting", "in_call"})


def _room_topic(case_id: str) -> str:
    return f"room:{case_id}"


class HubObserver(Protocol):
    """Metrics hooks (``server.metrics`` fits this)."""

    def ws_message(self, direction: Literal["in", "out"], kind: str, /) -> None: ...

    def ws_connected(self, delta: int, /) -> None: ...


class _NoObserver:
    def ws_message(self, direction: Literal["in", "out"], kind: str, /) -> None:
        return None

    def ws_connected(self, delta: int, /) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HubConfig:
    max_message_bytes: int = 64 * 1024
    heartbeat_s: float = 20.0
    #: A waiting customer whose socket drops keeps their queue place this long.
    waiting_grace_s: float = 15.0
    shutdown_timeout_s: float = 5.0
    #: Whether the server grades video live (staff consoles show it, or say it is off).
    grading: bool = False
    #: Seconds of pre-roll a capture reaches back (None: recording is off).
    preroll_s: float | None = None
    #: Messages one socket may send: per second, and in a burst (a browser's offer with its
    #: trickled candidates is a burst of ~20). Past it a message gets ``rate_limited``.
    message_rate: float = 30.0
    message_burst: float = 80.0
    #: A socket refused this many times in a row is closed (policy violation).
    max_refused: int = 200


class _Connection:
    """One WebSocket: its identity, its room, its outbound queue and subscriptions."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, request_identity: Identity | None):
        self.hub = hub
        self.ws = ws
        self.request_identity = request_identity
        self.identity: Identity | None = None
        self.participant_id = uuid.uuid4().hex[:16]
        self.bucket = TokenBucket(RateLimit(hub.config.message_rate, hub.config.message_burst))
        self.room: str | None = None
        #: The site whose room this socket is in (staff watching it, or a camera page).
        self.site_id: str | None = None
        #: Staff in a site room: camera id -> the server-side peer watching it.
        self.watching: dict[str, str] = {}
        #: Chat seqs this socket has been sent (history and live events can overlap).
        self.sent_seqs: set[int] = set()
        #: The ``resume_from`` it entered its room with, and the other participants it knows
        #: of: what a resync after a bus reconnect compares with.
        self.chat_base = 0
        self.known: set[str] = set()
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._subscriptions: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._writer: asyncio.Task[None] | None = None
        self.closing = False

    # -- outbound -------------------------------------------------------------------------

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(
            self._write_loop(), name=f"ws-writer-{self.participant_id}"
        )

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; a client too slow to drain its queue is told to resume instead."""
        if self.closing:
            return
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("socket %s lagging; closing it to resume", self.participant_id)
            self.close_soon(CLOSE_LAGGING, "lagging: reconnect and resume")

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        asyncio.create_task(
            self.ws.close(code=code, message=reason.encode()),
            name=f"ws-close-{self.participant_id}",
        )

    async def _write_loop(self) -> None:
        try:
            while True:
                message = await self._outbox.get()
                if message is None:
                    return
                if self.ws.closed:
                    return
                await self.ws.send_json(message)
                self.hub.observer.ws_message("out", str(message.get("type")))
        except (ConnectionResetError, RuntimeError) as exc:
            logger.debug("socket %s write ended: %s", self.participant_id, exc)

    async def stop_writer(self) -> None:
        if self._writer is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        try:
            async with asyncio.timeout(1.0):
                await self._writer
        except TimeoutError:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    # -- subscriptions ----------------------------------------------------------------------

    def follow(self, topic: str) -> None:
        if topic in self._subscriptions:
            return
        subscription = self.hub.bus.subscribe(topic)
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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def unfollow_all(self) -> None:
        for topic in list(self._subscriptions):
            await self.unfollow(topic)

    async def _pump(self, topic: str, subscription: Subscription) -> None:
        while True:
            try:
                async for event in subscription:
                    self.hub._deliver(self, topic, event)
                return
            except Reconnected:
                # The bus lost events while it reconnected, not because this socket was slow:
                # re-read what it follows and keep the socket (and the call's media) going.
                try:
                    await self.hub._resync(self, topic)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "socket %s: resync of %s failed (%s); closing it to resume",
                        self.participant_id,
                        topic,
                        exc,
                    )
                    self.close_soon(CLOSE_LAGGING, "lagging: reconnect and resume")
                    return
            except Lagged:
                self.close_soon(CLOSE_LAGGING, "lagging: reconnect and resume")
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

    def participant(self) -> dict[str, Any]:
        assert self.identity is not None
        participant = {
            "participant_id": self.participant_id,
            "role": self.identity.role.value,
            "name": self.identity.name,
        }
        if self.identity.camera_id is not None:
            participant["camera_id"] = self.identity.camera_id
        return participant


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
        self._connections: set[_Connection] = set()
        self._by_participant: dict[str, _Connection] = {}
        self._departures: dict[str, asyncio.TimerHandle] = {}
        #: Viewers' per-camera peers: media participant id -> (its socket, the camera).
        self._watchers: dict[str, tuple[_Connection, str]] = {}
        #: The socket publishing each camera (the newest page wins).
        self._cameras: dict[str, _Connection] = {}
        self._closing = False
        #: A queue broadcast is being sent / another change came while it was.
        self._queue_sending = False
        self._queue_dirty = False

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def live_calls(self) -> int:
        """Rooms on this node with both a customer and staff connected."""
        roles: dict[str, set[Role]] = {}
        for conn in self._connections:
            if conn.room is not None and conn.identity is not None:
                roles.setdefault(conn.room, set()).add(conn.identity.role)
        return sum(1 for found in roles.values() if Role.CUSTOMER in found and len(found) > 1)

    async def aclose(self) -> None:
        """Close every socket with GOING_AWAY and free their peers, within the timeout."""
        if self._closing:
            return
        self._closing = True
        for handle in self._departures.values():
            handle.cancel()
        self._departures.clear()
        closers = [
            conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            for conn in list(self._connections)
        ]
        if closers:
            try:
                async with asyncio.timeout(self.config.shutdown_timeout_s):
                    await asyncio.gather(*closers, return_exceptions=True)
            except TimeoutError:
                logger.warning("%d sockets did not close in time", len(closers))

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
        conn = _Connection(self, ws, identity)
        self._connections.add(conn)
        self._by_participant[conn.participant_id] = conn
        self.observer.ws_connected(1)
        conn.start_writer()
        try:
            async for raw in ws:
                if raw.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_raw(conn, raw.data)
                elif raw.type == WSMsgType.ERROR:
                    logger.info("socket %s error: %s", conn.participant_id, ws.exception())
        finally:
            await self._disconnect(conn)
        return ws

    async def _on_raw(self, conn: _Connection, data: str | bytes) -> None:
        ref: str | None = None
        if not conn.bucket.take():
            self.observer.ws_message("in", "rate_limited")
            if conn.bucket.refused >= self.config.max_refused:
                logger.warning("socket %s: closed for flooding", conn.participant_id)
                conn.close_soon(WSCloseCode.POLICY_VIOLATION, "rate_limited")
                return
            conn.send(
                {
                    "type": "error",
                    "code": SignalingErrorCode.RATE_LIMITED.value,
                    "message": "too many messages: slow down "
                    f"(at most {self.config.message_rate:g} per second)",
                    "ref": None,
                }
            )
            return
        try:
            message = parse_client_message(data, max_bytes=self.config.max_message_bytes)
            ref = message.type
            self.observer.ws_message("in", message.type)
            await self._dispatch(conn, message)
        except SignalingError as exc:
            self.observer.ws_message("in", "invalid")
            conn.send(
                {
                    "type": "error",
                    "code": exc.code.value,
                    "message": exc.message,
                    "ref": exc.ref or ref,
                }
            )
            if conn.identity is None and exc.code in (
                SignalingErrorCode.UNAUTHORIZED,
                SignalingErrorCode.TOKEN_EXPIRED,
            ):
                conn.close_soon(CLOSE_UNAUTHORIZED, exc.code.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("socket %s: handling %s failed", conn.participant_id, ref)
            conn.send(
                {"type": "error", "code": "internal", "message": "internal error", "ref": ref}
            )

    async def _dispatch(self, conn: _Connection, message: ClientMessage) -> None:
        if isinstance(message, JoinMessage):
            await self._join(conn, message)
            return
        if conn.identity is None:
            raise SignalingError(
                SignalingErrorCode.NOT_JOINED, "the first message must be 'join'", ref=message.type
            )
        match message:
            case PingMessage():
                conn.send({"type": "pong", "nonce": message.nonce})
            case ChatMessage():
                await self._chat(conn, message)
            case OfferMessage():
                await self._offer(conn, message)
            case CandidateMessage():
                await self._candidate(conn, message)
            case AcceptMessage():
                if not conn.identity.can_take_calls:
                    raise SignalingError(
                        SignalingErrorCode.FORBIDDEN, "only agents take calls", ref="accept"
                    )
                summary = await self.accept_case(message.case_id, conn.identity)
                conn.send({"type": "accepted", "case": summary.to_json()})
                await self._enter_room(conn, summary, resume_from=0)
            case LeaveMessage():
                await self._leave_room(conn)
            case UnwatchMessage():
                await self._unwatch(conn, message.camera_id)

    # -- join -------------------------------------------------------------------------------

    async def _join(self, conn: _Connection, message: JoinMessage) -> None:
        if message.case_id and message.site_id:
            raise SignalingError(
                SignalingErrorCode.INVALID, "join a case or a site, not both", ref="join"
            )
        if conn.identity is not None:
            wants_room = message.case_id or message.site_id
            if conn.identity.is_staff and wants_room and conn.room is None:
                await self._staff_enter(conn, conn.identity, message)
                return
            raise SignalingError(SignalingErrorCode.ALREADY_JOINED, "already joined", ref="join")
        if message.camera_token:
            if message.token or message.case_id or message.site_id:
                raise SignalingError(
                    SignalingErrorCode.INVALID,
                    "a camera joins with camera_token alone (its token names its site)",
                    ref="join",
                )
            if self.sites is None:
                raise SignalingError(
                    SignalingErrorCode.UNAUTHORIZED, "this server has no cameras", ref="join"
                )
            camera = await self.sites.verify_camera_token(message.camera_token)
            await self._camera_join(conn, camera, message)
            return
        if message.token:
            identity = self.auth.verify_join_token(message.token)
        elif conn.request_identity is not None:
            identity = conn.request_identity
        else:
            raise SignalingError(
                SignalingErrorCode.UNAUTHORIZED,
                "join needs a customer token or a staff session",
                ref="join",
            )
        if identity.role is Role.CUSTOMER:
            await self._customer_join(conn, identity, message)
        else:
            await self._staff_enter(conn, identity, message)

    async def _customer_join(
        self, conn: _Connection, identity: Identity, message: JoinMessage
    ) -> None:
        case_id = identity.case_id
        if message.site_id:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "a customer link cannot open a site", ref="join"
            )
        if case_id is None or (message.case_id and message.case_id != case_id):
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "this link is for another case", ref="join"
            )
        summary = await self.cases.get(case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="join")
        if summary.state not in OPEN_STATES:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "the call for this case has ended", ref="join"
            )
        # The customer is shown by the name the merchant gave the case unless they give one.
        name = message.name or summary.customer_name or identity.name
        identity = Identity(identity.subject, name, identity.role, identity.case_id)
        conn.identity = identity
        pending = self._departures.pop(case_id, None)
        if pending is not None:
            pending.cancel()
        summary = await self.cases.customer_arrived(case_id)
        await self._enter_room(conn, summary, resume_from=message.resume_from)
        if summary.state == "waiting":
            entries = {entry.case_id for entry in await self.bus.queue_entries()}
            if case_id not in entries:
                await self.bus.queue_put(
                    QueueEntry(case_id, summary.waiting_since or self.clock(), summary.to_json())
                )
            await self._publish_queue()

    async def _staff_enter(
        self, conn: _Connection, identity: Identity, message: JoinMessage
    ) -> None:
        conn.identity = identity
        if message.site_id is not None:
            await self._enter_site(conn, message.site_id, message.resume_from)
            return
        if message.case_id is None:
            await self._enter_lobby(conn)
            return
        summary = await self.cases.get(message.case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="join")
        if summary.state != "in_call":
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "this case has no call in progress", ref="join"
            )
        if summary.agent_id != identity.subject and identity.role is not Role.ADMIN:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "another agent holds this call", ref="join"
            )
        await conn.unfollow(LOBBY)
        await self._enter_room(conn, summary, resume_from=message.resume_from)

    async def _enter_lobby(self, conn: _Connection) -> None:
        assert conn.identity is not None
        if conn.identity.can_take_calls:
            conn.follow(LOBBY)
        conn.send(
            {
                "type": "joined",
                **conn.participant(),
                "case": None,
                "ice_servers": self.ice_servers(conn.identity),
                "chat": [],
                "last_seq": 0,
                "participants": [],
            }
        )
        if conn.identity.can_take_calls:
            conn.send(await self._queue_message())

    async def _enter_site(self, conn: _Connection, site_id: str, resume_from: int) -> None:
        """Staff watch a site: its room carries the camera status and the cameras' presence."""
        summary = await self.sites.site(site_id) if self.sites is not None else None
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such site", ref="join")
        await conn.unfollow(LOBBY)
        conn.site_id = site_id
        extra = {"site": summary.to_json(), "preroll_s": self.config.preroll_s}
        await self._enter(conn, site_room(site_id), None, extra, resume_from)

    async def _camera_join(
        self, conn: _Connection, identity: Identity, message: JoinMessage
    ) -> None:
        assert self.sites is not None
        camera_id, site_id = identity.camera_id, identity.site_id
        summary = await self.sites.site(site_id) if site_id is not None else None
        if camera_id is None or summary is None or not summary.has_camera(camera_id):
            raise SignalingError(SignalingErrorCode.UNAUTHORIZED, "unknown camera", ref="join")
        conn.identity = identity
        previous = self._cameras.get(camera_id)
        if previous is not None and previous is not conn:
            # A phone that changed network may leave a half-open socket behind: the newest page
            # publishes, the older one is told why and does not reconnect.
            previous.send(
                {
                    "type": "error",
                    "code": SignalingErrorCode.REPLACED.value,
                    "message": "this camera was opened on another device or tab",
                    "ref": None,
                }
            )
            previous.close_soon(CLOSE_REPLACED, "replaced")
        self._cameras[camera_id] = conn
        conn.site_id = site_id
        camera = next((dict(c) for c in summary.cameras if c.get("id") == camera_id), {})
        site = {"site_id": summary.site_id, "name": summary.name}
        extra = {"site": site, "camera": camera}
        await self._enter(conn, site_room(summary.site_id), None, extra, message.resume_from)
        await self.sites.camera_connected(camera_id, conn.participant_id)

    async def _enter_room(self, conn: _Connection, summary: CaseSummary, resume_from: int) -> None:
        assert conn.identity is not None
        extra: dict[str, Any] = {}
        if conn.identity.is_staff:
            extra = {"grading": self.config.grading, "preroll_s": self.config.preroll_s}
        await self._enter(conn, summary.case_id, summary, extra, resume_from)

    async def _enter(
        self,
        conn: _Connection,
        room: str,
        summary: CaseSummary | None,
        extra: Mapping[str, Any],
        resume_from: int,
    ) -> None:
        assert conn.identity is not None
        await conn.unfollow(LOBBY)
        # Follow first, then read the log: nothing published in between is missed, and
        # ``sent_seqs`` filters what both paths deliver.
        conn.follow(_room_topic(room))
        conn.room = room
        history = await self.bus.chat_since(room, resume_from)
        others = [
            p
            for p in await self.bus.presence_list(room)
            if p["participant_id"] != conn.participant_id
        ]
        await self.bus.presence_add(room, conn.participant())
        conn.chat_base = resume_from
        conn.known = {str(p["participant_id"]) for p in others}
        conn.sent_seqs.update(record.seq for record in history)
        last_seq = max([resume_from, *conn.sent_seqs])
        conn.send(
            {
                "type": "joined",
                **conn.participant(),
                "case": summary.to_json() if summary is not None else None,
                "ice_servers": self.ice_servers(conn.identity),
                "chat": [record.to_json() for record in history],
                "last_seq": last_seq,
                "participants": others,
                **extra,
            }
        )
        await self.bus.publish(
            _room_topic(room),
            {"type": "participant", "event": "joined", "participant": conn.participant()},
        )
        logger.info(
            "%s %s joined room %s",
            conn.identity.role.value,
            conn.participant_id,
            room,
            extra={"case_id": room, "participant_id": conn.participant_id},
        )

    async def _leave_room(self, conn: _Connection) -> None:
        room = conn.room
        if room is None or conn.identity is None:
            return
        conn.room = None
        conn.site_id = None
        await conn.unfollow(_room_topic(room))
        for camera_id in list(conn.watching):
            await self._unwatch(conn, camera_id)
        await self.media.close_peer(conn.participant_id)
        await self.bus.presence_remove(room, conn.participant_id)
        await self.bus.publish(
            _room_topic(room),
            {"type": "participant", "event": "left", "participant": conn.participant()},
        )
        if conn.identity.role is Role.CUSTOMER:
            self._customer_gone(room)
        elif conn.identity.role is Role.CAMERA:
            camera_id = conn.identity.camera_id or ""
            if self._cameras.get(camera_id) is conn:
                del self._cameras[camera_id]
            if self.sites is not None:
                await self.sites.camera_disconnected(camera_id, conn.participant_id)
        elif not conn.closing and not conn.ws.closed:
            await self._enter_lobby(conn)

    def _customer_gone(self, case_id: str) -> None:
        """A waiting customer keeps their place for a grace period (a phone changing network)."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._departures.pop(case_id, None)
            asyncio.create_task(self._customer_departed(case_id), name=f"depart-{case_id}")

        previous = self._departures.pop(case_id, None)
        if previous is not None:
            previous.cancel()
        self._departures[case_id] = loop.call_later(self.config.waiting_grace_s, expire)

    async def _customer_departed(self, case_id: str) -> None:
        try:
            present = [
                p for p in await self.bus.presence_list(case_id) if p.get("role") == "customer"
            ]
            if present:
                return
            if await self.bus.queue_remove(case_id):
                summary = await self.cases.customer_left(case_id)
                await self._publish_case(summary)
                await self._publish_queue()
        except Exception:
            logger.exception("case %s: departure handling failed", case_id)

    async def _disconnect(self, conn: _Connection) -> None:
        conn.closing = True
        try:
            await self._leave_room(conn)
        except Exception:
            logger.exception("socket %s: leaving its room failed", conn.participant_id)
        await conn.unfollow_all()
        await self.media.close_peer(conn.participant_id)
        await conn.stop_writer()
        self._connections.discard(conn)
        self._by_participant.pop(conn.participant_id, None)
        self.observer.ws_connected(-1)

    # -- queue and accept -----------------------------------------------------------------

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary:
        """Take a waiting case: exactly one of several racing agents wins; the others get
        ``already_accepted``. Used by the ``accept`` message and the REST route."""
        summary = await self.cases.get(case_id)
        if summary is None:
            raise SignalingError(SignalingErrorCode.NOT_FOUND, "no such case", ref="accept")
        if not await self.bus.queue_claim(case_id, agent.subject):
            fresh = await self.cases.get(case_id)
            if fresh is not None and fresh.state == "in_call":
                raise SignalingError(
                    SignalingErrorCode.ALREADY_ACCEPTED,
                    "another agent already accepted this case",
                    ref="accept",
                )
            raise SignalingError(
                SignalingErrorCode.NOT_WAITING, "the customer is not waiting", ref="accept"
            )
        summary = await self.cases.call_started(case_id, agent)
        await self._publish_case(summary)
        await self._publish_queue()
        return summary

    async def _queue_message(self) -> dict[str, Any]:
        entries = await self.bus.queue_entries()
        return {
            "type": "queue",
            "cases": [
                {**entry.summary, "case_id": entry.case_id, "waiting_since": entry.waiting_since}
                for entry in entries
            ],
        }

    async def _publish_queue(self) -> None:
        """Send the lobby the queue as it is now. Changes that come while a broadcast is on its
        way are sent together once it is done (the newest queue, not one message per change):
        a burst of arrivals costs a few broadcasts, not one per customer for every agent."""
        if self._queue_sending:
            self._queue_dirty = True
            return
        self._queue_sending = True
        try:
            while True:
                self._queue_dirty = False
                await self.bus.publish(LOBBY, await self._queue_message())
                if not self._queue_dirty:
                    return
        finally:
            self._queue_sending = False

    async def _publish_case(self, summary: CaseSummary) -> None:
        event = {"type": "case", "case": summary.to_json()}
        await self.bus.publish(_room_topic(summary.case_id), event)

    async def case_changed(self, summary: CaseSummary) -> None:
        """Called by the case service after any change (REST decisions included)."""
        await self._publish_case(summary)
        if summary.state != "waiting" and await self.bus.queue_remove(summary.case_id):
            await self._publish_queue()

    # -- chat -----------------------------------------------------------------------------

    async def _chat(self, conn: _Connection, message: ChatMessage) -> None:
        assert conn.identity is not None
        if conn.room is None:
            raise SignalingError(SignalingErrorCode.NOT_IN_CALL, "join a call to chat", ref="chat")
        record, created = await self.bus.chat_append(
            conn.room,
            f"{conn.identity.subject}:{message.client_id}",
            message.client_id,
            message.text,
            self.clock(),
            conn.participant(),
            # Published by the bus with the seq it takes: the room sees seq order across nodes.
            publish_to=_room_topic(conn.room),
        )
        if not created:
            conn.send(record.to_json())
            return
        await self.cases.record_chat(conn.room, record.to_json())

    # -- media ----------------------------------------------------------------------------

    async def _media_target(
        self, conn: _Connection, camera_id: str | None, ref: str
    ) -> tuple[str, str]:
        """The media room and the server-side peer an offer or candidate is for."""
        identity = conn.identity
        assert identity is not None and conn.room is not None
        if identity.role is Role.CAMERA and identity.camera_id is not None:
            if camera_id is not None and camera_id != identity.camera_id:
                raise SignalingError(
                    SignalingErrorCode.FORBIDDEN, "a camera publishes only as itself", ref=ref
                )
            return camera_room(identity.camera_id), conn.participant_id
        if conn.site_id is None:
            if camera_id is not None:
                raise SignalingError(
                    SignalingErrorCode.INVALID, "camera_id is only for a site's room", ref=ref
                )
            return conn.room, conn.participant_id
        if camera_id is None:
            raise SignalingError(
                SignalingErrorCode.INVALID,
                "in a site's room, name the camera_id this peer watches",
                ref=ref,
            )
        peer_id = conn.watching.get(camera_id)
        if peer_id is None:
            if ref != "offer":
                raise SignalingError(
                    SignalingErrorCode.NOT_IN_CALL, f"send an offer for {camera_id} first", ref=ref
                )
            summary = await self.sites.site(conn.site_id) if self.sites is not None else None
            if summary is None or not summary.has_camera(camera_id):
                raise SignalingError(
                    SignalingErrorCode.NOT_FOUND, f"no camera {camera_id!r} at this site", ref=ref
                )
            peer_id = f"{conn.participant_id}-{camera_id}"
            conn.watching[camera_id] = peer_id
            self._watchers[peer_id] = (conn, camera_id)
        return camera_room(camera_id), peer_id

    async def _unwatch(self, conn: _Connection, camera_id: str) -> None:
        if conn.identity is None or not conn.identity.is_staff:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "only staff watch cameras", ref="unwatch"
            )
        peer_id = conn.watching.pop(camera_id, None)
        if peer_id is not None:
            self._watchers.pop(peer_id, None)
            await self.media.close_peer(peer_id)

    async def _offer(self, conn: _Connection, message: OfferMessage) -> None:
        if conn.room is None:
            raise SignalingError(SignalingErrorCode.NOT_IN_CALL, "join a call first", ref="offer")
        room, peer_id = await self._media_target(conn, message.camera_id, "offer")
        try:
            sdp = await self.media.answer(room, peer_id, message.sdp)
        except ValueError as exc:
            raise SignalingError(SignalingErrorCode.BAD_SDP, str(exc), ref="offer") from exc
        answer = {"type": "answer", "sdp": sdp}
        if message.camera_id is not None:
            answer["camera_id"] = message.camera_id
        conn.send(answer)

    async def _candidate(self, conn: _Connection, message: CandidateMessage) -> None:
        if conn.room is None:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "join a call first", ref="candidate"
            )
        _, peer_id = await self._media_target(conn, message.camera_id, "candidate")
        try:
            await self.media.add_candidate(
                peer_id, message.candidate, message.sdpMid, message.sdpMLineIndex
            )
        except (ValueError, LookupError) as exc:
            raise SignalingError(
                SignalingErrorCode.BAD_CANDIDATE, str(exc), ref="candidate"
            ) from exc

    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        watcher = self._watchers.get(participant_id)
        if watcher is not None:
            conn, camera_id = watcher
            conn.send({"type": "renegotiate", "tracks": dict(tracks or {}), "camera_id": camera_id})
            return
        found = self._by_participant.get(participant_id)
        if found is not None:
            found.send({"type": "renegotiate", "tracks": dict(tracks or {})})

    def media_lost(self, participant_id: str, message: str) -> bool:
        """The node holding this participant's server-side peer stopped (multi-node): tell the
        client (``media_lost``) and close its socket (4012), so that it reconnects, resumes and
        offers again, and a live node takes the call. False if no such socket is here."""
        watcher = self._watchers.get(participant_id)
        conn = watcher[0] if watcher is not None else self._by_participant.get(participant_id)
        if conn is None or conn.closing:
            return False
        conn.send(
            {
                "type": "error",
                "code": SignalingErrorCode.MEDIA_LOST.value,
                "message": message,
                "ref": None,
            }
        )
        conn.close_soon(CLOSE_MEDIA_LOST, "media_lost: reconnect and offer again")
        return True

    # -- resync after a bus reconnect -------------------------------------------------------

    async def _resync(self, conn: _Connection, topic: str) -> None:
        """What a socket may have missed while the bus reconnected: the lobby's queue, or its
        room's chat after the last message it has, participants who joined, and the case's
        (or site's) current state; a waiting customer is queued again (Redis may have lost
        the queue)."""
        logger.info("socket %s: resynchronising %s", conn.participant_id, topic)
        identity = conn.identity
        if identity is None:
            return
        if topic == LOBBY:
            if identity.can_take_calls and conn.room is None:
                conn.send(await self._queue_message())
            return
        room = topic.removeprefix("room:")
        if conn.room != room:
            return
        for record in await self.bus.chat_since(room, conn.chat_floor()):
            self._deliver(conn, topic, record.to_json())
        for participant in await self.bus.presence_list(room):
            participant_id = str(participant.get("participant_id"))
            if participant_id != conn.participant_id and participant_id not in conn.known:
                event = {"type": "participant", "event": "joined", "participant": participant}
                self._deliver(conn, topic, event)
        if conn.site_id is not None:
            if self.sites is not None and identity.role is not Role.CAMERA:
                site = await self.sites.site(conn.site_id)
                conn.send({"type": "site", "site": site.to_json() if site is not None else None})
            return
        summary = await self.cases.get(room)
        if summary is None:
            return
        conn.send({"type": "case", "case": summary.to_json()})
        if identity.role is Role.CUSTOMER and summary.state == "waiting":
            entries = {entry.case_id for entry in await self.bus.queue_entries()}
            if room not in entries:
                await self.bus.queue_put(
                    QueueEntry(room, summary.waiting_since or self.clock(), summary.to_json())
                )
                await self._publish_queue()

    # -- sites ----------------------------------------------------------------------------

    async def publish_to_site(self, site_id: str, event: Mapping[str, Any]) -> None:
        """Send ``event`` to everyone in a site's room (camera status, site changes)."""
        await self.bus.publish(_room_topic(site_room(site_id)), dict(event))

    def disconnect_camera(
        self, camera_id: str, message: str, *, subject: str | None = None
    ) -> bool:
        """Close a camera page's socket (its token was revoked, the camera disabled or
        deleted): it is told why and does not reconnect. With ``subject``, only a page that
        joined as that identity (one token). False if no such page is connected here."""
        conn = self._cameras.get(camera_id)
        if conn is None or conn.identity is None:
            return False
        if subject is not None and conn.identity.subject != subject:
            return False
        conn.send(
            {
                "type": "error",
                "code": SignalingErrorCode.UNAUTHORIZED.value,
                "message": message,
                "ref": None,
            }
        )
        conn.close_soon(CLOSE_UNAUTHORIZED, "unauthorized")
        return True

    # -- fan-out --------------------------------------------------------------------------

    async def publish_to_staff(self, case_id: str, event: Mapping[str, Any]) -> None:
        """Send ``event`` to the staff in a case's room (e.g. the model's live assessment,
        which the customer does not see)."""
        await self.bus.publish(_room_topic(case_id), {**event, _AUDIENCE: "staff"})

    def _deliver(self, conn: _Connection, topic: str, event: Mapping[str, Any]) -> None:
        if _AUDIENCE in event:
            if event[_AUDIENCE] == "staff" and (
                conn.identity is None or not conn.identity.is_staff
            ):
                return
            event = {key: value for key, value in event.items() if key != _AUDIENCE}
        kind = event.get("type")
        if kind == "chat":
            seq = int(event["seq"])
            if seq in conn.sent_seqs:
                return
            conn.sent_seqs.add(seq)
        elif kind == "participant":
            participant = event.get("participant", {})
            participant_id = participant.get("participant_id")
            if participant_id == conn.participant_id:
                return
            if event.get("event") == "left":
                conn.known.discard(str(participant_id))
            else:
                conn.known.add(str(participant_id))
        elif kind == "queue" and topic != LOBBY:
            return
        conn.send(dict(event))
