"""Moving an archive's index, log and stamps from one database to another (SQLite's
``evidence.db`` into PostgreSQL, for ``inspectd migrate-data``), verified: the log's root over
every entry equal before and after, every stored row read back equal, every item's record and
files checked against its log entry on the target. The files stay where they are: both
archives are opened on the same directory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evidence._db import Connection
from evidence.errors import EvidenceError, IntegrityError
from evidence.store import EvidenceArchive

__all__ = ["ArchiveCopy", "ArchiveCopyError", "copy_archive"]

#: The archive's tables, each with its columns and the order its rows are read in.
_TABLES: tuple[tuple[str, str, str], ...] = (
    ("log_entries", "idx, timestamp, kind, actor, reason, item_id, data, leaf_hash", "idx"),
    (
        "items",
        "item_id, added_at, rel_dir, record, files, leaf_index, case_id, order_id,"
        " tracking_number, unit_id, use, stage, stage_rank, started_at, grade,"
        " retention_class, retain_until, legal_hold",
        "item_id",
    ),
    (
        "tree_head_stamps",
        "tree_size, tree_head, response, gen_time, authority, stamped_at, roots",
        "tree_size",
    ),
)


class ArchiveCopyError(EvidenceError):
    """The archive cannot be copied (the target holds evidence already, another key) or the
    copy does not read back equal; the message says which."""


@dataclass(frozen=True, slots=True)
class ArchiveCopy:
    """What :func:`copy_archive` copied and checked."""

    rows: dict[str, int]
    tree_size: int
    root: bytes
    key_id: str
    items_verified: int

    def describe(self) -> str:
        counts = ", ".join(f"{table} {count}" for table, count in self.rows.items())
        return (
            f"evidence index, log and stamps copied ({counts} rows, equal on both sides);\n"
            f"  log root {self.root.hex()} over {self.tree_size} entries, equal before and"
            f" after (key {self.key_id});\n"
            f"  {self.items_verified} items verified on the target (record, log entry,"
            " inclusion, files)"
        )


def _value(value: Any) -> Any:
    """One form for a value read from either database."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _rows_digest(rows: Sequence[Sequence[Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(tuple(_value(v) for v in row)).encode())
    return h.hexdigest()


async def _rows(archive: EvidenceArchive, table: str) -> list[tuple[Any, ...]]:
    columns, order = next((c, o) for name, c, o in _TABLES if name == table)
    sql = f"SELECT {columns} FROM {table} ORDER BY {order}"

    def select(conn: Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(sql).fetchall()]

    return await archive.database.run(select)


async def copy_archive(source: EvidenceArchive, target: EvidenceArchive) -> ArchiveCopy:
    """Copy ``source``'s index, log and stamps into ``target`` (an archive with none) in one
    transaction, and verify the copy (see the module's text). The source is not changed."""
    if source.key_id != target.key_id:
        raise ArchiveCopyError(
            f"the archives are signed by different keys ({source.key_id}, {target.key_id}):"
            " open both on the same directory"
        )
    size = await source.refresh()
    root = source.log.root(size)
    read = {table: await _rows(source, table) for table, _, _ in _TABLES}

    def insert(conn: Connection) -> None:
        for table, _, _ in _TABLES:
            if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise ArchiveCopyError(
                    f"the target archive already holds evidence (table {table}): the copy is"
                    " made into an empty one only"
                )
        for table, columns, _ in _TABLES:
            marks = ", ".join("?" * len(columns.split(",")))
            for row in read[table]:
                conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)

    await target.database.transaction(insert, exclusive=True)
    for table, _, _ in _TABLES:
        back = await _rows(target, table)
        if _rows_digest(back) != _rows_digest(read[table]):
            raise ArchiveCopyError(
                f"evidence table {table}: {len(read[table])} rows copied, {len(back)} read"
                " back, not equal"
            )
    # The target rebuilds its tree from the copied entries, checking each leaf hash.
    copied_size = await target.refresh()
    if copied_size != size or target.log.root(size) != root:
        raise IntegrityError(
            f"the copied log's root over {size} entries differs from the original's"
        )
    verified = 0
    for row in read["items"]:
        report = await target.verify(row[0])
        if not report.ok:
            raise IntegrityError(
                f"item {row[0]} does not verify on the target: {'; '.join(report.problems)}"
            )
        verified += 1
    return ArchiveCopy(
        rows={table: len(read[table]) for table, _, _ in _TABLES},
        tree_size=size,
        root=root,
        key_id=target.key_id,
        items_verified=verified,
    )
