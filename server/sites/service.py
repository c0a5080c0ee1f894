"""Sites (a warehouse, a store) and their cameras: a staff phone on ``/camera/<token>``, a WHIP
encoder (OBS, GStreamer, FFmpeg) or an RTSP IP camera that the server pulls.

Phone and WHIP cameras publish with a per-camera token: shown once when minted, kept only as its
SHA-256, optionally expiring, revocable. An RTSP camera's credentials are kept apart from its URL,
encrypted with a key derived from the service's secret key, never shown back by the API and
never logged: :meth:`SiteService.rtsp_source` is the one way to get the full URL (for the RTSP
puller).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from evidence import Use
from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest, NotFound
from server.sites._credentials import CredentialBox, split_rtsp_url, with_credentials
from server.storage.sqlite import Database
from server.timefmt import iso_time

__all__ = [
    "CAMERA_TOKEN_PREFIX",
    "Camera",
    "CameraChanges",
    "CameraKind",
    "CameraListener",
    "CameraToken",
    "CameraTokenError",
    "IssuedCameraToken",
    "NewCamera",
    "Site",
    "SiteService",
    "Station",
    "StationStage",
    "split_rtsp_url",
]

logger = logging.getLogger(__name__)

CAMERA_TOKEN_PREFIX = "cam_"
_MAX_TOKEN_CHARS = 256


class CameraKind(StrEnum):
    PHONE = "phone"  # a staff phone on /camera/<token>
    WHIP = "whip"  # an encoder publishing to /whip/<camera id> (RFC 9725)
    RTSP = "rtsp"  # an IP camera the server pulls


class StationStage(StrEnum):
    """What a fixed station camera watches; its clips are filed under the logistics stage."""

    RECEIVING = "receiving"
    PACKING = "packing"
    RETURNS_QC = "returns_qc"

    @property
    def evidence_use(self) -> Use:
        """What evidence from this station, scanned or captured by hand, is for."""
        return Use.PACKING if self is StationStage.PACKING else Use.RETURN

    @property
    def logistics_stage(self) -> str:
        """The evidence archive's logistics stage for clips from this station."""
        return {
            StationStage.RECEIVING: "return_receipt",
            StationStage.PACKING: "packing",
            StationStage.RETURNS_QC: "refurbishment_qc",
        }[self]


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    address: str | None
    note: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Site:
        return cls(
            id=row["id"],
            name=row["name"],
            address=row["address"],
            note=row["note"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "note": self.note,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Station:
    """A fixed camera at a packing, receiving or returns QC station."""

    stage: StationStage
    #: Seconds without a scan after which a station clip ends (None: the station's default).
    idle_timeout_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage.value,
            "logistics_stage": self.stage.logistics_stage,
            "idle_timeout_s": self.idle_timeout_s,
        }


@dataclass(frozen=True, slots=True)
class Camera:
    id: str
    site_id: str
    name: str
    kind: CameraKind
    #: The RTSP URL without credentials (RTSP cameras only).
    rtsp_url: str | None
    #: Whether credentials are stored for the RTSP URL (they are never shown).
    rtsp_credentials: bool
    station: Station | None
    enabled: bool
    created_at: float
    updated_at: float
    last_seen_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Camera:
        station = None
        if row["station_stage"]:
            station = Station(StationStage(row["station_stage"]), row["station_idle_timeout_s"])
        return cls(
            id=row["id"],
            site_id=row["site_id"],
            name=row["name"],
            kind=CameraKind(row["kind"]),
            rtsp_url=row["rtsp_url"],
            rtsp_credentials=bool(row["rtsp_username"] or row["rtsp_password"]),
            station=station,
            enabled=bool(row["enabled"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_seen_at=row["last_seen_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """The camera as the API shows it: never its RTSP credentials nor any token."""
        return {
            "id": self.id,
            "site_id": self.site_id,
            "name": self.name,
            "kind": self.kind.value,
            "rtsp_url": self.rtsp_url,
            "rtsp_credentials": self.rtsp_credentials,
            "station": self.station.to_json() if self.station is not None else None,
            "enabled": self.enabled,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
            "last_seen_at": iso_time(self.last_seen_at),
        }


@dataclass(frozen=True, slots=True)
class CameraToken:
    """A camera token's record (never the token itself)."""

    id: str
    camera_id: str
    created_by: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CameraToken:
        return cls(
            id=row["id"],
            camera_id=row["camera_id"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
        )

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera_id": self.camera_id,
            "state": self.state(now),
            "created_by": self.created_by,
            "created_at": iso_time(self.created_at),
            "expires_at": iso_time(self.expires_at),
            "revoked_at": iso_time(self.revoked_at),
            "last_used_at": iso_time(self.last_used_at),
        }


class IssuedCameraToken(NamedTuple):
    """A camera token as minted: ``token`` is shown once and never stored."""

    token: str
    id: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class NewCamera:
    name: str
    kind: CameraKind
    rtsp_url: str | None = None
    rtsp_username: str | None = None
    rtsp_password: str | None = None
    station_stage: StationStage | None = None
    station_idle_timeout_s: float | None = None


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CameraChanges:
    """Fields to change; a field left at its default stays as it is. ``None`` clears an
    optional field (the station, the RTSP credentials)."""

    name: str | None = None
    enabled: bool | None = None
    rtsp_url: str | None = _UNSET
    rtsp_username: str | None = _UNSET
    rtsp_password: str | None = _UNSET
    station_stage: StationStage | None = _UNSET
    station_idle_timeout_s: float | None = _UNSET


class CameraTokenError(DomainError):
    """A camera token that does not let its bearer publish; ``reason`` says why: ``invalid``,
    ``expired``, ``revoked``, ``disabled`` (the camera is switched off)."""

    code = DomainErrorCode.UNAUTHORIZED

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Told a camera's id and the camera as it is now (``None``: deleted) after every change.
CameraListener = Callable[[str, Camera | None], Awaitable[None]]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SiteService:
    """Creates, reads, changes and deletes sites, cameras and camera tokens."""

    def __init__(
        self, db: Database, secret_key: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
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
        site_id = "site_" + secrets.token_hex(5)
        await self._db.execute(
            "INSERT INTO sites (id, name, address, note, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (site_id, name, address, note, actor, now, now),
        )
        logger.info("site created", extra={"site_id": site_id})
        return await self.require_site(site_id)

    async def get_site(self, site_id: str) -> Site | None:
        row = await self._db.fetchone("SELECT * FROM sites WHERE id = ?", (site_id,))
        return Site.from_row(row) if row is not None else None

    async def require_site(self, site_id: str) -> Site:
        site = await self.get_site(site_id)
        if site is None:
            raise NotFound(f"no site {site_id!r}")
        return site

    async def list_sites(self) -> list[Site]:
        rows = await self._db.fetchall("SELECT * FROM sites ORDER BY name COLLATE NOCASE, id")
        return [Site.from_row(row) for row in rows]

    async def update_site(self, site_id: str, changes: Mapping[str, str | None]) -> Site:
        """Change ``name``, ``address`` or ``note`` (only the keys given)."""
        allowed = {
            key: value for key, value in changes.items() if key in ("name", "address", "note")
        }
        await self.require_site(site_id)
        if allowed:
            columns = ", ".join(f"{key} = ?" for key in allowed)
            await self._db.execute(
                f"UPDATE sites SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                (*allowed.values(), self._clock(), site_id),
            )
        return await self.require_site(site_id)

    async def delete_site(self, site_id: str) -> list[str]:
        """Delete a site with its cameras and their tokens; returns the cameras' ids."""
        cameras = [camera.id for camera in await self.list_cameras(site_id)]
        if not await self._db.execute("DELETE FROM sites WHERE id = ?", (site_id,)):
            raise NotFound(f"no site {site_id!r}")
        logger.info("site deleted", extra={"site_id": site_id})
        for camera_id in cameras:
            await self._camera_changed(camera_id, None)
        return cameras

    # -- cameras -------------------------------------------------------------------------------

    @staticmethod
    def _rtsp_fields(
        kind: CameraKind, url: str | None, username: str | None, password: str | None
    ) -> tuple[str | None, str | None, str | None]:
        if kind is not CameraKind.RTSP:
            if url or username or password:
                raise InvalidRequest("rtsp_url: only RTSP cameras have one", fields=("rtsp_url",))
            return None, None, None
        if not url:
            raise InvalidRequest("rtsp_url: required for an RTSP camera", fields=("rtsp_url",))
        clean, url_user, url_password = split_rtsp_url(url)
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
        now = self._clock()
        camera_id = "cam_" + secrets.token_hex(5)
        await self._db.execute(
            "INSERT INTO cameras (id, site_id, name, kind, rtsp_url, rtsp_username,"
            " rtsp_password, station_stage, station_idle_timeout_s, created_by, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                camera_id,
                site_id,
                new.name,
                new.kind.value,
                url,
                username,
                self._box.seal(password),
                new.station_stage.value if new.station_stage is not None else None,
                new.station_idle_timeout_s,
                actor,
                now,
                now,
            ),
        )
        logger.info(
            "camera created", extra={"site_id": site_id, "camera_id": camera_id, "kind": new.kind}
        )
        camera = await self.require_camera(camera_id)
        await self._camera_changed(camera_id, camera)
        return camera

    async def get_camera(self, camera_id: str) -> Camera | None:
        row = await self._db.fetchone("SELECT * FROM cameras WHERE id = ?", (camera_id,))
        return Camera.from_row(row) if row is not None else None

    async def require_camera(self, camera_id: str) -> Camera:
        camera = await self.get_camera(camera_id)
        if camera is None:
            raise NotFound(f"no camera {camera_id!r}")
        return camera

    async def list_cameras(self, site_id: str) -> list[Camera]:
        rows = await self._db.fetchall(
            "SELECT * FROM cameras WHERE site_id = ? ORDER BY created_at, id", (site_id,)
        )
        return [Camera.from_row(row) for row in rows]

    async def update_camera(self, camera_id: str, changes: CameraChanges) -> Camera:
        row = await self._db.fetchone("SELECT * FROM cameras WHERE id = ?", (camera_id,))
        if row is None:
            raise NotFound(f"no camera {camera_id!r}")
        camera = Camera.from_row(row)
        values: dict[str, Any] = {}
        if changes.name is not None:
            values["name"] = changes.name
        if changes.enabled is not None:
            values["enabled"] = int(changes.enabled)
        if any(
            value is not _UNSET
            for value in (changes.rtsp_url, changes.rtsp_username, changes.rtsp_password)
        ):
            url = row["rtsp_url"] if changes.rtsp_url is _UNSET else changes.rtsp_url
            username = (
                row["rtsp_username"] if changes.rtsp_username is _UNSET else changes.rtsp_username
            )
            password = (
                self._box.open(row["rtsp_password"])
                if changes.rtsp_password is _UNSET
                else changes.rtsp_password
            )
            if changes.rtsp_url is not _UNSET and changes.rtsp_url:
                _, url_user, url_password = split_rtsp_url(changes.rtsp_url)
                if url_user or url_password:
                    # Credentials in a new URL replace the stored ones.
                    username = None if changes.rtsp_username is _UNSET else username
                    password = None if changes.rtsp_password is _UNSET else password
            url, username, password = self._rtsp_fields(camera.kind, url, username, password)
            values.update(
                rtsp_url=url, rtsp_username=username, rtsp_password=self._box.seal(password)
            )
        if changes.station_stage is not _UNSET:
            stage = changes.station_stage
            values["station_stage"] = stage.value if stage is not None else None
            if stage is None:
                values["station_idle_timeout_s"] = None
        if changes.station_idle_timeout_s is not _UNSET:
            has_station = values.get("station_stage", row["station_stage"]) is not None
            if changes.station_idle_timeout_s is not None and not has_station:
                raise InvalidRequest(
                    "station_idle_timeout_s: only for a station camera (set station_stage)",
                    fields=("station_idle_timeout_s",),
                )
            values["station_idle_timeout_s"] = changes.station_idle_timeout_s
        if values:
            columns = ", ".join(f"{key} = ?" for key in values)
            await self._db.execute(
                f"UPDATE cameras SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                (*values.values(), self._clock(), camera_id),
            )
        changed = await self.require_camera(camera_id)
        if values:
            await self._camera_changed(camera_id, changed)
        return changed

    async def delete_camera(self, camera_id: str) -> Camera:
        camera = await self.require_camera(camera_id)
        await self._db.execute("DELETE FROM cameras WHERE id = ?", (camera_id,))
        logger.info("camera deleted", extra={"camera_id": camera_id})
        await self._camera_changed(camera_id, None)
        return camera

    async def rtsp_source(self, camera_id: str) -> str | None:
        """The full RTSP URL with its credentials, for the RTSP puller only: never log it."""
        row = await self._db.fetchone(
            "SELECT kind, rtsp_url, rtsp_username, rtsp_password FROM cameras WHERE id = ?",
            (camera_id,),
        )
        if row is None or row["kind"] != CameraKind.RTSP.value or not row["rtsp_url"]:
            return None
        return with_credentials(
            row["rtsp_url"], row["rtsp_username"], self._box.open(row["rtsp_password"])
        )

    async def seen(self, camera_id: str, at: float | None = None) -> None:
        """Remember when the camera was last connected."""
        await self._db.execute(
            "UPDATE cameras SET last_seen_at = ? WHERE id = ?",
            (at if at is not None else self._clock(), camera_id),
        )

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
        await self._db.execute(
            "INSERT INTO camera_tokens (id, camera_id, token_hash, created_by, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, camera_id, token_digest(token), actor, now, expires_at),
        )
        logger.info("camera token issued", extra={"camera_id": camera_id, "token_id": token_id})
        return IssuedCameraToken(token, token_id, expires_at)

    async def list_tokens(self, camera_id: str) -> list[CameraToken]:
        await self.require_camera(camera_id)
        rows = await self._db.fetchall(
            "SELECT * FROM camera_tokens WHERE camera_id = ? ORDER BY created_at DESC, id",
            (camera_id,),
        )
        return [CameraToken.from_row(row) for row in rows]

    async def revoke_token(self, camera_id: str, token_id: str) -> CameraToken:
        changed = await self._db.execute(
            "UPDATE camera_tokens SET revoked_at = ? WHERE id = ? AND camera_id = ?"
            " AND revoked_at IS NULL",
            (self._clock(), token_id, camera_id),
        )
        row = await self._db.fetchone(
            "SELECT * FROM camera_tokens WHERE id = ? AND camera_id = ?", (token_id, camera_id)
        )
        if row is None:
            raise NotFound(f"no token {token_id!r} for camera {camera_id!r}")
        if changed:
            logger.info(
                "camera token revoked", extra={"camera_id": camera_id, "token_id": token_id}
            )
        return CameraToken.from_row(row)

    async def verify_token(self, token: str) -> tuple[Camera, CameraToken]:
        """The camera a token publishes as; :class:`CameraTokenError` says why not."""
        if (
            not isinstance(token, str)
            or not token.startswith(CAMERA_TOKEN_PREFIX)
            or len(token) > _MAX_TOKEN_CHARS
        ):
            raise CameraTokenError("invalid", "this camera link or token is not valid")
        row = await self._db.fetchone(
            "SELECT * FROM camera_tokens WHERE token_hash = ?", (token_digest(token),)
        )
        if row is None:
            raise CameraTokenError("invalid", "this camera link or token is not valid")
        record = CameraToken.from_row(row)
        now = self._clock()
        state = record.state(now)
        if state == "revoked":
            raise CameraTokenError("revoked", "this camera token was revoked by an administrator")
        if state == "expired":
            raise CameraTokenError("expired", "this camera token has expired: ask for a new one")
        camera = await self.get_camera(record.camera_id)
        if camera is None:
            raise CameraTokenError("invalid", "this camera no longer exists")
        if not camera.enabled:
            raise CameraTokenError("disabled", "this camera is switched off by an administrator")
        await self._db.execute(
            "UPDATE camera_tokens SET last_used_at = ? WHERE id = ?", (now, record.id)
        )
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
        await self._db.execute(
            "INSERT OR IGNORE INTO site_evidence (item_id, site_id, camera_id, case_id,"
            " operator, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (item_id, site_id, camera_id, case_id, operator, self._clock()),
        )

    async def evidence(self, site_id: str, *, limit: int = 200) -> list[sqlite3.Row]:
        """The site's evidence links, newest first."""
        return await self._db.fetchall(
            "SELECT * FROM site_evidence WHERE site_id = ? ORDER BY created_at DESC LIMIT ?",
            (site_id, limit),
        )
