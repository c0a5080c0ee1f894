"""``inspectd migrate`` and ``inspectd migrate-data``: bring a database's schema to this code's
version, and move an embedded install (SQLite under ``./var``) into PostgreSQL.

Moving copies every record table row for row (ids, creation order and outbox order kept),
then the evidence archive's log, index and stamps (``evidence.migrate``), and checks what it
copied: the row count of every table, every row read back equal, and the evidence log's root
hash and items equal before and after. The derived analytics rollups are not copied:
PostgreSQL sums its charts from the cases and sales themselves. Nothing is written to the source
beyond bringing its schema to this version; a target that already holds records is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evidence.migrate import ArchiveCopy, copy_archive
from server.settings import Settings
from server.storage.postgres import PostgresDatabase
from server.storage.postgres.database import Connection
from server.storage.sqlite import SCHEMA_VERSION, Database

from .storage import open_archive, open_database

__all__ = ["DataCopy", "MigrationError", "TableCopy", "migrate", "migrate_data"]

logger = logging.getLogger(__name__)

#: Every table of records, parents before the tables that refer to them.
RECORD_TABLES: tuple[str, ...] = (
    "users",
    "sessions",
    "api_tokens",
    "cases",
    "case_events",
    "webhooks",
    "webhook_outbox",
    "sites",
    "cameras",
    "camera_tokens",
    "site_evidence",
    "return_rules",
    "sales",
    "return_alerts",
)
#: Rollups and their bookkeeping, rebuilt by the target from the records.
DERIVED_TABLES: frozenset[str] = frozenset(
    {"return_dim", "return_cube", "return_sku", "sales_rollup", "analytics_dirty",
     "analytics_state"}
)  # fmt: skip

#: Rows sent to PostgreSQL per statement batch.
_BATCH = 1000


class MigrationError(RuntimeError):
    """The data cannot be moved (a target with records, a table this version does not know)
    or what was copied does not read back equal; the message says which."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    table: str
    rows: int
    #: SHA-256 over the table's rows (sorted), equal as read from each side.
    digest: str


@dataclass(frozen=True, slots=True)
class DataCopy:
    """What ``migrate-data`` did."""

    source: str
    target: str
    tables: tuple[TableCopy, ...] = ()
    evidence: ArchiveCopy | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        lines = [f"copied {self.source} into {self.target}:"]
        width = max((len(t.table) for t in self.tables), default=0)
        for table in self.tables:
            lines.append(f"  {table.table:<{width}}  {table.rows:>8} rows, equal on both sides")
        if self.evidence is not None:
            lines.append(self.evidence.describe())
        lines.append(
            "analytics: SQLite's rollups (derived data) are not copied; PostgreSQL sums the"
            " charts from the copied cases and sales"
        )
        lines.extend(self.notes)
        return "\n".join(lines)


async def migrate(settings: Settings) -> str:
    """Bring the configured database (and the evidence archive's tables) to this code's
    schema; what was done, in a line."""
    database = await open_database(settings)
    await database.aclose()
    archive = await open_archive(settings)
    await archive.aclose()
    where = (
        f"PostgreSQL{f' schema {settings.database_schema}' if settings.database_schema else ''}"
        if settings.database_url
        else str(settings.data_dir / "inspect.db")
    )
    return f"{where}: schema version {SCHEMA_VERSION}, evidence tables ready"


def _sqlite_tables(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        columns = {n: [r[1] for r in conn.execute(f"PRAGMA table_info({n})")] for n in names}
    finally:
        conn.close()
    return names, columns


def _canonical(value: Any) -> Any:
    """One form for a value read from either database (SQLite has no booleans)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value).hex()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _digest(rows: Sequence[Sequence[Any]]) -> str:
    """SHA-256 over the rows in canonical form, sorted: equal for equal sets of rows."""
    h = hashlib.sha256()
    for line in sorted(json.dumps([_canonical(v) for v in row], default=str) for row in rows):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


async def _pg_columns(conn: Connection, table: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1",
        table,
    )
    return {row["column_name"]: row["data_type"] for row in rows}


def _converter(data_type: str) -> Any:
    if data_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if data_type in ("double precision", "real"):
        return lambda v: None if v is None else float(v)
    if data_type in ("bigint", "integer", "smallint"):
        return lambda v: None if v is None else int(v)
    if data_type == "bytea":
        return lambda v: None if v is None else (v.encode() if isinstance(v, str) else bytes(v))
    return lambda v: v


async def _copy_table(
    source: Database, conn: Connection, table: str, sqlite_columns: list[str]
) -> TableCopy:
    pg_types = await _pg_columns(conn, table)
    missing = [c for c in sqlite_columns if c not in pg_types]
    if missing:
        raise MigrationError(f"PostgreSQL table {table} lacks column(s) {', '.join(missing)}")
    columns = list(sqlite_columns)
    select = ", ".join(columns)
    # Cases keep their creation order (SQLite's rowid is PostgreSQL's seq).
    if table == "cases" and "seq" in pg_types:
        columns.append("seq")
        select += ", rowid"
    rows = [tuple(r) for r in await source.fetchall(f"SELECT {select} FROM {table} ORDER BY rowid")]
    convert = [_converter(pg_types[c]) for c in columns]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    insert = (
        f"INSERT INTO {table} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE"
        f" VALUES ({placeholders})"
    )
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        await conn.executemany(
            insert, [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in batch]
        )
    # Identity columns continue after the copied ids.
    for column in pg_types:
        seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", table, column)
        if seq is not None:
            await conn.execute(
                f"SELECT setval($1, COALESCE(MAX({column}), 0) + 1, false) FROM {table}", seq
            )
    # Read back and compare, each side in one order (key order differs between collations).
    back = await conn.fetch(f"SELECT {', '.join(columns)} FROM {table}")
    source_digest = _digest(rows)
    target_digest = _digest([tuple(r) for r in back])
    if len(back) != len(rows) or source_digest != target_digest:
        raise MigrationError(
            f"table {table}: {len(rows)} rows in SQLite, {len(back)} read back from PostgreSQL"
            f"{'' if len(back) != len(rows) else ', with different values'}"
        )
    return TableCopy(table, len(rows), target_digest)


async def _target_is_empty(conn: Connection) -> list[str]:
    holding = []
    for table in RECORD_TABLES:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                holding.append(table)
    return holding


async def migrate_data(
    source_path: Path, target_url: str, *, schema: str | None = None
) -> DataCopy:
    """Copy the embedded install whose database is ``source_path`` (its evidence archive in
    ``evidence/`` beside it) into the PostgreSQL database at ``target_url``, verify it and
    say what was done. The evidence media stay where they are: point the nodes'
    ``INSPECT_DATA_DIR`` at the same directory (a volume they all mount)."""
    if not await asyncio.to_thread(source_path.is_file):
        raise MigrationError(f"{source_path}: no such database")
    data_dir = source_path.parent
    source = await Database.open(source_path)  # brought to this version's schema first
    try:
        names, columns = _sqlite_tables(source_path)
        unknown = sorted(set(names) - set(RECORD_TABLES) - DERIVED_TABLES)
        if unknown:
            raise MigrationError(f"{source_path} has tables this version does not know: {unknown}")
        target = await PostgresDatabase.open(target_url, schema=schema)
        try:
            copied = await _copy_records(source, target, names, columns)
        finally:
            await target.aclose()
    finally:
        await source.aclose()
    settings = Settings(data_dir=data_dir)
    sqlite_archive = await open_archive(settings)
    try:
        pg_archive = await open_archive(
            replace(settings, database_url=target_url, database_schema=schema or "")
        )
        try:
            evidence = await copy_archive(sqlite_archive, pg_archive)
        finally:
            await pg_archive.aclose()
    finally:
        await sqlite_archive.aclose()
    where = f"{_safe(target_url)}{f' (schema {schema})' if schema else ''}"
    return DataCopy(
        source=str(source_path),
        target=where,
        tables=copied,
        evidence=evidence,
        notes=(
            f"the evidence media stay in {data_dir / 'evidence'}: mount it on every node and"
            " set INSPECT_DATABASE_URL (and INSPECT_DATABASE_SCHEMA) to the target",
        ),
    )


async def _copy_records(
    source: Database, target: PostgresDatabase, names: list[str], columns: dict[str, list[str]]
) -> tuple[TableCopy, ...]:
    async def work(conn: Connection) -> tuple[TableCopy, ...]:
        holding = await _target_is_empty(conn)
        if holding:
            raise MigrationError(
                f"the target already holds records (in {', '.join(holding)}): migrate-data"
                " copies into an empty database only"
            )
        return tuple(
            [
                await _copy_table(source, conn, table, columns[table])
                for table in RECORD_TABLES
                if table in names
            ]
        )

    # One transaction: a copy that fails leaves the target as it was.
    return await target.transaction(work)


def _safe(url: str) -> str:
    """The URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
