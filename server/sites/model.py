"""The sites domain's types: sites, cameras and their stations, camera tokens, site evidence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from evidence import Use
from server.errors import DomainError, DomainErrorCode
from server.storage.sites import (
    CameraRecord,
    CameraTokenRecord,
    SiteEvidenceRecord,
    SiteRecord,
    StationRecord,
)
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
    "SiteEvidenceLink",
    "Station",
    "StationStage",
    "TokenState",
]

CAMERA_TOKEN_PREFIX = "cam_"


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


class TokenState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    address: str | None
    note: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_record(cls, record: SiteRecord) -> Site:
        return cls(
            id=record.id,
            name=record.name,
            address=record.address,
            note=record.note,
            created_at=record.created_at,
            updated_at=record.updated_at,
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

    @classmethod
    def from_record(cls, record: StationRecord) -> Station:
        return cls(StationStage(record.stage), record.idle_timeout_s)

    def to_record(self) -> StationRecord:
        return StationRecord(self.stage.value, self.idle_timeout_s)

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
    def from_record(cls, record: CameraRecord) -> Camera:
        return cls(
            id=record.id,
            site_id=record.site_id,
            name=record.name,
            kind=CameraKind(record.kind),
            rtsp_url=record.rtsp_url,
            rtsp_credentials=bool(record.rtsp_username or record.rtsp_password),
            station=Station.from_record(record.station) if record.station is not None else None,
            enabled=record.enabled,
            created_at=record.created_at,
            updated_at=record.updated_at,
            last_seen_at=record.last_seen_at,
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
    def from_record(cls, record: CameraTokenRecord) -> CameraToken:
        return cls(
            id=record.id,
            camera_id=record.camera_id,
            created_by=record.created_by,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )

    def state(self, now: float) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.EXPIRED
        return TokenState.ACTIVE

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera_id": self.camera_id,
            "state": self.state(now).value,
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
class SiteEvidenceLink:
    """An evidence item filed from one of the site's cameras."""

    item_id: str
    site_id: str
    camera_id: str
    #: The case it was filed under, if any.
    case_id: str | None
    operator: str
    created_at: float

    @classmethod
    def from_record(cls, record: SiteEvidenceRecord) -> SiteEvidenceLink:
        return cls(
            item_id=record.item_id,
            site_id=record.site_id,
            camera_id=record.camera_id,
            case_id=record.case_id,
            operator=record.operator,
            created_at=record.created_at,
        )


@dataclass(frozen=True, slots=True)
class NewCamera:
    name: str
    kind: CameraKind
    rtsp_url: str | None = None
    rtsp_username: str | None = None
    rtsp_password: str | None = None
    station_stage: StationStage | None = None
    station_idle_timeout_s: float | None = None


#: Marks a :class:`CameraChanges` field that was not given (``None`` means "clear it").
UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CameraChanges:
    """Fields to change; a field left at its default stays as it is. ``None`` clears an
    optional field (the station, the RTSP credentials)."""

    name: str | None = None
    enabled: bool | None = None
    rtsp_url: str | None = UNSET
    rtsp_username: str | None = UNSET
    rtsp_password: str | None = UNSET
    station_stage: StationStage | None = UNSET
    station_idle_timeout_s: float | None = UNSET


class CameraTokenError(DomainError):
    """A camera token that does not let its bearer publish; ``reason`` says why: ``invalid``,
    ``expired``, ``revoked``, ``disabled`` (the camera is switched off)."""

    code = DomainErrorCode.UNAUTHORIZED

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Told a camera's id and the camera as it is now (``None``: deleted) after every change.
CameraListener = Callable[[str, Camera | None], Awaitable[None]]
