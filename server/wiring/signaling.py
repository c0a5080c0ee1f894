"""The call hub (``/ws``) and the adapters it talks to the rest of the service through: the
site directory, camera sessions, and renegotiation requests from media."""

from __future__ import annotations

from collections.abc import Mapping

from media import MediaEngine
from server.http import allowed_origins, camera_json
from server.http.ratelimit import client_address
from server.http.whip import WhipEndpoint
from server.ice import IceServers
from server.metrics import Metrics
from server.settings import Settings
from server.sites import CameraKind, CameraPresence, CameraTokenError, SiteService
from server.wiring.rtsp import RtspCameras
from server.wiring.services import Services
from signaling import (
    Bus,
    Hub,
    HubConfig,
    Identity,
    MediaGateway,
    Role,
    SignalingError,
    SignalingErrorCode,
    SiteSummary,
    SubjectId,
)

__all__ = ["CameraSessions", "Renegotiation", "SiteRooms", "open_hub"]


class Renegotiation:
    """Media tells us a participant lacks receiving slots; the hub asks its client to offer."""

    def __init__(self, hub: Hub, media: MediaEngine) -> None:
        self._hub = hub
        self._media = media

    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        counts = tracks if tracks is not None else self._media.remote_tracks(participant_id)
        await self._hub.renegotiation_needed(participant_id, counts)


class SiteRooms:
    """Adapts the site service and camera presence to ``signaling.SiteDirectory``."""

    def __init__(self, sites: SiteService, presence: CameraPresence, base_url: str) -> None:
        self._sites = sites
        self._presence = presence
        self._base_url = base_url

    async def verify_camera_token(self, token: str) -> Identity:
        try:
            camera, record = await self._sites.verify_token(token)
        except CameraTokenError as exc:
            code = (
                SignalingErrorCode.TOKEN_EXPIRED
                if exc.reason == "expired"
                else SignalingErrorCode.UNAUTHORIZED
            )
            raise SignalingError(code, exc.message, ref="join") from None
        if camera.kind is not CameraKind.PHONE:
            raise SignalingError(
                SignalingErrorCode.UNAUTHORIZED,
                f"this token is for a {camera.kind.value} camera, not a phone camera page",
                ref="join",
            )
        return Identity(
            subject=SubjectId.camera_token(record.id),
            name=camera.name,
            role=Role.CAMERA,
            site_id=camera.site_id,
            camera_id=camera.id,
        )

    async def site(self, site_id: str) -> SiteSummary | None:
        site = await self._sites.get_site(site_id)
        if site is None:
            return None
        cameras = [
            camera_json(camera, self._presence, self._base_url)
            for camera in await self._sites.list_cameras(site_id)
            if camera.enabled
        ]
        return SiteSummary(site.id, site.name, tuple(cameras))

    async def camera_connected(self, camera_id: str, participant_id: str) -> None:
        camera = await self._sites.get_camera(camera_id)
        if camera is not None:
            await self._presence.connected(camera_id, camera.site_id, "phone", participant_id)

    async def camera_disconnected(self, camera_id: str, participant_id: str) -> None:
        await self._presence.disconnected(camera_id, participant_id)


class CameraSessions:
    """What the site routes ask of the live side (``server.http.CameraSessions``)."""

    def __init__(
        self, hub: Hub, whip: WhipEndpoint, rooms: SiteRooms, rtsp: RtspCameras | None = None
    ) -> None:
        self._hub = hub
        self._whip = whip
        self._rooms = rooms
        self._rtsp = rtsp

    async def end_camera(self, camera_id: str, reason: str, *, token_id: str | None = None) -> None:
        subject = SubjectId.camera_token(token_id) if token_id is not None else None
        self._hub.disconnect_camera(camera_id, reason, subject=subject)
        if token_id is not None:
            await self._whip.close_token(token_id, reason)
        else:
            await self._whip.close_camera(camera_id, reason)

    async def site_changed(self, site_id: str) -> None:
        summary = await self._rooms.site(site_id)
        event = {"type": "site", "site": summary.to_json() if summary is not None else None}
        await self._hub.publish_to_site(site_id, event)

    def rtsp_error(self, camera_id: str) -> str | None:
        return self._rtsp.error_detail(camera_id) if self._rtsp is not None else None


def open_hub(
    settings: Settings,
    services: Services,
    *,
    bus: Bus,
    gateway: MediaGateway,
    sites: SiteRooms,
    ice: IceServers,
    metrics: Metrics,
    grading: bool,
) -> Hub:
    """The hub of ``/ws``, wired to accounts, cases, media (or the room router) and sites."""
    return Hub(
        bus=bus,
        auth=services.auth,
        cases=services.cases,
        media=gateway,
        ice_servers=lambda identity: ice.for_subject(identity.subject),
        config=HubConfig(
            max_message_bytes=settings.ws_max_message_bytes,
            heartbeat_s=settings.ws_heartbeat_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            grading=grading,
            preroll_s=settings.preroll_s if settings.recording else None,
            allowed_origins=allowed_origins(settings),
        ),
        # The socket cap per address counts the client behind a trusted proxy, not the proxy.
        client_address=lambda request: client_address(request, settings.trusted_proxies),
        observer=metrics,
        sites=sites,
    )
