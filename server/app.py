"""The composition root: ``create_app`` builds the service's objects, top to bottom, and gives
each subsystem one ``cleanup_ctx`` that starts and stops it.

Subsystems start in the order they are added here and stop in the reverse order: storage
first and last; the hub (its sockets) last to start and first to stop (GOING_AWAY), so running
captures are filed while media still runs, and storage outlives everything that writes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aioutil import cancel_and_wait
from evidence import ContentCredentials, EvidenceArchive, EvidenceItem, LogisticsStage
from inference import BatcherMetrics, FaceDetector, GradingService, TextDetector, read_codes
from media import Backoff, MediaCollector, MediaEngine
from server.accounts import AccountService, Revocation
from server.capture import (
    CaptureTarget,
    InspectionConfig,
    InspectionService,
    NoStillGrading,
    UploadStore,
)
from server.capture.redaction import RedactionService
from server.cases import CaseService
from server.cluster import RoomRouter
from server.http import Edge, NoGrading, setup_http
from server.http.whip import WhipEndpoint
from server.ice import IceServers
from server.returns.analytics import AlertLoop
from server.settings import Settings
from server.sites import CameraPresence, SiteService, StationConfig, StationService
from server.wiring.captions import CallCaptions, locate_speech_models
from server.wiring.cluster import open_captures, open_nodes
from server.wiring.grading import GradingStack, open_grading
from server.wiring.lifetime import CleanupCtx, lifetime
from server.wiring.media import is_case_room, open_media
from server.wiring.pages import Pages
from server.wiring.rtsp import RtspCameras
from server.wiring.services import Services, open_services
from server.wiring.signaling import CameraSessions, Renegotiation, SiteRooms, open_hub
from server.wiring.storage import open_archive
from server.wiring.timestamps import HttpTimestampAuthority, StampLoop, load_tsa_roots
from signaling import Hub, RoomId, RoomKind
from web import setup_pages

__all__ = [
    "STATE_KEY",
    "AppState",
    "RunningService",
    "create_app",
    "free_port",
    "open_state",
    "running_service",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AppState:
    """The app's objects, for the CLI, tests and benchmarks to reach."""

    settings: Settings
    services: Services
    accounts: AccountService
    cases: CaseService
    sites: SiteService
    media: MediaEngine
    hub: Hub
    archive: EvidenceArchive
    presence: CameraPresence
    whip: WhipEndpoint
    rtsp: RtspCameras
    stations: StationService
    #: This process among the nodes; ``router`` only with Redis.
    node_id: str
    router: RoomRouter | None
    #: Live captions of this node's calls; ``None`` with ``INSPECT_CAPTIONS`` off.
    captions: CallCaptions | None = None


STATE_KEY = web.AppKey("inspect_state", AppState)


async def create_app(settings: Settings, *, worker: int = 0) -> web.Application:
    """Open the state under ``settings.data_dir`` and build the application. ``worker``: this
    process's index among the workers of ``inspectd serve --workers N``."""
    # What is opened before the app starts is closed here if building it fails; once it is
    # built, each subsystem's cleanup_ctx closes its own.
    async with contextlib.AsyncExitStack() as opened:
        app = await _build(settings, worker, opened)
        opened.pop_all()
    return app


async def _build(
    settings: Settings, worker: int, opened: contextlib.AsyncExitStack
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    # A speech model that is missing or not a CTranslate2 Whisper model stops the start here,
    # before anything else opens; it is loaded on first use.
    speech = locate_speech_models(settings) if settings.captions else None
    # -- storage: the database-backed services and the evidence archive -----------------------
    services = await open_services(settings, start_webhooks=False)
    opened.push_async_callback(services.aclose)
    archive = await open_archive(settings)
    opened.push_async_callback(archive.aclose)
    # Content credentials of exported copies: the operator's certificate (a bad one, or one
    # that does not match its key, stops the start), else the archive's own key.
    if settings.c2pa_cert is not None and settings.c2pa_key is not None:
        credentials = ContentCredentials.from_files(settings.c2pa_cert, settings.c2pa_key)
    else:
        credentials = await archive.content_credentials()
    # Outside timestamps: the authority's roots are read now (a bad file stops the start).
    tsa_roots = load_tsa_roots(settings) if settings.tsa_url else None
    # -- grading: the model (refused with a clear error when it breaks the contract) ----------
    stack: GradingStack | None = None
    if settings.grading:
        stack = await open_grading(settings, BatcherMetrics(services.metrics.registry))
        opened.push_async_callback(stack.aclose)
    app.cleanup_ctx.append(lifetime("storage", start=services.webhooks.start, stop=services.aclose))
    app.cleanup_ctx.append(_retention(archive, settings.retention_sweep_s))
    # Redacted copies for sharing: the detectors load on first use.
    redaction = RedactionService(
        archive,
        FaceDetector(),
        max_clip_s=settings.redact_max_clip_s,
        max_seconds=settings.redact_max_seconds,
        text_detector=TextDetector(threads=2),
        spool_dir=settings.data_dir / "redaction-spool",
    )
    app.cleanup_ctx.append(lifetime("redaction", stop=redaction.aclose))
    if worker == 0 and tsa_roots is not None:
        # One process asks the authority to timestamp the log's newest head.
        stamping = StampLoop(
            archive,
            HttpTimestampAuthority(settings.tsa_url, services.guard),
            tsa_roots,
            interval_s=settings.tsa_interval_s,
        )
        app.cleanup_ctx.append(lifetime("timestamps", start=stamping.start, stop=stamping.aclose))
    if worker == 0:
        # One process raises the returns alerts (a second could not raise one twice, but would
        # repeat the work); its first round also brings the analytics rollups up to date.
        alerts = AlertLoop(services.analytics, services.returns, interval_s=300.0)
        app.cleanup_ctx.append(lifetime("alerts", start=alerts.start, stop=alerts.aclose))

    # -- media, and the nodes it shares rooms with ------------------------------------------
    media, frames = open_media(settings)
    nodes = open_nodes(settings, media)
    app.cleanup_ctx.append(lifetime("bus", start=nodes.bus.start, stop=nodes.bus.aclose))
    # -- signaling: the hub of /ws (built here, since grading publishes through it; it is
    # -- the last subsystem added, so the first to stop) ----------------------------------------
    ice = IceServers(settings)
    presence = CameraPresence(media.source_stats, seen=services.sites.seen)
    site_rooms = SiteRooms(services.sites, presence, settings.base_url)
    hub = open_hub(
        settings,
        services,
        bus=nodes.bus,
        gateway=nodes.gateway,
        sites=site_rooms,
        ice=ice,
        metrics=services.metrics,
        grading=stack is not None,
    )
    grading = _grading_service(stack, services.cases, hub)
    if grading is not None and stack is not None:

        async def stop_grading() -> None:
            await grading.aclose()
            await stack.aclose()

        app.cleanup_ctx.append(lifetime("grading", stop=stop_grading))
    app.cleanup_ctx.append(lifetime("media", stop=media.aclose))
    if nodes.router is not None:
        app.cleanup_ctx.append(
            lifetime("cluster", start=nodes.router.start, stop=nodes.router.aclose)
        )

    # -- cameras: presence, WHIP encoders, evidence capture, stations, RTSP pulls -----------
    whip = WhipEndpoint(
        settings=settings, sites=services.sites, media=media, presence=presence, ice=ice
    )
    app.cleanup_ctx.append(lifetime("whip", start=whip.start, stop=whip.aclose))

    async def link_site_evidence(target: CaptureTarget, item: EvidenceItem, operator: str) -> None:
        if target.site_id is not None and target.camera_id is not None:
            await services.sites.link_evidence(
                item.item_id,
                site_id=target.site_id,
                camera_id=target.camera_id,
                case_id=RoomId.parse(target.case_id).case_id,
                operator=operator,
            )

    captures = open_captures(
        settings,
        media,
        nodes,
        archive,
        grading or NoGrading(),
        link_site_evidence,
        worker,
        transcripts=services.cases,
    )

    async def recover_captures() -> None:
        await captures.recover(services.cases)

    app.cleanup_ctx.append(lifetime("captures", start=recover_captures, stop=captures.aclose))
    inspection = InspectionService(
        captures,
        archive,
        services.cases,
        grading or NoStillGrading(),
        publish=hub.publish_to_room,
        publish_staff=hub.publish_to_staff,
        config=InspectionConfig(photo_location=settings.photo_location),
    )
    uploads = UploadStore(
        settings.data_dir / "uploads", max_bytes=int(settings.photo_max_mb * 1024 * 1024)
    )
    app.cleanup_ctx.append(_upload_sweep(uploads, 600.0))
    stations = StationService(
        services.sites,
        captures,
        reader=read_codes,
        grading=grading,
        on_change=presence.changed,
        refresh=frames.refresh,
        config=StationConfig(
            preroll_s=settings.station_preroll_s,
            idle_timeout_s=settings.station_idle_timeout_s,
            close_timeout_s=settings.shutdown_timeout_s,
        ),
    )
    app.cleanup_ctx.append(lifetime("stations", start=stations.start, stop=stations.aclose))
    rtsp = RtspCameras(
        services.sites,
        media,
        presence,
        backoff=Backoff(
            initial_s=min(0.5, settings.rtsp_retry_max_s), max_s=settings.rtsp_retry_max_s
        ),
        stop_timeout_s=min(2.0, settings.shutdown_timeout_s),
        enabled=settings.rtsp_pull,
        guard=services.guard,
    )
    app.cleanup_ctx.append(lifetime("rtsp", start=rtsp.start, stop=rtsp.aclose))
    services.sites.add_camera_listener(stations.camera_changed)
    services.sites.add_camera_listener(rtsp.camera_changed)
    presence.add_details("rtsp", rtsp.status_json)
    presence.add_details("station", stations.status_json)

    # -- which decoded frames reach whom: the model sees case rooms and returns QC stations;
    # -- the stations read their own cameras' codes -------------------------------------------
    if grading is not None:
        frames.add(grading, when=lambda stream: is_case_room(stream) or stations.graded(stream))
    frames.add(stations)

    # -- signaling: what the hub hears of media, cases and cameras ------------------------------
    if nodes.router is not None:  # the router tells the hub, wherever the socket is
        nodes.router.attach(hub)
    else:
        media.set_listener(Renegotiation(hub, media))
    services.cases.add_listener(hub.case_changed)

    async def credential_ended(revocation: Revocation) -> None:
        # Every node closes the sockets opened with it (the bus carries it to the others).
        await hub.revoke_subject(revocation.subject, revocation.reason.value)

    services.accounts.add_revocation_listener(credential_ended)

    async def camera_changed(site_id: str, camera_id: str) -> None:
        camera = await services.sites.get_camera(camera_id)
        status = presence.status(camera_id, camera.last_seen_at if camera is not None else None)
        await hub.publish_to_site(
            site_id, {"type": "camera", "camera_id": camera_id, "status": status}
        )

    presence.add_listener(camera_changed)

    # -- captions: the case rooms' speech, transcribed on this node (the room's media home) ----
    captions: CallCaptions | None = None
    if speech is not None:
        captions = CallCaptions(
            settings,
            speech,
            services.cases,
            presence=lambda room_id: hub.bus.presence_list(RoomId.parse(room_id)),
            publish=hub.publish_to_room,
        )
        captions.bind(media)
        media.set_audio_sink(captions)
        app.cleanup_ctx.append(lifetime("captions", start=captions.start, stop=captions.aclose))
    app.cleanup_ctx.append(lifetime("hub", stop=hub.aclose))

    # -- metrics ------------------------------------------------------------------------------
    services.metrics.watch("peers", lambda: media.peer_count)
    services.metrics.watch("live_calls", lambda: hub.live_calls)
    services.metrics.registry.register(MediaCollector(media))

    # -- the edge: REST, WHIP, pages, /ws -------------------------------------------------------
    setup_http(
        app,
        Edge(
            settings=settings,
            db=services.db,
            cases=services.cases,
            accounts=services.accounts,
            auth=services.auth,
            webhooks=services.webhooks,
            metrics=services.metrics,
            calls=hub,
            grading=grading,
            evidence=archive,
            captures=captures,
            inspection=inspection,
            captions=captions,
            returns=services.returns,
            redaction=redaction,
            analytics=services.analytics,
            credentials=credentials,
            uploads=uploads,
            sites=services.sites,
            presence=presence,
            camera_sessions=CameraSessions(hub, whip, site_rooms, rtsp),
            node_id=nodes.node_id,
        ),
    )
    whip.setup(app)
    setup_pages(
        app,
        Pages(
            services.accounts,
            services.auth,
            services.cases,
            services.sites,
            photo_location=settings.photo_location,
            captions=settings.captions,
        ),
        logistics_stages=[stage.value for stage in LogisticsStage],
    )
    app.router.add_get("/ws", hub.handle, name="ws")
    app[STATE_KEY] = AppState(
        settings=settings,
        services=services,
        accounts=services.accounts,
        cases=services.cases,
        sites=services.sites,
        media=media,
        hub=hub,
        archive=archive,
        presence=presence,
        whip=whip,
        rtsp=rtsp,
        stations=stations,
        node_id=nodes.node_id,
        router=nodes.router,
        captions=captions,
    )
    return app


def _grading_service(
    stack: GradingStack | None, cases: CaseService, hub: Hub
) -> GradingService | None:
    """The live grading pipeline over ``stack``'s analyzers; the model's view of a case goes
    to its staff and onto the case (a station's room is no case: its clips carry the view)."""
    if stack is None:
        return None

    async def publish_case(room_id: str, event: Mapping[str, Any]) -> None:
        if RoomId.parse(room_id).kind is RoomKind.CASE:
            await hub.publish_to_staff(room_id, event)

    async def store_view(room_id: str, view: Mapping[str, Any]) -> None:
        if RoomId.parse(room_id).kind is RoomKind.CASE:
            await cases.record_model_view(room_id, view)

    async def lookup_refs(room_id: str) -> dict[str, str | None]:
        """What codes read in a case's video may match: its order, tracking number and unit."""
        case = await cases.get_case(room_id)
        if case is None:
            return {}
        return {
            "order_id": case.order_id,
            "tracking_number": case.tracking_number,
            "unit_id": case.unit_id,
        }

    return GradingService(
        stack.analyzers, publish=publish_case, lookup_refs=lookup_refs, store_view=store_view
    )


def _retention(archive: EvidenceArchive, interval_s: float) -> CleanupCtx:
    """The archive closes last; until then, expired evidence not on legal hold is deleted now
    and then (its log entries stay)."""

    async def sweep() -> None:
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

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep(), name="evidence-retention")
        try:
            yield
        finally:
            await cancel_and_wait(task)
            await archive.aclose()

    return ctx


def _upload_sweep(uploads: UploadStore, interval_s: float) -> CleanupCtx:
    """Photo uploads a phone began and never finished go once they expire."""

    async def sweep() -> None:
        while True:
            try:
                removed = await uploads.sweep()
                if removed:
                    logger.info("%d unfinished photo uploads expired", removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sweeping the photo uploads failed")
            await asyncio.sleep(interval_s)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep(), name="uploads-sweep")
        try:
            yield
        finally:
            await cancel_and_wait(task)

    return ctx


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
