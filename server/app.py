"""The composition root: builds the aiohttp application and wires the packages together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from evidence import EvidenceArchive, EvidenceItem
from inference import BatcherMetrics, GradingService
from media import Backoff, FrameSink, MediaCollector, MediaConfig, MediaEngine, StreamKey
from server.accounts.service import Auth
from server.capture.service import CaptureService, CaptureTarget
from server.cases.service import CaseService
from server.cluster.captures import HomeMedia, RoutedCaptures
from server.cluster.routing import RoomRouter
from server.frame_router import FrameRouter
from server.http.api import NoGrading, Services, open_services, setup_api
from server.http.evidence import evidence_routes, setup_evidence_reads
from server.http.grading import grading_routes
from server.http.keys import CAPTURES_KEY, EVIDENCE_KEY, NODE_KEY
from server.http.sites import camera_json, setup_sites, site_routes
from server.http.whip import WhipEndpoint
from server.ice import IceServers, turn_credentials
from server.settings import Settings
from server.sites.presence import CameraPresence
from server.sites.service import CameraKind, CameraTokenError, SiteService
from server.sites.stations import StationConfig, StationService
from server.wiring.cameras import RtspCameras
from server.wiring.grading import GradingStack, open_grading
from signaling import (
    Bus,
    Hub,
    HubConfig,
    Identity,
    MediaGateway,
    MemoryBus,
    RedisBus,
    Role,
    SignalingError,
    SignalingErrorCode,
    SiteSummary,
)
from signaling.ports import CaseSummary
from web import CameraView, JoinView, SiteView, StaffView, setup_pages

__all__ = [
    "STATE_KEY",
    "AppState",
    "RunningService",
    "create_app",
    "open_state",
    "running_service",
]

logger = logging.getLogger(__name__)

#: Server peers keep one TURN credential for their lifetime.
SERVER_TURN_TTL_S = 30 * 24 * 3600


@dataclass(slots=True)
class AppState:
    """Every app-wide object, for the CLI, tests and benchmarks."""

    settings: Settings
    services: Services
    media: MediaEngine
    hub: Hub
    archive: EvidenceArchive
    presence: CameraPresence
    whip: WhipEndpoint
    rtsp: RtspCameras
    stations: StationService
    #: This process among the nodes (issue 7); ``router`` only with Redis.
    node_id: str = ""
    router: RoomRouter | None = None

    @property
    def auth(self) -> Auth:
        return self.services.auth

    @property
    def cases(self) -> CaseService:
        return self.services.cases

    @property
    def sites(self) -> SiteService:
        return self.services.sites


STATE_KEY: web.AppKey[AppState] = web.AppKey("inspect_state", AppState)


class _Pages:
    """Adapts the auth, case and site services to what the pages render."""

    def __init__(self, auth: Auth, cases: CaseService, sites: SiteService) -> None:
        self._auth = auth
        self._cases = cases
        self._sites = sites

    async def camera_view(self, token: str) -> CameraView:
        try:
            camera, _ = await self._sites.verify_token(token)
        except CameraTokenError as exc:
            return CameraView(ok=False, error=exc.reason)
        if camera.kind is not CameraKind.PHONE:
            return CameraView(ok=False, error="wrong_kind")
        site = await self._sites.get_site(camera.site_id)
        return CameraView(
            ok=True,
            error=None,
            camera_id=camera.id,
            camera_name=camera.name,
            site_name=site.name if site is not None else "",
        )

    async def site_view(self, site_id: str) -> SiteView | None:
        site = await self._sites.get_site(site_id)
        return SiteView(site.id, site.name) if site is not None else None

    def staff(self, request: web.Request) -> StaffView | None:
        identity = self._auth.identify(request)
        if identity is None or not identity.is_staff:
            return None
        user = self._auth.cached_user(identity.subject)
        username = user.username if user is not None else identity.name
        return StaffView(identity.subject, username, identity.name, identity.role.value)

    async def join_view(self, token: str) -> JoinView:
        try:
            identity = self._auth.verify_join_token(token)
        except SignalingError as exc:
            error = "expired" if exc.code.value == "token_expired" else "invalid"
            return JoinView(ok=False, error=error)
        case = await self._cases.get_case(identity.case_id or "")
        if case is None:
            return JoinView(ok=False, error="invalid")
        return JoinView(
            ok=True,
            error=None,
            case_id=case.id,
            kind=case.kind.value,
            customer_name=case.customer_name,
            order_id=case.order_id,
            sku=case.sku,
        )


class _Renegotiation:
    """Media tells us a participant lacks receiving slots; the hub asks its client to offer."""

    def __init__(self, hub: Hub, media: MediaEngine) -> None:
        self._hub = hub
        self._media = media

    async def renegotiation_needed(
        self, participant_id: str, tracks: Mapping[str, int] | None = None
    ) -> None:
        counts = tracks if tracks is not None else self._media.remote_tracks(participant_id)
        await self._hub.renegotiation_needed(participant_id, counts)


class _CaseStreamsOnly:
    """Hands the grading model only the video of case rooms: it grades an item a customer
    shows to the camera, not a warehouse camera's view (``camera:<id>`` rooms), except the
    camera rooms ``also`` names (returns QC stations, which grade returned items too)."""

    def __init__(self, sink: FrameSink, also: Callable[[StreamKey], bool] | None = None) -> None:
        self._sink = sink
        self._also = also
        self._started: set[StreamKey] = set()

    def _graded(self, stream: StreamKey) -> bool:
        if not stream.room_id.startswith("camera:"):
            return True
        return self._also is not None and self._also(stream)

    def wants(self, stream: StreamKey) -> bool:
        """Site cameras' video is never decoded for the model (the engine asks first)."""
        if not self._graded(stream):
            return False
        wants = getattr(self._sink, "wants", None)
        return bool(wants(stream)) if callable(wants) else True

    def stream_started(self, stream: StreamKey) -> None:
        if self._graded(stream):
            self._started.add(stream)
            self._sink.stream_started(stream)

    def frame_sampled(self, stream: StreamKey, image: Any, ts: float) -> None:
        if stream in self._started:
            self._sink.frame_sampled(stream, image, ts)

    def stream_ended(self, stream: StreamKey) -> None:
        # Ended for the model even when it stopped being graded (a station no longer QC).
        if stream in self._started:
            self._started.discard(stream)
            self._sink.stream_ended(stream)


class _SiteRooms:
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
            subject=f"camera-token:{record.id}",
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


class _CameraSessions:
    """What the site routes ask of the live side (``server.sites_api.CameraSessions``)."""

    def __init__(self, hub: Hub, whip: WhipEndpoint, rooms: _SiteRooms) -> None:
        self._hub = hub
        self._whip = whip
        self._rooms = rooms

    async def end_camera(self, camera_id: str, reason: str, *, token_id: str | None = None) -> None:
        subject = f"camera-token:{token_id}" if token_id is not None else None
        self._hub.disconnect_camera(camera_id, reason, subject=subject)
        if token_id is not None:
            await self._whip.close_token(token_id, reason)
        else:
            await self._whip.close_camera(camera_id, reason)

    async def site_changed(self, site_id: str) -> None:
        summary = await self._rooms.site(site_id)
        event = {"type": "site", "site": summary.to_json() if summary is not None else None}
        await self._hub.publish_to_site(site_id, event)


def _media_config(settings: Settings) -> MediaConfig:
    username: str | None = None
    credential: str | None = None
    if settings.turn_secret and any(not url.startswith("stun:") for url in settings.ice_servers):
        username, credential = turn_credentials(
            settings.turn_secret, f"server-{socket.gethostname()}", SERVER_TURN_TTL_S, time.time()
        )
    return MediaConfig(
        ice_servers=settings.ice_servers,
        turn_username=username,
        turn_credential=credential,
        start_bitrate_kbps=settings.start_bitrate_kbps,
        close_timeout_s=settings.shutdown_timeout_s,
        sample_fps=settings.sample_fps,
        recording=settings.recording,
        preroll_s=settings.preroll_s,
        udp_ports=settings.media_port_range,
    )


# -- issue 7: several nodes sharing Redis ---------------------------------------------------------


@dataclass(slots=True)
class _Nodes:
    """The bus, and with Redis the router that sends each room's media to its home node."""

    bus: Bus
    gateway: MediaGateway
    node_id: str
    router: RoomRouter | None = None


def _nodes(settings: Settings, media: MediaEngine) -> _Nodes:
    if not settings.redis_url:
        return _Nodes(MemoryBus(), media, f"{socket.gethostname()}-{os.getpid()}")
    beat = settings.node_heartbeat_s
    bus = RedisBus(
        settings.redis_url,
        node_id=settings.node_id or None,
        prefix=settings.redis_prefix,
        heartbeat_s=beat,
        presence_ttl_s=5 * beat,
        room_home_ttl_s=5 * beat,
    )
    router = RoomRouter(media, bus, heartbeat_s=beat)
    return _Nodes(bus, router, bus.node_id, router)


def _capture_service(
    settings: Settings,
    media: MediaEngine,
    nodes: _Nodes,
    archive: EvidenceArchive,
    grading: GradingService | None,
    on_filed: Callable[[CaptureTarget, EvidenceItem, str], Awaitable[None]],
    worker: int,
) -> CaptureService:
    frames = grading or NoGrading()
    if nodes.router is None:
        return CaptureService(settings, media, archive, frames, on_filed=on_filed)
    # Each node keeps its own recording spool (the recovery at start files only what this
    # node, in an earlier life, left behind; never another node's running recording).
    slot = f"{socket.gethostname()}-{settings.port}-{worker}"
    spool = settings.with_overrides(data_dir=settings.data_dir / "nodes" / slot)
    # CaptureService wants the engine's capture methods: HomeMedia has them, run on the home.
    home_media = cast(MediaEngine, HomeMedia(nodes.router))
    return RoutedCaptures(
        spool, home_media, archive, frames,
        on_filed=on_filed, router=nodes.router, shared_archive=archive,
    )  # fmt: skip


# -- end issue 7 --


async def _lookup_refs(cases: CaseService, case_id: str) -> dict[str, str | None]:
    """What codes read in a case's video may match: its order, tracking number and unit."""
    case = await cases.get_case(case_id)
    if case is None:
        return {}
    return {
        "order_id": case.order_id,
        "tracking_number": case.tracking_number,
        "unit_id": case.unit_id,
    }


async def _sweep_retention(archive: EvidenceArchive, interval_s: float) -> None:
    """Delete expired evidence that is not on legal hold, now and then (log entries stay)."""
    while True:
        try:
            removed = await archive.purge_expired()
            if removed:
                logger.info("retention: %d expired evidence items deleted", len(removed))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("retention sweep failed")
        await asyncio.sleep(interval_s)


async def create_app(settings: Settings, *, worker: int = 0) -> web.Application:
    """Open the state under ``settings.data_dir`` and build the application. ``worker``: this
    process's index among the workers of ``inspectd serve --workers N``."""
    services = await open_services(settings)
    stack: GradingStack | None = None
    try:
        archive = await EvidenceArchive.open(settings.data_dir / "evidence")
        try:
            if settings.grading:
                stack = await open_grading(settings, BatcherMetrics(services.metrics.registry))
        except BaseException:
            await archive.aclose()
            raise
    except BaseException:
        await services.aclose()
        raise
    hub_ref: list[Hub] = []

    async def publish_to_staff(case_id: str, event: Mapping[str, Any]) -> None:
        if not case_id.startswith("camera:"):  # a returns QC station's room: no case's staff
            await hub_ref[0].publish_to_staff(case_id, event)

    async def store_view(case_id: str, view: Mapping[str, Any]) -> None:
        if not case_id.startswith("camera:"):  # station clips carry their view themselves
            await services.cases.record_model_view(case_id, view)

    grading = (
        GradingService(
            stack.analyzers,
            publish=publish_to_staff,
            lookup_refs=lambda case_id: _lookup_refs(services.cases, case_id),
            store_view=store_view,
        )
        if stack is not None
        else None
    )
    # -- issue 6: one frame sink for the engine, fanned out to grading and the stations -----
    frames = FrameRouter()
    media = MediaEngine(_media_config(settings), frame_sink=frames)
    frames.bind(media)
    # -- end issue 6 --
    ice = IceServers(settings)
    presence = CameraPresence(media, seen=services.sites.seen)
    site_rooms = _SiteRooms(services.sites, presence, settings.base_url)
    nodes = _nodes(settings, media)  # issue 7: memory bus, or Redis and the room router
    bus = nodes.bus
    hub = Hub(
        bus=bus,
        auth=services.auth,
        cases=services.cases,
        media=nodes.gateway,
        ice_servers=lambda identity: ice.for_subject(identity.subject),
        config=HubConfig(
            max_message_bytes=settings.ws_max_message_bytes,
            heartbeat_s=settings.ws_heartbeat_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            grading=stack is not None,
            preroll_s=settings.preroll_s if settings.recording else None,
        ),
        observer=services.metrics,
        sites=site_rooms,
    )
    hub_ref.append(hub)

    async def camera_changed(site_id: str, camera_id: str) -> None:
        camera = await services.sites.get_camera(camera_id)
        status = presence.status(camera_id, camera.last_seen_at if camera is not None else None)
        await hub.publish_to_site(
            site_id, {"type": "camera", "camera_id": camera_id, "status": status}
        )

    presence.add_listener(camera_changed)
    whip = WhipEndpoint(
        settings=settings, sites=services.sites, media=media, presence=presence, ice=ice
    )
    if nodes.router is not None:  # issue 7: the router tells the hub, wherever the socket is
        nodes.router.attach(hub)
    else:
        media.set_listener(_Renegotiation(hub, media))

    async def case_changed(summary: CaseSummary) -> None:
        await hub.case_changed(summary)

    services.cases.add_listener(case_changed)
    services.metrics.watch("peers", lambda: media.peer_count)
    services.metrics.watch("live_calls", lambda: hub.live_calls)
    services.metrics.registry.register(MediaCollector(media))

    async def link_site_evidence(target: CaptureTarget, item: EvidenceItem, operator: str) -> None:
        if target.site_id is not None and target.camera_id is not None:
            case_id = None if target.case_id.startswith("site:") else target.case_id
            await services.sites.link_evidence(
                item.item_id,
                site_id=target.site_id,
                camera_id=target.camera_id,
                case_id=case_id,
                operator=operator,
            )

    captures = _capture_service(  # issue 7: with Redis, captures run on the room's home
        settings, media, nodes, archive, grading, link_site_evidence, worker
    )
    # -- issue 6: station cameras (a clip per scanned parcel) and RTSP cameras (pulled) -------
    stations = StationService(
        services.sites,
        captures,
        grading=grading,
        on_change=presence.changed,
        refresh=frames.refresh,
        config=StationConfig(
            preroll_s=settings.station_preroll_s,
            idle_timeout_s=settings.station_idle_timeout_s,
            close_timeout_s=settings.shutdown_timeout_s,
        ),
    )
    if grading is not None:
        frames.add(_CaseStreamsOnly(grading, also=stations.graded))
    frames.add(stations)
    rtsp = RtspCameras(
        services.sites,
        media,
        presence,
        backoff=Backoff(
            initial_s=min(0.5, settings.rtsp_retry_max_s), max_s=settings.rtsp_retry_max_s
        ),
        stop_timeout_s=min(2.0, settings.shutdown_timeout_s),
        enabled=settings.rtsp_pull,
    )
    services.sites.add_camera_listener(stations.camera_changed)
    services.sites.add_camera_listener(rtsp.camera_changed)
    presence.add_details("rtsp", rtsp.status_json)
    presence.add_details("station", stations.status_json)
    # -- end issue 6 --

    app = web.Application(client_max_size=1024 * 1024)
    state = AppState(
        settings=settings,
        services=services,
        media=media,
        hub=hub,
        archive=archive,
        presence=presence,
        whip=whip,
        rtsp=rtsp,
        stations=stations,
        node_id=nodes.node_id,
        router=nodes.router,
    )
    app[STATE_KEY] = state
    app[NODE_KEY] = nodes.node_id
    app[EVIDENCE_KEY] = archive
    app[CAPTURES_KEY] = captures
    setup_evidence_reads(app)
    setup_api(
        app,
        settings=settings,
        db=services.db,
        cases=services.cases,
        auth=services.auth,
        webhooks=services.webhooks,
        metrics=services.metrics,
        calls=hub,
        grading=grading,
        extra_routes=[*grading_routes(), *evidence_routes(), *site_routes()],
    )
    setup_sites(
        app,
        sites=services.sites,
        presence=presence,
        sessions=_CameraSessions(hub, whip, site_rooms),
    )
    whip.setup(app)
    setup_pages(app, _Pages(services.auth, services.cases, services.sites))
    app.router.add_get("/ws", hub.handle, name="ws")

    sweeper: list[asyncio.Task[None]] = []

    async def startup(app: web.Application) -> None:
        await bus.start()  # issue 7: Redis must answer before this node serves
        if nodes.router is not None:
            await nodes.router.start()
        await captures.recover(services.cases)
        whip.start()
        await stations.start()  # issue 6: before the RTSP cameras publish
        await rtsp.start()
        sweeper.append(
            asyncio.create_task(
                _sweep_retention(archive, settings.retention_sweep_s), name="evidence-retention"
            )
        )

    async def shutdown(app: web.Application) -> None:
        # Sockets first (GOING_AWAY), then running captures are filed, then peers, then storage.
        for task in sweeper:
            task.cancel()
        await hub.aclose()
        await stations.aclose()  # issue 6: no new station clips; captures files running ones
        await captures.aclose()
        if nodes.router is not None:  # issue 7: other nodes' sockets told, requests stopped
            await nodes.router.aclose()
        await rtsp.aclose()
        await whip.aclose()
        await media.aclose()
        if grading is not None and stack is not None:
            await grading.aclose()
            await stack.aclose()
        await bus.aclose()
        await archive.aclose()
        await services.aclose()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    return app


@contextlib.asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[Services]:
    """The storage-backed services alone (no sockets, no media): for CLI commands."""
    services = await open_services(settings, start_webhooks=False)
    try:
        yield services
    finally:
        await services.aclose()


@dataclass(frozen=True, slots=True)
class RunningService:
    base_url: str
    app: web.Application

    @property
    def state(self) -> AppState:
        return self.app[STATE_KEY]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[RunningService]:
    """Serve on ``settings.host:port`` in this event loop (port 0 picks a free one)."""
    if settings.port == 0:
        settings = settings.with_overrides(port=free_port(settings.host))
    app = await create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    try:
        yield RunningService(settings.base_url, app)
    finally:
        await runner.cleanup()
