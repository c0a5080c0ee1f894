"""The composition root: builds the aiohttp application and wires the packages together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from evidence import EvidenceArchive
from inference import BatcherMetrics
from media import MediaConfig, MediaEngine
from signaling import Hub, HubConfig, MemoryBus, SignalingError
from signaling.ports import CaseSummary
from web import JoinView, StaffView, setup_pages

from .api import NoGrading, Services, open_services, setup_api
from .auth import Auth
from .captures import CaptureService
from .cases import CaseService
from .evidence_api import evidence_routes, setup_evidence_reads
from .grading import GradingService, GradingStack, open_grading
from .grading_api import grading_routes
from .ice import IceServers, turn_credentials
from .keys import CAPTURES_KEY, EVIDENCE_KEY
from .settings import Settings

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

    @property
    def auth(self) -> Auth:
        return self.services.auth

    @property
    def cases(self) -> CaseService:
        return self.services.cases


STATE_KEY: web.AppKey[AppState] = web.AppKey("inspect_state", AppState)


class _Pages:
    """Adapts the auth and case services to what the pages render."""

    def __init__(self, auth: Auth, cases: CaseService) -> None:
        self._auth = auth
        self._cases = cases

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
    )


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


async def create_app(settings: Settings) -> web.Application:
    """Open the state under ``settings.data_dir`` and build the application."""
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
        await hub_ref[0].publish_to_staff(case_id, event)

    grading = (
        GradingService(
            stack.analyzers,
            publish=publish_to_staff,
            lookup_refs=lambda case_id: _lookup_refs(services.cases, case_id),
            store_view=services.cases.record_model_view,
        )
        if stack is not None
        else None
    )
    media = MediaEngine(_media_config(settings), frame_sink=grading)
    ice = IceServers(settings)
    bus = MemoryBus()
    hub = Hub(
        bus=bus,
        auth=services.auth,
        cases=services.cases,
        media=media,
        ice_servers=lambda identity: ice.for_subject(identity.subject),
        config=HubConfig(
            max_message_bytes=settings.ws_max_message_bytes,
            heartbeat_s=settings.ws_heartbeat_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            grading=stack is not None,
            preroll_s=settings.preroll_s if settings.recording else None,
        ),
        observer=services.metrics,
    )
    hub_ref.append(hub)
    media.set_listener(_Renegotiation(hub, media))

    async def case_changed(summary: CaseSummary) -> None:
        await hub.case_changed(summary)

    services.cases.add_listener(case_changed)
    services.metrics.watch("peers", lambda: media.peer_count)
    services.metrics.watch("live_calls", lambda: hub.live_calls)

    captures = CaptureService(settings, media, archive, grading or NoGrading())

    app = web.Application(client_max_size=1024 * 1024)
    state = AppState(settings=settings, services=services, media=media, hub=hub, archive=archive)
    app[STATE_KEY] = state
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
        extra_routes=[*grading_routes(), *evidence_routes()],
    )
    setup_pages(app, _Pages(services.auth, services.cases))
    app.router.add_get("/ws", hub.handle, name="ws")

    sweeper: list[asyncio.Task[None]] = []

    async def startup(app: web.Application) -> None:
        await captures.recover(services.cases)
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
        await captures.aclose()
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
