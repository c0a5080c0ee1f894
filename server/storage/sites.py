"""What the sites domain needs of persistence: sites, their cameras, camera tokens and the
evidence filed from them.

Only plain records cross this seam (no connection, no cursor, no row), so a backend on another
database (PostgreSQL with an async driver) implements the same :class:`SiteStore`. What must be
atomic is one method: a backend runs it in one transaction. The records carry what is stored,
as stored: enum values as their strings, an RTSP password as the ciphertext the domain sealed.
The domain (``server.sites``) turns them into its own types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "CameraRecord",
    "CameraTokenRecord",
    "CameraUpdate",
    "RtspFields",
    "SiteEvidenceRecord",
    "SiteField",
    "SiteRecord",
    "SiteStore",
    "StationRecord",
]

#: The fields of a site that may be changed.
SiteField = Literal["name", "address", "note"]


@dataclass(frozen=True, slots=True)
class SiteRecord:
    id: str
    name: str
    address: str | None
    note: str | None
    created_by: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class StationRecord:
    """A camera's station: its stage (``receiving``, ``packing``, ``returns_qc``) and its own
    idle timeout, if any."""

    stage: str
    idle_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class CameraRecord:
    id: str
    site_id: str
    name: str
    kind: str
    #: Without credentials.
    rtsp_url: str | None
    rtsp_username: str | None
    #: Sealed by the domain; a backend stores and returns it as it is.
    rtsp_password: str | None
    station: StationRecord | None
    enabled: bool
    created_by: str | None
    created_at: float
    updated_at: float
    last_seen_at: float | None = None


@dataclass(frozen=True, slots=True)
class RtspFields:
    """An RTSP camera's URL (without credentials) and credentials, written together."""

    url: str | None
    username: str | None
    #: Sealed by the domain.
    password: str | None


@dataclass(frozen=True, slots=True)
class CameraUpdate:
    """Fields of a camera to write; ``None`` (``set_station`` false) leaves a field as stored."""

    name: str | None = None
    enabled: bool | None = None
    rtsp: RtspFields | None = None
    #: With ``set_station``: the station to store, ``None`` making the camera no station.
    station: StationRecord | None = None
    set_station: bool = False

    def __bool__(self) -> bool:
        return self.set_station or any(
            value is not None for value in (self.name, self.enabled, self.rtsp)
        )


@dataclass(frozen=True, slots=True)
class CameraTokenRecord:
    """A camera token's record: its digest, never the token."""

    id: str
    camera_id: str
    token_hash: str
    created_by: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None = None
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class SiteEvidenceRecord:
    """An evidence item filed from a site's camera."""

    item_id: str
    site_id: str
    camera_id: str
    #: The case it was filed under, if any.
    case_id: str | None
    operator: str
    created_at: float


class SiteStore(Protocol):
    """Sites, cameras, camera tokens and site evidence links, as stored."""

    # -- sites ---------------------------------------------------------------------------------

    async def add_site(self, site: SiteRecord) -> None: ...

    async def get_site(self, site_id: str) -> SiteRecord | None: ...

    async def list_sites(self) -> list[SiteRecord]:
        """Every site, by name (case-insensitive), then id."""
        ...

    async def update_site(
        self, site_id: str, changes: Mapping[SiteField, str | None], *, updated_at: float
    ) -> SiteRecord | None:
        """Write ``changes`` (none: leave the site and its ``updated_at`` alone) and return the
        site as it is then; ``None`` if there is no such site."""
        ...

    async def delete_site(self, site_id: str) -> list[str] | None:
        """Delete the site with its cameras and their tokens, at once; returns the deleted
        cameras' ids, or ``None`` if there was no such site."""
        ...

    # -- cameras -------------------------------------------------------------------------------

    async def add_camera(self, camera: CameraRecord) -> bool:
        """Store a new camera; ``False`` (nothing stored) if its site does not exist."""
        ...

    async def get_camera(self, camera_id: str) -> CameraRecord | None: ...

    async def list_cameras(self, site_id: str) -> list[CameraRecord]:
        """The site's cameras, oldest first."""
        ...

    async def update_camera(
        self, camera_id: str, update: CameraUpdate, *, updated_at: float
    ) -> CameraRecord | None:
        """Write ``update`` (an empty one leaves ``updated_at`` alone) and return the camera as
        it is then; ``None`` if there is no such camera."""
        ...

    async def delete_camera(self, camera_id: str) -> bool:
        """Delete the camera and its tokens; ``False`` if there was no such camera."""
        ...

    async def camera_seen(self, camera_id: str, at: float) -> None:
        """Remember when the camera was last connected (nothing if it does not exist)."""
        ...

    # -- camera tokens -------------------------------------------------------------------------

    async def add_camera_token(self, token: CameraTokenRecord) -> None: ...

    async def find_camera_token(self, token_hash: str) -> CameraTokenRecord | None:
        """The token with this digest, whatever its state (revoked, expired)."""
        ...

    async def list_camera_tokens(self, camera_id: str) -> list[CameraTokenRecord]:
        """The camera's tokens, newest first."""
        ...

    async def revoke_camera_token(
        self, camera_id: str, token_id: str, *, at: float
    ) -> tuple[CameraTokenRecord, bool] | None:
        """Revoke the camera's token unless it already is; returns the token as it is then and
        whether this call revoked it, or ``None`` if the camera has no such token."""
        ...

    async def camera_token_used(self, token_id: str, at: float) -> None:
        """Remember when the token last let a camera publish."""
        ...

    # -- site evidence -------------------------------------------------------------------------

    async def link_evidence(self, link: SiteEvidenceRecord) -> None:
        """Remember an evidence item filed from a site's camera; an item already linked keeps
        its first link."""
        ...

    async def site_evidence(self, site_id: str, *, limit: int) -> list[SiteEvidenceRecord]:
        """The site's evidence links, newest first."""
        ...
