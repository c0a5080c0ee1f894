"""The search index of the archive: the ``items`` table and its row conversions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence import _files
from evidence.record import EvidenceFile, EvidenceItem, EvidenceRecord, FileCheck

__all__ = [
    "ITEM_COLUMNS",
    "POSTGRES_SCHEMA",
    "SCHEMA",
    "check_files",
    "from_ms",
    "item_from_row",
    "ms",
    "unlink_all",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    added_at INTEGER NOT NULL,
    rel_dir TEXT NOT NULL,
    record TEXT NOT NULL,
    files TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    case_id TEXT NOT NULL,
    order_id TEXT,
    tracking_number TEXT,
    unit_id TEXT,
    use TEXT NOT NULL,
    stage TEXT,
    stage_rank INTEGER,
    started_at INTEGER NOT NULL,
    grade TEXT,
    retention_class TEXT NOT NULL,
    retain_until INTEGER NOT NULL,
    legal_hold INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_order ON items (order_id, started_at);
CREATE INDEX IF NOT EXISTS items_tracking ON items (tracking_number, started_at);
CREATE INDEX IF NOT EXISTS items_case ON items (case_id, started_at);
CREATE INDEX IF NOT EXISTS items_unit ON items (unit_id, started_at);
CREATE INDEX IF NOT EXISTS items_started ON items (started_at);
CREATE INDEX IF NOT EXISTS items_retain ON items (retain_until);
"""
#: The same table on PostgreSQL (times in ms since the epoch need 64 bits).
POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id text PRIMARY KEY,
    added_at bigint NOT NULL,
    rel_dir text NOT NULL,
    record text NOT NULL,
    files text NOT NULL,
    leaf_index bigint NOT NULL,
    case_id text NOT NULL,
    order_id text,
    tracking_number text,
    unit_id text,
    use text NOT NULL,
    stage text,
    stage_rank integer,
    started_at bigint NOT NULL,
    grade text,
    retention_class text NOT NULL,
    retain_until bigint NOT NULL,
    legal_hold integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_order ON items (order_id, started_at);
CREATE INDEX IF NOT EXISTS items_tracking ON items (tracking_number, started_at);
CREATE INDEX IF NOT EXISTS items_case ON items (case_id, started_at);
CREATE INDEX IF NOT EXISTS items_unit ON items (unit_id, started_at);
CREATE INDEX IF NOT EXISTS items_started ON items (started_at);
CREATE INDEX IF NOT EXISTS items_retain ON items (retain_until);
"""

ITEM_COLUMNS = "item_id, added_at, rel_dir, record, files, leaf_index, retain_until, legal_hold"


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def item_from_row(row: tuple[Any, ...]) -> tuple[EvidenceItem, str]:
    item_id, added_at, rel_dir, record, files, leaf_index, until, hold = row
    item = EvidenceItem(
        item_id=item_id,
        record=EvidenceRecord.from_json(json.loads(record)),
        files=tuple(EvidenceFile(**f) for f in json.loads(files)),
        added_at=from_ms(added_at),
        leaf_index=leaf_index,
        retain_until=from_ms(until),
        legal_hold=bool(hold),
    )
    return item, rel_dir


def check_files(directory: Path, expected: list[dict[str, Any]]) -> list[FileCheck]:
    checks: list[FileCheck] = []
    for f in expected:
        path = directory / f["name"]
        try:
            digest, size = _files.hash_file(path)
        except FileNotFoundError:
            checks.append(FileCheck(f["name"], "missing", f["sha256"], None))
            continue
        ok = digest == f["sha256"] and size == f["size"]
        checks.append(FileCheck(f["name"], "ok" if ok else "mismatch", f["sha256"], digest))
    return checks


def unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
