"""The sites store on SQLite: the ``sites``, ``cameras``, ``camera_tokens`` and
``site_evidence`` tables of :mod:`server.storage.sqlite.database`."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
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
from .database import Database

__all__ = ["SqliteSiteStore"]

_SITE_FIELDS: frozenset[str] = frozenset({"name", "address", "note"})


def _camera_columns(update: CameraUpdate) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if update.name is not None:
        values["name"] = update.name
    if update.enabled is not None:
        values["enabled"] = int(update.enabled)
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


class SqliteSiteStore:
    """:class:`server.storage.SiteStore` on the service's SQLite :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- sites ---------------------------------------------------------------------------------

    async def add_site(self, site: SiteRecord) -> None:
        await self._db.execute(
            "INSERT INTO sites (id, name, address, note, created_by, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        row = await self._db.fetchone("SELECT * FROM sites WHERE id = ?", (site_id,))
        return _site(row) if row is not None else None

    async def list_sites(self) -> list[SiteRecord]:
        rows = await self._db.fetchall("SELECT * FROM sites ORDER BY name COLLATE NOCASE, id")
        return [_site(row) for row in rows]

    async def update_site(
        self, site_id: str, changes: Mapping[SiteField, str | None], *, updated_at: float
    ) -> SiteRecord | None:
        unknown = set(changes) - _SITE_FIELDS
        if unknown:
            raise ValueError(f"not site fields: {sorted(unknown)}")

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            if changes:
                # The column names come from _SITE_FIELDS, never from the caller's text.
                columns = ", ".join(f"{key} = ?" for key in changes)
                conn.execute(
                    f"UPDATE sites SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                    (*changes.values(), updated_at, site_id),
                )
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM sites WHERE id = ?", (site_id,)
            ).fetchone()
            return row

        row = await self._db.transaction(work)
        return _site(row) if row is not None else None

    async def delete_site(self, site_id: str) -> list[str] | None:
        def work(conn: sqlite3.Connection) -> list[str] | None:
            cameras = [
                row["id"]
                for row in conn.execute(
                    "SELECT id FROM cameras WHERE site_id = ? ORDER BY created_at, id", (site_id,)
                )
            ]
            if not conn.execute("DELETE FROM sites WHERE id = ?", (site_id,)).rowcount:
                return None
            return cameras

        return await self._db.transaction(work)

    # -- cameras -------------------------------------------------------------------------------

    async def add_camera(self, camera: CameraRecord) -> bool:
        station = camera.station
        values = (
            camera.id,
            camera.site_id,
            camera.name,
            camera.kind,
            camera.rtsp_url,
            camera.rtsp_username,
            camera.rtsp_password,
            station.stage if station is not None else None,
            station.idle_timeout_s if station is not None else None,
            int(camera.enabled),
            camera.created_by,
            camera.created_at,
            camera.updated_at,
            camera.last_seen_at,
        )

        def work(conn: sqlite3.Connection) -> bool:
            site = conn.execute("SELECT 1 FROM sites WHERE id = ?", (camera.site_id,)).fetchone()
            if site is None:
                return False
            conn.execute(
                "INSERT INTO cameras (id, site_id, name, kind, rtsp_url, rtsp_username,"
                " rtsp_password, station_stage, station_idle_timeout_s, enabled, created_by,"
                " created_at, updated_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return True

        return await self._db.transaction(work)

    async def get_camera(self, camera_id: str) -> CameraRecord | None:
        row = await self._db.fetchone("SELECT * FROM cameras WHERE id = ?", (camera_id,))
        return _camera(row) if row is not None else None

    async def list_cameras(self, site_id: str) -> list[CameraRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM cameras WHERE site_id = ? ORDER BY created_at, id", (site_id,)
        )
        return [_camera(row) for row in rows]

    async def update_camera(
        self, camera_id: str, update: CameraUpdate, *, updated_at: float
    ) -> CameraRecord | None:
        values = _camera_columns(update)

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            if values:
                columns = ", ".join(f"{key} = ?" for key in values)
                conn.execute(
                    f"UPDATE cameras SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608
                    (*values.values(), updated_at, camera_id),
                )
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM cameras WHERE id = ?", (camera_id,)
            ).fetchone()
            return row

        row = await self._db.transaction(work)
        return _camera(row) if row is not None else None

    async def delete_camera(self, camera_id: str) -> bool:
        return await self._db.execute("DELETE FROM cameras WHERE id = ?", (camera_id,)) > 0

    async def camera_seen(self, camera_id: str, at: float) -> None:
        await self._db.execute("UPDATE cameras SET last_seen_at = ? WHERE id = ?", (at, camera_id))

    # -- camera tokens -------------------------------------------------------------------------

    async def add_camera_token(self, token: CameraTokenRecord) -> None:
        await self._db.execute(
            "INSERT INTO camera_tokens (id, camera_id, token_hash, created_by, created_at,"
            " expires_at, revoked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        row = await self._db.fetchone(
            "SELECT * FROM camera_tokens WHERE token_hash = ?", (token_hash,)
        )
        return _token(row) if row is not None else None

    async def list_camera_tokens(self, camera_id: str) -> list[CameraTokenRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM camera_tokens WHERE camera_id = ? ORDER BY created_at DESC, id",
            (camera_id,),
        )
        return [_token(row) for row in rows]

    async def revoke_camera_token(
        self, camera_id: str, token_id: str, *, at: float
    ) -> tuple[CameraTokenRecord, bool] | None:
        def work(conn: sqlite3.Connection) -> tuple[CameraTokenRecord, bool] | None:
            changed = conn.execute(
                "UPDATE camera_tokens SET revoked_at = ? WHERE id = ? AND camera_id = ?"
                " AND revoked_at IS NULL",
                (at, token_id, camera_id),
            ).rowcount
            row = conn.execute(
                "SELECT * FROM camera_tokens WHERE id = ? AND camera_id = ?",
                (token_id, camera_id),
            ).fetchone()
            return (_token(row), changed > 0) if row is not None else None

        return await self._db.transaction(work)

    async def camera_token_used(self, token_id: str, at: float) -> None:
        await self._db.execute(
            "UPDATE camera_tokens SET last_used_at = ? WHERE id = ?", (at, token_id)
        )

    # -- site evidence -------------------------------------------------------------------------

    async def link_evidence(self, link: SiteEvidenceRecord) -> None:
        await self._db.execute(
            "INSERT OR IGNORE INTO site_evidence (item_id, site_id, camera_id, case_id,"
            " operator, created_at) VALUES (?, ?, ?, ?, ?, ?)",
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
        rows = await self._db.fetchall(
            "SELECT * FROM site_evidence WHERE site_id = ? ORDER BY created_at DESC LIMIT ?",
            (site_id, limit),
        )
        return [_evidence(row) for row in rows]
