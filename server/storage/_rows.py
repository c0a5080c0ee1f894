"""Rows of the record tables as the seam's records, for both backends (an ``sqlite3.Row`` and an
``asyncpg.Record`` are both read by column name; booleans are stored as 0/1 on SQLite)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Protocol

from .accounts import ApiTokenRecord, SessionRecord, UserRecord
from .analytics import AlertRecord
from .returns import RuleVersion
from .sites import (
    CameraRecord,
    CameraTokenRecord,
    SiteEvidenceRecord,
    SiteRecord,
    StationRecord,
)

__all__ = [
    "Row",
    "alert_record",
    "api_token_record",
    "camera_record",
    "camera_token_record",
    "rule_version",
    "session_record",
    "site_evidence_record",
    "site_record",
    "user_record",
]


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def user_record(row: Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        name=row["name"],
        role=row["role"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


def session_record(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        user_id=row["user_id"],
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def api_token_record(row: Row) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        token_hash=row["token_hash"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def site_record(row: Row) -> SiteRecord:
    return SiteRecord(
        id=row["id"],
        name=row["name"],
        address=row["address"],
        note=row["note"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def camera_record(row: Row) -> CameraRecord:
    station = None
    if row["station_stage"]:
        station = StationRecord(row["station_stage"], row["station_idle_timeout_s"])
    return CameraRecord(
        id=row["id"],
        site_id=row["site_id"],
        name=row["name"],
        kind=row["kind"],
        rtsp_url=row["rtsp_url"],
        rtsp_username=row["rtsp_username"],
        rtsp_password=row["rtsp_password"],
        station=station,
        enabled=bool(row["enabled"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen_at=row["last_seen_at"],
    )


def camera_token_record(row: Row) -> CameraTokenRecord:
    return CameraTokenRecord(
        id=row["id"],
        camera_id=row["camera_id"],
        token_hash=row["token_hash"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def site_evidence_record(row: Row) -> SiteEvidenceRecord:
    return SiteEvidenceRecord(
        item_id=row["item_id"],
        site_id=row["site_id"],
        camera_id=row["camera_id"],
        case_id=row["case_id"],
        operator=row["operator"],
        created_at=row["created_at"],
    )


def rule_version(row: Row) -> RuleVersion:
    return RuleVersion(
        version=row["version"],
        body=json.loads(row["body"]),
        author=row["author"],
        note=row["note"],
        created_at=row["created_at"],
    )


def alert_record(row: Row) -> AlertRecord:
    since, _, until = str(row["period"]).partition("..")
    return AlertRecord(
        id=row["id"],
        rule_id=row["rule_id"],
        version=row["version"],
        subject=row["subject"],
        since=date.fromisoformat(since),
        until=date.fromisoformat(until),
        data=json.loads(row["data"]),
        raised_at=row["raised_at"],
    )
