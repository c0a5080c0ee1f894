"""Multi-node media routing: a room's media lives on one node, its home; sockets anywhere.

:class:`RoomRouter` is the ``signaling.MediaGateway`` the hub uses when the nodes share Redis
(the LiveKit routing model). The first offer for a media room makes the least loaded live node
(fewest peers; each node heartbeats its load with its registration) the room's home through
``claim_room_home``; every later offer, candidate and close for a peer of that room runs on the
home: here when this node is the home, else as a request to it (:mod:`.node_rpc`). The answer
is the home's, so its ICE candidates carry the home's addresses. When the home's engine needs a
participant to offer again (``renegotiate``), the notice goes back to the node holding that
participant's socket. A room's home is released when its last peer there closes.

Publishers that do not offer through the hub (a WHIP encoder, whose request may reach any
node, and an RTSP pull) publish into the engine of the node they reach; that node then takes
their camera room's home (within a heartbeat), and peers of the room elsewhere are handed over.

Failures. A home that stops answering (its process died: Redis counts nobody following its
requests) is replaced once its registration has expired: the next offer for the room claims a
live node. Each node watches the nodes it depends on; when one is gone for good, sockets here
whose media it held are told ``media_lost`` and closed (the page reconnects, resumes and offers
again, landing on a live home), and peers here whose sockets it held are closed. A node that
finds it no longer holds a room it hosts (Redis lost its data and another node took the room
meanwhile) hands the room over the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from media import MediaEngine
from server.cluster.rpc import NodeRpc, NodeUnreachable, RoomMoved
from signaling import RedisBus, SignalingError

__all__ = ["HubSide", "RoomRouter"]

logger = logging.getLogger(__name__)

#: Seconds a remote answer, candidate, capture request... may take (aiortc gathers candidates,
#: a STUN server may be slow).
RPC_TIMEOUT_S = 10.0
#: Seconds a remote close may take before the peer is left to its home's own clean-up.
CLOSE_TIMEOUT_S = 2.0


class HubSide(Protocol):
    """What the router tells the sockets of this node (``signaling.Hub`` fits this)."""

    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None: ...

    def media_lost(self, participant_id: str, message: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Hosted:
    """A peer this node holds for a socket on ``origin``."""

    room: str
    origin: str


class _EngineListener:
    """The engine's ``renegotiation_needed`` goes to the node holding the participant."""

    def __init__(self, router: RoomRouter) -> None:
        self._router = router

    async def renegotiation_needed(self, participant_id: str) -> None:
        await self._router._renegotiate(participant_id)


class RoomRouter:
    """``signaling.MediaGateway`` across nodes. ``start()`` after the bus started; ``aclose()``
    before it closes."""

    def __init__(
        self,
        engine: MediaEngine,
        bus: RedisBus,
        *,
        heartbeat_s: float,
        rpc_timeout_s: float = RPC_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.node_id = bus.node_id
        self.rpc = NodeRpc(bus, timeout_s=rpc_timeout_s)
        self.heartbeat_s = heartbeat_s
        #: A node's registration lives this long without renewal (3 heartbeats).
        self.node_ttl_s = 3 * heartbeat_s
        self._hub: HubSide | None = None
        #: Peers held by other nodes for sockets of this node: peer -> (room, home).
        self._remote: dict[str, tuple[str, str]] = {}
        #: Peers this node holds (for sockets here or elsewhere).
        self._hosted: dict[str, _Hosted] = {}
        #: Nodes that recently did not take a request: not picked for new rooms until then.
        self._suspects: dict[str, float] = {}
        #: Nodes found gone (unregistered, not listening), since when.
        self._missing: dict[str, float] = {}
        self._load: dict[str, Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        engine.set_listener(_EngineListener(self))
        for method, handler in (
            ("answer", self._serve_answer),
            ("candidate", self._serve_candidate),
            ("close_peer", self._serve_close),
            ("remote_tracks", self._serve_tracks),
            ("renegotiate", self._serve_renegotiate),
            ("media_lost", self._serve_media_lost),
        ):
            self.rpc.handle(method, handler)

    def attach(self, hub: HubSide) -> None:
        self._hub = hub

    def set_listener(self, listener: Any) -> None:
        """Part of ``MediaGateway``; the router reports to the hub given to :meth:`attach`."""

    @property
    def hosted_peers(self) -> int:
        return len(self._hosted)

    @property
    def remote_peers(self) -> int:
        return len(self._remote)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.rpc.start()
        await self._publish_load(force=True)
        self._watcher = asyncio.create_task(self._watch(), name=f"room-router-{self.node_id}")

    async def aclose(self) -> None:
        """Tell the nodes whose sockets use peers here that their media is going away, then
        stop serving requests. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for peer, hosted in list(self._hosted.items()):
            if hosted.origin != self.node_id:
                try:
                    await self._lost(
                        peer, hosted.origin, "the server holding this call's media is restarting"
                    )
                except SignalingError as exc:
                    logger.info("could not tell %s that peer %s goes: %s", hosted.origin, peer, exc)
        await self.rpc.aclose()

    # -- MediaGateway -------------------------------------------------------------------------

    async def answer(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Answer on the room's home (claiming one by load on the room's first offer). A home
        that does not take the request is retried until its registration expires and a live
        node takes the room over, within the RPC timeout plus two registration lifetimes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.rpc.timeout_s + 2 * self.node_ttl_s
        while True:
            home = await self._home_of(room_id)
            await self._leave_other_home(participant_id, room_id, home)
            try:
                if home == self.node_id:
                    return await self._answer_here(room_id, participant_id, offer_sdp, home)
                remaining = max(0.1, deadline - loop.time())
                sdp = await self.rpc.call(
                    home,
                    "answer",
                    {"room": room_id, "peer": participant_id, "sdp": offer_sdp},
                    timeout_s=min(self.rpc.timeout_s, remaining),
                )
            except RoomMoved:
                if loop.time() >= deadline:
                    raise NodeUnreachable(home, "the room kept moving", listening=True) from None
                continue
            except NodeUnreachable as exc:
                self._suspects[home] = loop.time() + self.node_ttl_s
                if loop.time() >= deadline:
                    raise
                logger.info("room %s: home %s did not answer (%s); retrying", room_id, home, exc)
                await asyncio.sleep(min(self.heartbeat_s / 2, max(0.0, deadline - loop.time())))
                continue
            self._remote[participant_id] = (room_id, home)
            return str(sdp)

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        remote = self._remote.get(participant_id)
        if remote is None:
            await self.engine.add_candidate(participant_id, candidate, sdp_mid, sdp_mline_index)
            return
        args = {"peer": participant_id, "candidate": candidate, "mid": sdp_mid}
        await self.rpc.call(remote[1], "candidate", {**args, "index": sdp_mline_index})

    async def close_peer(self, participant_id: str) -> None:
        """Close the participant's peer wherever it is. Idempotent; a home that is gone is
        left to clean up after itself (its peers died with it)."""
        remote = self._remote.pop(participant_id, None)
        if remote is None:
            await self._close_here(participant_id)
            return
        try:
            await self.rpc.call(
                remote[1], "close_peer", {"peer": participant_id}, timeout_s=CLOSE_TIMEOUT_S
            )
        except SignalingError as exc:
            logger.info("peer %s: close on %s failed: %s", participant_id, remote[1], exc)

    async def remote_tracks(self, participant_id: str) -> dict[str, int]:
        remote = self._remote.get(participant_id)
        if remote is None:
            return self.engine.remote_tracks(participant_id)
        tracks = await self.rpc.call(remote[1], "remote_tracks", {"peer": participant_id})
        return {str(kind): int(count) for kind, count in dict(tracks).items()}

    # -- homes --------------------------------------------------------------------------------

    async def home_of(self, room_id: str) -> str | None:
        """The room's home if it has a live one (for captures: no claim)."""
        home = await self.bus.room_home(room_id)
        if home is None or home == self.node_id:
            return home
        return home if home in await self.bus.live_nodes() else None

    async def _home_of(self, room_id: str) -> str:
        home = await self.bus.room_home(room_id)
        if home == self.node_id:
            return home
        live = await self.bus.live_nodes()
        if home is not None:
            if home in live:
                return home
            # Its node stopped renewing its registration: take the room over.
            await self.bus.release_room(room_id, home)
            logger.warning("room %s: its home %s is gone; moving the room", room_id, home)
        choice = self._pick(live)
        home = await self.bus.claim_room_home(room_id, choice)
        logger.info("room %s: home is %s", room_id, home, extra={"room_id": room_id})
        return home

    def _pick(self, live: Mapping[str, Mapping[str, Any]]) -> str:
        """The live node with the fewest peers (this one on a tie: no hop)."""
        now = asyncio.get_running_loop().time()
        loads = {
            node: int(info.get("load", 0))
            for node, info in live.items()
            if self._suspects.get(node, 0.0) <= now
        }
        loads[self.node_id] = self.engine.peer_count
        return min(loads, key=lambda node: (loads[node], node != self.node_id, node))

    async def _leave_other_home(self, participant_id: str, room_id: str, home: str) -> None:
        """A participant whose peer is on another node or room than this offer's: close it."""
        remote = self._remote.get(participant_id)
        if remote is not None and remote != (room_id, home):
            await self.close_peer(participant_id)
        hosted = self._hosted.get(participant_id)
        if hosted is not None and home != self.node_id:
            await self._close_here(participant_id)

    # -- this node as a home --------------------------------------------------------------------

    async def _answer_here(self, room_id: str, peer: str, sdp: str, origin: str) -> str:
        home = await self.bus.claim_room_home(room_id)  # ours: this node's bus renews it
        if home != self.node_id:
            raise RoomMoved(home)
        before = self._hosted.get(peer)
        # Registered before the answer, so that a close meanwhile does not release the room.
        self._hosted[peer] = _Hosted(room_id, origin)
        try:
            answer = await self.engine.answer(room_id, peer, sdp)
        except BaseException:
            if not self._has_peer(peer):
                self._hosted.pop(peer, None)
                await self._release_if_empty(room_id)
            raise
        if before is not None and before.room != room_id:
            await self._release_if_empty(before.room)
        return answer

    def _has_peer(self, peer: str) -> bool:
        try:
            self.engine.peer(peer)
        except LookupError:
            return False
        return True

    async def _close_here(self, peer: str) -> None:
        await self.engine.close_peer(peer)
        hosted = self._hosted.pop(peer, None)
        if hosted is not None:
            await self._release_if_empty(hosted.room)

    def _ingested_rooms(self) -> set[str]:
        """Rooms where something publishes here without a peer of the hub's (WHIP, RTSP)."""
        return {
            source.room_id
            for source in self.engine.all_sources()
            if source.publisher_id not in self._hosted
        }

    async def _release_if_empty(self, room_id: str) -> None:
        if any(hosted.room == room_id for hosted in self._hosted.values()):
            return
        if room_id in self._ingested_rooms():
            return
        try:
            if await self.bus.release_room(room_id):
                logger.info("room %s: released (no peer left here)", room_id)
        except SignalingError as exc:
            logger.info("room %s: release failed (%s); it expires", room_id, exc)

    async def _renegotiate(self, peer: str) -> None:
        hosted = self._hosted.get(peer)
        origin = hosted.origin if hosted is not None else self.node_id
        try:
            tracks = self.engine.remote_tracks(peer)
        except LookupError:
            return
        if origin == self.node_id:
            if self._hub is not None:
                await self._hub.renegotiation_needed(peer, tracks)
            return
        await self.rpc.notify(origin, "renegotiate", {"peer": peer, "tracks": tracks})

    async def _lost(self, peer: str, origin: str, message: str) -> None:
        """Tell the socket of ``peer`` (here or on ``origin``) that its media is gone."""
        if origin == self.node_id:
            if self._hub is not None:
                self._hub.media_lost(peer, message)
        else:
            await self.rpc.notify(origin, "media_lost", {"peer": peer, "message": message})

    # -- requests from other nodes ----------------------------------------------------------------

    async def _serve_answer(self, origin: str, args: Mapping[str, Any]) -> str:
        return await self._answer_here(
            str(args["room"]), str(args["peer"]), str(args["sdp"]), origin
        )

    async def _serve_candidate(self, origin: str, args: Mapping[str, Any]) -> None:
        index = args.get("index")
        await self.engine.add_candidate(
            str(args["peer"]),
            str(args["candidate"]),
            None if args.get("mid") is None else str(args["mid"]),
            None if index is None else int(index),
        )

    async def _serve_close(self, origin: str, args: Mapping[str, Any]) -> None:
        await self._close_here(str(args["peer"]))

    async def _serve_tracks(self, origin: str, args: Mapping[str, Any]) -> dict[str, int]:
        return self.engine.remote_tracks(str(args["peer"]))

    async def _serve_renegotiate(self, home: str, args: Mapping[str, Any]) -> None:
        if self._hub is not None:
            tracks = {str(kind): int(count) for kind, count in dict(args["tracks"]).items()}
            await self._hub.renegotiation_needed(str(args["peer"]), tracks)

    async def _serve_media_lost(self, home: str, args: Mapping[str, Any]) -> None:
        peer = str(args["peer"])
        if self._remote.get(peer, ("", ""))[1] == home:
            del self._remote[peer]
            if self._hub is not None:
                self._hub.media_lost(peer, str(args.get("message") or "media lost"))

    # -- the watch: load, dead nodes, lost rooms ---------------------------------------------------

    async def _publish_load(self, *, force: bool = False) -> None:
        load = {"load": self.engine.peer_count, "rooms": self.engine.room_count}
        if force or load != self._load:
            await self.bus.register_node(self.node_id, load, ttl=self.node_ttl_s)
            self._load = load

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except SignalingError as exc:  # Redis unavailable: nothing can be judged now
                logger.debug("room router %s: watch skipped: %s", self.node_id, exc)
            except Exception:
                logger.exception("room router %s: watch failed", self.node_id)

    async def _tick(self) -> None:
        await self._publish_load()
        for peer, hosted in list(self._hosted.items()):
            if not self._has_peer(peer):  # the engine closed it (ICE failed, DTLS closed)
                self._hosted.pop(peer, None)
                await self._release_if_empty(hosted.room)
        live = await self.bus.live_nodes()
        now = asyncio.get_running_loop().time()
        others = {home for _, home in self._remote.values()}
        others |= {hosted.origin for hosted in self._hosted.values()}
        others.discard(self.node_id)
        for node in list(self._missing):
            if node not in others:
                del self._missing[node]
        for node in others:
            # Unregistered and followed by nobody, for a whole registration lifetime: gone
            # (not a node briefly cut off from Redis, which re-registers within a heartbeat).
            if node in live or await self.rpc.listening(node):
                self._missing.pop(node, None)
                continue
            since = self._missing.setdefault(node, now)
            if now - since >= self.node_ttl_s:
                await self._node_gone(node)
        ingested = self._ingested_rooms()
        for room in ingested:
            await self._take(room)
        for room in {hosted.room for hosted in self._hosted.values()} - ingested:
            home = await self.bus.claim_room_home(room)
            if home != self.node_id:
                await self._hand_over(room, home)

    async def _take(self, room: str) -> None:
        """Make this node the room's home, from whichever node holds it (its peers there are
        handed over by that node's own watch)."""
        home = await self.bus.claim_room_home(room)
        if home != self.node_id:
            await self.bus.release_room(room, home)
            if await self.bus.claim_room_home(room) == self.node_id:
                logger.warning("room %s: taken over from %s (its publisher is here)", room, home)

    async def _node_gone(self, node: str) -> None:
        logger.warning("node %s is gone: its calls move to live nodes", node)
        self._missing.pop(node, None)
        for peer, (_, home) in list(self._remote.items()):
            if home == node:
                del self._remote[peer]
                if self._hub is not None:
                    self._hub.media_lost(
                        peer, "the server holding this call's media stopped; reconnecting"
                    )
        for peer, hosted in list(self._hosted.items()):
            if hosted.origin == node:  # its socket was there
                await self._close_here(peer)

    async def _hand_over(self, room: str, home: str) -> None:
        logger.warning("room %s moved to node %s: closing its peers here", room, home)
        for peer, hosted in list(self._hosted.items()):
            if hosted.room == room:
                await self._lost(
                    peer, hosted.origin, "this call moved to another server; reconnecting"
                )
                await self._close_here(peer)
