"""Sites (a warehouse, a store) and their cameras: a staff phone on ``/camera/<token>``, a WHIP
encoder (OBS, GStreamer, FFmpeg) or an RTSP IP camera that the server pulls.

Phone and WHIP cameras publish with a per-camera token: shown once when minted, kept only as its
SHA-256, optionally expiring, revocable. An RTSP camera's credentials are kept apart from its URL,
encrypted with a key derived from the service's secret key, never shown back by the API and
never logged: :meth:`SiteService.rtsp_source` is the one way to get the full URL (for the RTSP
puller).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping

from server.accounts.tokens import token_digest
from server.errors import Conflict, InvalidRequest, NotFound
from server.outbound import OutboundGuard
from server.sites._credentials import (
    CredentialBox,
    check_rtsp_host,
    split_rtsp_url,
    with_credentials,
)
from server.sites.model import (
    CAMERA_TOKEN_PREFIX,
    UNSET,
    Camera,
    CameraChanges,
    CameraKind,
    CameraListener,
    CameraToken,
    CameraTokenError,
    IssuedCameraToken,
    NewCamera,
    Site,
    SiteEvidenceLink,
    Station,
    StationStage,
    TokenState,
)
from server.storage.sites import (
    CameraRecord,
    CameraTokenRecord,
    CameraUpdate,
    RtspFields,
    SiteEvidenceRecord,
    SiteField,
    SiteRecord,
    SiteStore,
)

__all__ = ["SiteService"]

logger = logging.getLogger(__name__)

_MAX_TOKEN_CHARS = 256
_SITE_FIELDS: tuple[SiteField, ...] = ("name", "address", "note")


class SiteService:
    """Creates, reads, changes and deletes sites, cameras and camera tokens.

    An RTSP camera's URL is held to ``guard`` when it is saved (by default only public
    addresses pass: a camera on the LAN needs its network in ``INSPECT_OUTBOUND_ALLOW``)."""

    def __init__(
        self,
        store: SiteStore,
        secret_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        guard: OutboundGuard | None = None,
    ) -> None:
        self._store = store
        self._guard = guard if guard is not None else OutboundGuard()
        self._clock = clock
        self._box = CredentialBox(secret_key)
        self._listeners: list[CameraListener] = []

    def add_camera_listener(self, listener: CameraListener) -> None:
        """Call ``listener`` after a camera is created, changed or deleted (also with its site),
        so what runs a camera (the RTSP puller, the stations) follows without a restart."""
        self._listeners.append(listener)

    async def _camera_changed(self, camera_id: str, camera: Camera | None) -> None:
        for listener in list(self._listeners):
            try:
                await listener(camera_id, camera)
            except Exception:
                logger.exception("camera listener failed", extra={"camera_id": camera_id})

    # -- sites ---------------------------------------------------------------------------------

    async def create_site(
        self, name: str, *, address: str | None = None, note: str | None = None, actor: str
    ) -> Site:
        now = self._clock()
        record = SiteRecord(
            id="site_" + secrets.token_hex(5),
            name=name,
            address=address,
            note=note,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        await self._store.add_site(record)
        logger.info("site created", extra={"site_id": record.id})
        return Site.from_record(record)

    async def get_site(self, site_id: str) -> Site | None:
        record = await self._store.get_site(site_id)
        return Site.from_record(record) if record is not None else None

    async def require_site(self, site_id: str) -> Site:
        site = await self.get_site(site_id)
        if site is None:
            raise NotFound(f"no site {site_id!r}")
        return site

    async def list_sites(self) -> list[Site]:
        return [Site.from_record(record) for record in await self._store.list_sites()]

    async def update_site(self, site_id: str, changes: Mapping[str, str | None]) -> Site:
        """Change ``name``, ``address`` or ``note`` (only the keys given)."""
        allowed = {key: changes[key] for key in _SITE_FIELDS if key in changes}
        record = await self._store.update_site(site_id, allowed, updated_at=self._clock())
        if record is None:
            raise NotFound(f"no site {site_id!r}")
        return Site.from_record(record)

    async def delete_site(self, site_id: str) -> list[str]:
        """Delete a site with its cameras and their tokens; returns the cameras' ids."""
        cameras = await self._store.delete_site(site_id)
        if cameras is None:
            raise NotFound(f"no site {site_id!r}")
        logger.info("site deleted", extra={"site_id": site_id})
        for camera_id in cameras:
            await self._camera_changed(camera_id, None)
        return cameras

    # -- cameras -------------------------------------------------------------------------------

    def _rtsp_fields(
        self, kind: CameraKind, url: str | None, username: str | None, password: str | None
    ) -> tuple[str | None, str | None, str | None]:
        if kind is not CameraKind.RTSP:
            if url or username or password:
                raise InvalidRequest("rtsp_url: only RTSP cameras have one", fields=("rtsp_url",))
            return None, None, None
        if not url:
            raise InvalidRequest("rtsp_url: required for an RTSP camera", fields=("rtsp_url",))
        clean, url_user, url_password = split_rtsp_url(url)
        check_rtsp_host(clean, self._guard)
        if (url_user or url_password) and (username or password):
            raise InvalidRequest(
                "rtsp_url: give the credentials in the URL or as rtsp_username/rtsp_password,"
                " not both",
                fields=("rtsp_url",),
            )
        return clean, username or url_user, password or url_password

    async def create_camera(self, site_id: str, new: NewCamera, *, actor: str) -> Camera:
        await self.require_site(site_id)
        url, username, password = self._rtsp_fields(
            new.kind, new.rtsp_url, new.rtsp_username, new.rtsp_password
        )
        if new.station_stage is None and new.station_idle_timeout_s is not None:
            raise InvalidRequest(
                "station_idle_timeout_s: only for a station camera (set station_stage)",
                fields=("station_idle_timeout_s",),
            )
        station = (
            Station(new.station_stage, new.station_idle_timeout_s)
            if new.station_stage is not None
            else None
        )
        now = self._clock()
        record = CameraRecord(
            id="cam_" + secrets.token_hex(5),
            site_id=site_id,
            name=new.name,
            kind=new.kind.value,
            rtsp_url=url,
            rtsp_username=username,
            rtsp_password=self._box.seal(password),
            station=station.to_record() if station is not None else None,
            enabled=True,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        if not await self._store.add_camera(record):
            raise NotFound(f"no site {site_id!r}")
        logger.info(
            "camera created", extra={"site_id": site_id, "camera_id": record.id, "kind": new.kind}
        )
        camera = Camera.from_record(record)
        await self._camera_changed(camera.id, camera)
        return camera

    async def get_camera(self, camera_id: str) -> Camera | None:
        record = await self._store.get_camera(camera_id)
        return Camera.from_record(record) if record is not None else None

    async def require_camera(self, camera_id: str) -> Camera:
        camera = await self.get_camera(camera_id)
        if camera is None:
            raise NotFound(f"no camera {camera_id!r}")
        return camera

    async def list_cameras(self, site_id: str) -> list[Camera]:
        return [Camera.from_record(record) for record in await self._store.list_cameras(site_id)]

    def _rtsp_update(self, record: CameraRecord, changes: CameraChanges) -> RtspFields | None:
        """The RTSP fields to store after ``changes`` (``None``: they stay as they are)."""
        if all(
            value is UNSET
            for value in (changes.rtsp_url, changes.rtsp_username, changes.rtsp_password)
        ):
            return None
        url = record.rtsp_url if changes.rtsp_url is UNSET else changes.rtsp_url
        username = record.rtsp_username if changes.rtsp_username is UNSET else changes.rtsp_username
        password = (
            self._box.open(record.rtsp_password)
            if changes.rtsp_password is UNSET
            else changes.rtsp_password
        )
        if changes.rtsp_url is not UNSET and changes.rtsp_url:
            _, url_user, url_password = split_rtsp_url(changes.rtsp_url)
            if url_user or url_password:
                # Credentials in a new URL replace the stored ones.
                username = None if changes.rtsp_username is UNSET else username
                password = None if changes.rtsp_password is UNSET else password
        url, username, password = self._rtsp_fields(
            CameraKind(record.kind), url, username, password
        )
        return RtspFields(url, username, self._box.seal(password))

    async def update_camera(self, camera_id: str, changes: CameraChanges) -> Camera:
        record = await self._store.get_camera(camera_id)
        if record is None:
            raise NotFound(f"no camera {camera_id!r}")
        rtsp = self._rtsp_update(record, changes)
        station = Station.from_record(record.station) if record.station is not None else None
        set_station = False
        if changes.station_stage is not UNSET:
            set_station = True
            stage: StationStage | None = changes.station_stage
            # A new stage keeps the station's own idle timeout; no stage clears it.
            idle = station.idle_timeout_s if station is not None else None
            station = Station(stage, idle) if stage is not None else None
        if changes.station_idle_timeout_s is not UNSET:
            if changes.station_idle_timeout_s is not None and station is None:
                raise InvalidRequest(
                    "station_idle_timeout_s: only for a station camera (set station_stage)",
                    fields=("station_idle_timeout_s",),
                )
            set_station = True
            if station is not None:
                station = Station(station.stage, changes.station_idle_timeout_s)
        update = CameraUpdate(
            name=changes.name,
            enabled=changes.enabled,
            rtsp=rtsp,
            station=station.to_record() if station is not None else None,
            set_station=set_station,
        )
        changed = await self._store.update_camera(camera_id, update, updated_at=self._clock())
        if changed is None:
            raise NotFound(f"no camera {camera_id!r}")
        camera = Camera.from_record(changed)
        if update:
            await self._camera_changed(camera_id, camera)
        return camera

    async def delete_camera(self, camera_id: str) -> Camera:
        camera = await self.require_camera(camera_id)
        if not await self._store.delete_camera(camera_id):
            raise NotFound(f"no camera {camera_id!r}")
        logger.info("camera deleted", extra={"camera_id": camera_id})
        await self._camera_changed(camera_id, None)
        return camera

    async def rtsp_source(self, camera_id: str) -> str | None:
        """The full RTSP URL with its credentials, for the RTSP puller only: never log it."""
        record = await self._store.get_camera(camera_id)
        if record is None or record.kind != CameraKind.RTSP.value or not record.rtsp_url:
            return None
        return with_credentials(
            record.rtsp_url, record.rtsp_username, self._box.open(record.rtsp_password)
        )

    async def seen(self, camera_id: str, at: float | None = None) -> None:
        """Remember when the camera was last connected."""
        await self._store.camera_seen(camera_id, at if at is not None else self._clock())

    # -- tokens ----------------------------------------------------------------------------------

    async def issue_token(
        self, camera_id: str, *, ttl_s: float | None = None, actor: str
    ) -> IssuedCameraToken:
        """A new token for a phone or WHIP camera (shown once; only its hash is kept)."""
        camera = await self.require_camera(camera_id)
        if camera.kind is CameraKind.RTSP:
            raise Conflict("an RTSP camera is pulled by the server: it publishes with no token")
        now = self._clock()
        token = CAMERA_TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = "ct_" + secrets.token_hex(5)
        expires_at = now + ttl_s if ttl_s else None
        await self._store.add_camera_token(
            CameraTokenRecord(
                id=token_id,
                camera_id=camera_id,
                token_hash=token_digest(token),
                created_by=actor,
                created_at=now,
                expires_at=expires_at,
            )
        )
        logger.info("camera token issued", extra={"camera_id": camera_id, "token_id": token_id})
        return IssuedCameraToken(token, token_id, expires_at)

    async def list_tokens(self, camera_id: str) -> list[CameraToken]:
        await self.require_camera(camera_id)
        records = await self._store.list_camera_tokens(camera_id)
        return [CameraToken.from_record(record) for record in records]

    async def revoke_token(self, camera_id: str, token_id: str) -> CameraToken:
        revoked = await self._store.revoke_camera_token(camera_id, token_id, at=self._clock())
        if revoked is None:
            raise NotFound(f"no token {token_id!r} for camera {camera_id!r}")
        record, changed = revoked
        if changed:
            logger.info(
                "camera token revoked", extra={"camera_id": camera_id, "token_id": token_id}
            )
        return CameraToken.from_record(record)

    async def verify_token(self, token: str) -> tuple[Camera, CameraToken]:
        """The camera a token publishes as; :class:`CameraTokenError` says why not."""
        if (
            not isinstance(token, str)
            or not token.startswith(CAMERA_TOKEN_PREFIX)
            or len(token) > _MAX_TOKEN_CHARS
        ):
            raise CameraTokenError("invalid", "this camera link or token is not valid")
        stored = await self._store.find_camera_token(token_digest(token))
        if stored is None:
            raise CameraTokenError("invalid", "this camera link or token is not valid")
        record = CameraToken.from_record(stored)
        now = self._clock()
        state = record.state(now)
        if state is TokenState.REVOKED:
            raise CameraTokenError("revoked", "this camera token was revoked by an administrator")
        if state is TokenState.EXPIRED:
            raise CameraTokenError("expired", "this camera token has expired: ask for a new one")
        camera = await self.get_camera(record.camera_id)
        if camera is None:
            raise CameraTokenError("invalid", "this camera no longer exists")
        if not camera.enabled:
            raise CameraTokenError("disabled", "this camera is switched off by an administrator")
        await self._store.camera_token_used(record.id, now)
        return camera, record

    # -- site evidence -------------------------------------------------------------------------

    async def link_evidence(
        self,
        item_id: str,
        *,
        site_id: str,
        camera_id: str,
        case_id: str | None,
        operator: str,
    ) -> None:
        await self._store.link_evidence(
            SiteEvidenceRecord(
                item_id=item_id,
                site_id=site_id,
                camera_id=camera_id,
                case_id=case_id,
                operator=operator,
                created_at=self._clock(),
            )
        )

    async def evidence(self, site_id: str, *, limit: int = 200) -> list[SiteEvidenceLink]:
        """The site's evidence links, newest first."""
        records = await self._store.site_evidence(site_id, limit=limit)
        return [SiteEvidenceLink.from_record(record) for record in records]
