"""RTSP cameras pulled by the server: one :class:`media.RtspPull` per enabled RTSP camera, into
the camera's media room (``camera:<id>``) as the participant ``rtsp-<camera id>``.

Pulls start with the service, follow every change of a camera (a new URL or new credentials
restart its pull, switching it off or deleting it stops it) and stop at shutdown. A camera is
reported to :class:`~server.camera_status.CameraPresence` as connected while its video arrives
and as gone while the puller reconnects; its status shows the puller's state, codec, transcoding
note, retry count and last error. The error never holds the password (the puller masks it) nor
the user name (the camera's URL without credentials is shown in its place).

Before each connection the camera's host is resolved once and checked by the
:class:`~server.outbound.OutboundGuard` (internal addresses only when ``INSPECT_OUTBOUND_ALLOW``
lists them), and FFmpeg connects to the address that was checked. What went wrong is told to
everyone who sees the camera only as "the camera's address is not allowed" or "the camera could
not be reached": which ports answer how is a map of the network behind the server. The detailed
reason is for admins (:meth:`RtspCameras.error_detail`) and the server log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aioutil import cancel_and_wait
from media import Backoff, IngestTarget, RtspPull, RtspState, RtspStatus
from server.outbound import AddressRefused, OutboundGuard
from server.sites import Camera, CameraKind, CameraPresence, SiteService
from server.timefmt import iso_time
from signaling import camera_room

__all__ = ["NOT_ALLOWED", "UNREACHABLE", "RtspCameras", "rtsp_participant"]

logger = logging.getLogger(__name__)

#: The error everyone who sees the camera is shown (the detail is for admins).
NOT_ALLOWED = "the camera's address is not allowed"
UNREACHABLE = "the camera could not be reached"


def rtsp_participant(camera_id: str) -> str:
    """The media participant an RTSP camera publishes as (one pull per camera)."""
    return f"rtsp-{camera_id}"


def _digest(url: str) -> str:
    # What the running pull was started with, without keeping the password around.
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class _Pulled:
    camera_id: str
    site_id: str
    #: The camera's URL without credentials, shown in errors instead of the masked one.
    public_url: str
    digest: str
    pull: RtspPull
    changed: asyncio.Event
    reporter: asyncio.Task[None] | None = None
    #: Whether CameraPresence was told the camera is connected.
    online: bool = False
    #: Whether the last attempt ended at the outbound guard (its address is not allowed).
    refused: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RtspCameras:
    """Runs the pulls of every enabled RTSP camera (see the module docstring)."""

    def __init__(
        self,
        sites: SiteService,
        media: IngestTarget,
        presence: CameraPresence,
        *,
        backoff: Backoff | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        stop_timeout_s: float = 2.0,
        enabled: bool = True,
        guard: OutboundGuard | None = None,
    ) -> None:
        self._sites = sites
        self._guard = guard if guard is not None else OutboundGuard()
        self._media = media
        self._presence = presence
        self._backoff = backoff or Backoff()
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._enabled = enabled
        self._pulls: dict[str, _Pulled] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start pulling every enabled RTSP camera (connections are made in the background)."""
        if self._started or not self._enabled:
            return
        self._started = True
        for site in await self._sites.list_sites():
            for camera in await self._sites.list_cameras(site.id):
                if camera.kind is CameraKind.RTSP:
                    await self.sync(camera.id)
        if self._pulls:
            logger.info("pulling %d RTSP cameras", len(self._pulls))

    async def aclose(self) -> None:
        """Stop every pull (together: each waits a little for its reading thread). Idempotent."""
        self._closed = True
        pulls = list(self._pulls.values())
        self._pulls.clear()
        await asyncio.gather(*(self._stop(p, "server shutdown") for p in pulls))

    async def camera_changed(self, camera_id: str, camera: Camera | None) -> None:
        """A ``SiteService`` camera listener: start, restart or stop the camera's pull."""
        if self._started and (camera is None or camera.kind is CameraKind.RTSP):
            await self.sync(camera_id)

    async def sync(self, camera_id: str) -> None:
        """Make the camera's pull match what is stored: running with its current URL and
        credentials while it is an enabled RTSP camera, stopped otherwise."""
        lock = self._locks.setdefault(camera_id, asyncio.Lock())
        async with lock:
            camera = await self._sites.get_camera(camera_id)
            wanted = (
                not self._closed
                and camera is not None
                and camera.kind is CameraKind.RTSP
                and camera.enabled
            )
            url = await self._sites.rtsp_source(camera_id) if wanted else None
            current = self._pulls.get(camera_id)
            if current is not None:
                if url is not None and camera is not None and current.digest == _digest(url):
                    current.public_url = camera.rtsp_url or current.public_url
                    return
                del self._pulls[camera_id]
                why = "switched off or deleted" if url is None else "its URL or credentials changed"
                await self._stop(current, why)
            if url is not None and camera is not None:
                self._start(camera, url)

    # -- what the status shows -------------------------------------------------------------------

    def status(self, camera_id: str) -> RtspStatus | None:
        pulled = self._pulls.get(camera_id)
        return pulled.pull.status if pulled is not None else None

    def error_detail(self, camera_id: str) -> str | None:
        """Why the camera's last connection failed or ended, in full (the camera's URL without
        credentials, then the reason: refused address, connection refused, 401...). For admins
        only: to anyone else it maps which internal hosts and ports answer."""
        pulled = self._pulls.get(camera_id)
        if pulled is None:
            return None
        status = pulled.pull.status
        if status.error is None:
            return None
        return status.error.replace(status.url, pulled.public_url)

    def status_json(self, camera_id: str) -> dict[str, Any] | None:
        """The puller's state for the camera's status (``CameraPresence`` detail ``rtsp``), fit
        for everyone who may see the camera: ``error`` says only whether the camera's address
        is not allowed or it could not be reached (:meth:`error_detail` has the reason)."""
        pulled = self._pulls.get(camera_id)
        if pulled is None:
            return None
        status = pulled.pull.status
        error = None
        if status.error is not None:
            error = NOT_ALLOWED if pulled.refused else UNREACHABLE
        return {
            "state": status.state.value,
            "codec": status.codec,
            "profile": status.profile,
            "width": status.width,
            "height": status.height,
            "fps": status.fps,
            "transcoding": status.transcoding,
            "audio": status.audio,
            "error": error,
            "retries": status.retries,
            "connects": status.connects,
            "retry_in_s": round(status.retry_in_s, 1) if status.retry_in_s is not None else None,
            "last_frame_at": iso_time(status.last_frame_at),
        }

    @property
    def camera_ids(self) -> list[str]:
        return list(self._pulls)

    # -- internals -----------------------------------------------------------------------------

    def _start(self, camera: Camera, url: str) -> None:
        changed = asyncio.Event()
        pulled: _Pulled | None = None

        async def checked_address(host: str, port: int) -> str:
            # Resolved once per connection; FFmpeg is given this address, so a name that
            # answers differently the next time (DNS rebinding) changes nothing.
            try:
                destination = await self._guard.resolve(host, port)
            except AddressRefused:
                if pulled is not None:
                    pulled.refused = True
                raise
            except OSError:
                if pulled is not None:
                    pulled.refused = False
                raise
            if pulled is not None:
                pulled.refused = False
            return destination.address

        pull = RtspPull(
            self._media,
            camera_room(camera.id),
            rtsp_participant(camera.id),
            url,
            backoff=self._backoff,
            open_timeout_s=self._open_timeout_s,
            read_timeout_s=self._read_timeout_s,
            stop_timeout_s=self._stop_timeout_s,
            on_status=lambda _status: changed.set(),
            resolve_address=checked_address,
        )
        pulled = _Pulled(
            camera_id=camera.id,
            site_id=camera.site_id,
            public_url=camera.rtsp_url or "",
            digest=_digest(url),
            pull=pull,
            changed=changed,
        )
        pulled.reporter = asyncio.create_task(self._report(pulled), name=f"rtsp-report-{camera.id}")
        self._pulls[camera.id] = pulled
        pull.start()
        logger.info("RTSP camera pull started", extra={"camera_id": camera.id})

    async def _stop(self, pulled: _Pulled, why: str) -> None:
        try:
            await pulled.pull.aclose()
        except Exception:
            logger.exception("stopping the RTSP pull failed", extra={"camera_id": pulled.camera_id})
        task, pulled.reporter = pulled.reporter, None
        if task is not None:
            await cancel_and_wait(task)
        async with pulled.lock:
            if pulled.online:
                pulled.online = False
                await self._presence.disconnected(
                    pulled.camera_id, rtsp_participant(pulled.camera_id)
                )
        logger.info("RTSP camera pull stopped: %s", why, extra={"camera_id": pulled.camera_id})

    async def _report(self, pulled: _Pulled) -> None:
        """Tell CameraPresence, in order, what the pull's status changes mean."""
        participant_id = rtsp_participant(pulled.camera_id)
        while True:
            await pulled.changed.wait()
            pulled.changed.clear()
            online = pulled.pull.status.state is RtspState.ONLINE
            try:
                async with pulled.lock:
                    if online and not pulled.online:
                        pulled.online = True
                        await self._presence.connected(
                            pulled.camera_id, pulled.site_id, "rtsp", participant_id
                        )
                    elif not online and pulled.online:
                        pulled.online = False
                        await self._presence.disconnected(pulled.camera_id, participant_id)
                    else:
                        await self._presence.changed(pulled.site_id, pulled.camera_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "reporting the RTSP camera's status failed",
                    extra={"camera_id": pulled.camera_id},
                )
