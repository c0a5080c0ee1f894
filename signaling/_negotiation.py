"""Offers, candidates and renegotiation between clients and their server-side peers.

In a case room a socket has one peer, named by its participant id, in the case's media room. A
camera page's peer publishes into its camera's media room. Staff in a site room have one peer
per camera they watch (see ``_watching``), chosen by the ``camera_id`` of each offer and
candidate."""

from __future__ import annotations

from collections.abc import Mapping

from . import outbound
from ._connection import Connection, Connections
from ._watching import CameraWatching
from .errors import CloseCode, SignalingError, SignalingErrorCode
from .ids import RoomId
from .messages import CandidateMessage, OfferMessage, Role
from .ports import MediaGateway, SiteDirectory

__all__ = ["Negotiation"]


class Negotiation:
    def __init__(
        self,
        *,
        media: MediaGateway,
        sites: SiteDirectory | None,
        watching: CameraWatching,
        connections: Connections,
    ) -> None:
        self._media = media
        self._sites = sites
        self._watching = watching
        self._connections = connections

    async def _target(
        self, conn: Connection, camera_id: str | None, ref: str
    ) -> tuple[RoomId, str]:
        """The media room and the server-side peer an offer or candidate is for."""
        identity = conn.identity
        assert identity is not None and conn.room is not None
        if identity.role is Role.CAMERA and identity.camera_id is not None:
            if camera_id is not None and camera_id != identity.camera_id:
                raise SignalingError(
                    SignalingErrorCode.FORBIDDEN, "a camera publishes only as itself", ref=ref
                )
            return RoomId.camera(identity.camera_id), conn.participant_id
        site_id = conn.room.site_id
        if site_id is None:
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
        peer_id = self._watching.peer(conn, camera_id)
        if peer_id is None:
            if ref != "offer":
                raise SignalingError(
                    SignalingErrorCode.NOT_IN_CALL, f"send an offer for {camera_id} first", ref=ref
                )
            summary = await self._sites.site(site_id) if self._sites is not None else None
            if summary is None or not summary.has_camera(camera_id):
                raise SignalingError(
                    SignalingErrorCode.NOT_FOUND, f"no camera {camera_id!r} at this site", ref=ref
                )
            peer_id = self._watching.watch(conn, camera_id)
        return RoomId.camera(camera_id), peer_id

    async def offer(self, conn: Connection, message: OfferMessage) -> None:
        if conn.room is None:
            raise SignalingError(SignalingErrorCode.NOT_IN_CALL, "join a call first", ref="offer")
        room, peer_id = await self._target(conn, message.camera_id, "offer")
        try:
            sdp = await self._media.answer(room, peer_id, message.sdp)
        except ValueError as exc:
            raise SignalingError(SignalingErrorCode.BAD_SDP, str(exc), ref="offer") from exc
        conn.send(outbound.answer(sdp, message.camera_id))

    async def candidate(self, conn: Connection, message: CandidateMessage) -> None:
        if conn.room is None:
            raise SignalingError(
                SignalingErrorCode.NOT_IN_CALL, "join a call first", ref="candidate"
            )
        _, peer_id = await self._target(conn, message.camera_id, "candidate")
        try:
            await self._media.add_candidate(
                peer_id, message.candidate, message.sdpMid, message.sdpMLineIndex
            )
        except (ValueError, LookupError) as exc:
            raise SignalingError(
                SignalingErrorCode.BAD_CANDIDATE, str(exc), ref="candidate"
            ) from exc

    async def unwatch(self, conn: Connection, camera_id: str) -> None:
        if conn.identity is None or not conn.identity.is_staff:
            raise SignalingError(
                SignalingErrorCode.FORBIDDEN, "only staff watch cameras", ref="unwatch"
            )
        await self._watching.unwatch(conn, camera_id)

    def _owner(self, participant_id: str) -> tuple[Connection | None, str | None]:
        """The socket a server-side peer belongs to, and the camera if it watches one."""
        watch = self._watching.watcher(participant_id)
        if watch is not None:
            return watch.conn, watch.camera_id
        return self._connections.get(participant_id), None

    def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        conn, camera_id = self._owner(participant_id)
        if conn is not None:
            conn.send(outbound.renegotiate(tracks, camera_id))

    def media_lost(self, participant_id: str, message: str) -> bool:
        conn, _ = self._owner(participant_id)
        if conn is None or conn.closing:
            return False
        conn.send(outbound.error(SignalingErrorCode.MEDIA_LOST, message))
        conn.close_soon(CloseCode.MEDIA_LOST, "media_lost: reconnect and offer again")
        return True
