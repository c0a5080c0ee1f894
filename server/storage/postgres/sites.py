"""Sites, cameras, camera tokens and site evidence links on PostgreSQL (tables ``sites``,
``cameras``, ``camera_tokens`` and ``site_evidence``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from server.storage.sites import (
    CameraRecord,
    CameraTokenRecord,
    CameraUpdate,
    SiteEvidenceRecord,
    SiteField,
    SiteRecord,
)

from .._rows import camera_record as _camera
from .._rows import camera_token_record as _token
from .._rows import site_evidence_record as _evidence
from .._rows import site_record as _site
from .database import Connection, PostgresDatabase

__all__ = ["PostgresSiteStore"]

_SITE_FIELDS: frozenset[str] = frozenset({"name", "address", "note"})

_SITE_COLUMNS = "id, name, address, note, created_by, created_at, updated_at"
_CAMERA_COLUMNS = (
    "id, site_id, name, kind, rtsp_url, rtsp_username, rtsp_password, station_stage,"
    " station_idle_timeout_s, enabled, created_by, created_at, updated_at, last_seen_at"
)
_TOKEN_COLUMNS = (
    "id, camera_id, token_hash, created_by, created_at, expires_at, revoked_at, last_used_at"
)
_EVIDENCE_COLUMNS = "item_id, site_id, camera_id, case_id, operator, created_at"


def _camera_columns(update: CameraUpdate) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if update.name is not None:
        values["name"] = update.name
    if update.enabled is not None:
        values["enabled"] = update.enabled
    if update.rtsp is not None:
        values.update(
            rtsp_url=update.rtsp.url,
            rtsp_username=update.rtsp.username,
            rtsp_password=update.rtsp.password,
        )
    if update.set_station:
        station = update.station
        values["station_stage"] = station.stage if station is not None else None
        values["station_idle_timeout_s"] = station.idle_timeout_s if station is not None else None
    return values


def _assignments(columns: Iterable[str]) -> str:
    """``a = $1, b = $2, ...`` for column names the store chose (never the caller's text)."""
    return ", ".join(f"{name} = ${n}" for n, name in enumerate(columns, start=1))


class PostgresSiteStore:
    """:class:`server.storage.SiteStore` on a :class:`PostgresDatabase`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    # -- sites ---------------------------------------------------------------------------------

    async def add_site(self, site: SiteRecord) -> None:
        await self._db.execute(
            f"INSERT INTO sites ({_SITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (
                site.id,
                site.name,
                site.address,
                site.note,
                site.created_by,
                site.created_at,
                site.updated_at,
            ),
        )

    async def get_site(self, site_id: str) -> SiteRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_SITE_COLUMNS} FROM sites WHERE id = $1", (site_id,)
        )
        return _site(row) if row is not None else None

    async def list_sites(self) -> list[SiteRecord]:
        rows = await self._db.fetch(f"SELECT {_SITE_COLUMNS} FROM sites ORDER BY lower(name), id")
        return [_site(row) for row in rows]

    async def update_site(
        self, site_id: str, changes: Mapping[SiteField, str | None], *, updated_at: float
    ) -> SiteRecord | None:
        unknown = set(changes) - _SITE_FIELDS
        if unknown:
            raise ValueError(f"not site fields: {sorted(unknown)}")
        if not changes:
            return await self.get_site(site_id)
        n = len(changes)
        row = await self._db.fetchrow(
            f"UPDATE sites SET {_assignments(changes)}, updated_at = ${n + 1}"  # noqa: S608
            f" WHERE id = ${n + 2} RETURNING {_SITE_COLUMNS}",
            (*changes.values(), updated_at, site_id),
        )
        return _site(row) if row is not None else None

    async def delete_site(self, site_id: str) -> list[str] | None:
        async def work(conn: Connection) -> list[str] | None:
            cameras = [
                row["id"]
                for row in await conn.fetch(
                    "SELECT id FROM cameras WHERE site_id = $1 ORDER BY created_at, id", site_id
                )
            ]
            deleted = await conn.fetchval("DELETE FROM sites WHERE id = $1 RETURNING id", site_id)
            return cameras if deleted is not None else None

        return await self._db.transaction(work)

    # -- cameras -------------------------------------------------------------------------------

    async def add_camera(self, camera: CameraRecord) -> bool:
        station = camera.station
        # Inserted only if the site is there (the check and the insert in one statement).
        changed = await self._db.execute(
            f"INSERT INTO cameras ({_CAMERA_COLUMNS})"
            " SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text,"
            " $8::text, $9::double precision, $10::boolean, $11::text, $12::double precision,"
            " $13::double precision, $14::double precision"
            " WHERE EXISTS (SELECT 1 FROM sites WHERE id = $2::text)",
            (
                camera.id,
                camera.site_id,
                camera.name,
                camera.kind,
                camera.rtsp_url,
                camera.rtsp_username,
                camera.rtsp_password,
                station.stage if station is not None else None,
                station.idle_timeout_s if station is not None else None,
                camera.enabled,
                camera.created_by,
                camera.created_at,
                camera.updated_at,
                camera.last_seen_at,
            ),
        )
        return changed > 0

    async def get_camera(self, camera_id: str) -> CameraRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_CAMERA_COLUMNS} FROM cameras WHERE id = $1", (camera_id,)
        )
        return _camera(row) if row is not None else None

    async def list_cameras(self, site_id: str) -> list[CameraRecord]:
        rows = await self._db.fetch(
            f"SELECT {_CAMERA_COLUMNS} FROM cameras WHERE site_id = $1 ORDER BY created_at, id",
            (site_id,),
        )
        return [_camera(row) for row in rows]

    async def update_camera(
        self, camera_id: str, update: CameraUpdate, *, updated_at: float
    ) -> CameraRecord | None:
        values = _camera_columns(update)
        if not values:
            return await self.get_camera(camera_id)
        n = len(values)
        row = await self._db.fetchrow(
            f"UPDATE cameras SET {_assignments(values)}, updated_at = ${n + 1}"  # noqa: S608
            f" WHERE id = ${n + 2} RETURNING {_CAMERA_COLUMNS}",
            (*values.values(), updated_at, camera_id),
        )
        return _camera(row) if row is not None else None

    async def delete_camera(self, camera_id: str) -> bool:
        return await self._db.execute("DELETE FROM cameras WHERE id = $1", (camera_id,)) > 0

    async def camera_seen(self, camera_id: str, at: float) -> None:
        await self._db.execute(
            "UPDATE cameras SET last_seen_at = $1 WHERE id = $2", (at, camera_id)
        )

    # -- camera tokens -------------------------------------------------------------------------

    async def add_camera_token(self, token: CameraTokenRecord) -> None:
        await self._db.execute(
            f"INSERT INTO camera_tokens ({_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            (
                token.id,
                token.camera_id,
                token.token_hash,
                token.created_by,
                token.created_at,
                token.expires_at,
                token.revoked_at,
                token.last_used_at,
            ),
        )

    async def find_camera_token(self, token_hash: str) -> CameraTokenRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM camera_tokens WHERE token_hash = $1", (token_hash,)
        )
        return _token(row) if row is not None else None

    async def list_camera_tokens(self, camera_id: str) -> list[CameraTokenRecord]:
        rows = await self._db.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM camera_tokens WHERE camera_id = $1"
            " ORDER BY created_at DESC, id",
            (camera_id,),
        )
        return [_token(row) for row in rows]

    async def revoke_camera_token(
        self, camera_id: str, token_id: str, *, at: float
    ) -> tuple[CameraTokenRecord, bool] | None:
        async def work(conn: Connection) -> tuple[CameraTokenRecord, bool] | None:
            changed = await conn.fetchval(
                "UPDATE camera_tokens SET revoked_at = $1 WHERE id = $2 AND camera_id = $3"
                " AND revoked_at IS NULL RETURNING id",
                at,
                token_id,
                camera_id,
            )
            row = await conn.fetchrow(
                f"SELECT {_TOKEN_COLUMNS} FROM camera_tokens WHERE id = $1 AND camera_id = $2",
                token_id,
                camera_id,
            )
            return (_token(row), changed is not None) if row is not None else None

        return await self._db.transaction(work)

    async def camera_token_used(self, token_id: str, at: float) -> None:
        await self._db.execute(
            "UPDATE camera_tokens SET last_used_at = $1 WHERE id = $2", (at, token_id)
        )

    # -- site evidence -------------------------------------------------------------------------

    async def link_evidence(self, link: SiteEvidenceRecord) -> None:
        await self._db.execute(
            f"INSERT INTO site_evidence ({_EVIDENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (item_id) DO NOTHING",
            (
                link.item_id,
                link.site_id,
                link.camera_id,
                link.case_id,
                link.operator,
                link.created_at,
            ),
        )

    async def site_evidence(self, site_id: str, *, limit: int) -> list[SiteEvidenceRecord]:
        rows = await self._db.fetch(
            f"SELECT {_EVIDENCE_COLUMNS} FROM site_evidence WHERE site_id = $1"
            " ORDER BY created_at DESC LIMIT $2",
            (site_id, limit),
        )
        return [_evidence(row) for row in rows]
