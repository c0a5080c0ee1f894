"""The append-only transparency log: every evidence event is a leaf of an RFC 9162 Merkle tree.

Entries live in the ``log_entries`` table of ``evidence.db``; each stores the canonical JSON
bytes that were hashed (``data``) and the leaf hash. The tree is rebuilt from ``data`` at open,
so an edited row is detected there rather than silently signed.

Several processes may append to one log (the nodes of ``inspectd serve --workers``, or nodes
on one PostgreSQL database): each append is an exclusive transaction (a file lock on SQLite,
an advisory lock on PostgreSQL) that first adds to its in-memory tree the entries other
processes appended since (checking each), so every process numbers its entry after all of
them and the log never forks; :meth:`TransparencyLog.refresh` catches up before reading.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from evidence._db import Connection, EvidenceDatabase
from evidence.errors import IntegrityError, InvalidRecord
from evidence.merkle import MerkleTree, leaf_hash
from evidence.signing import SignedTreeHead, SigningKey

__all__ = ["EntryKind", "LogEntry", "TransparencyLog", "canonical_json"]

IndexUpdate = Callable[[Connection, int], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_entries (
    idx INTEGER PRIMARY KEY,
    timestamp INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    item_id TEXT,
    data BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_entries_item ON log_entries (item_id, idx);
"""
_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_entries (
    idx bigint PRIMARY KEY,
    timestamp bigint NOT NULL,
    kind text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    item_id text,
    data bytea NOT NULL,
    leaf_hash bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS log_entries_item ON log_entries (item_id, idx);
"""


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no insignificant whitespace."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


class EntryKind(StrEnum):
    ITEM_ADDED = "item.added"
    ITEM_VIEWED = "item.viewed"
    ITEM_DOWNLOADED = "item.downloaded"
    ITEM_EXPORTED = "item.exported"
    ITEM_HELD = "item.held"
    ITEM_RELEASED = "item.released"
    ITEM_DELETED = "item.deleted"
    ITEM_EXPIRED = "item.expired"
    RETENTION_CHANGED = "retention.changed"
    #: A dispute bundle left the archive: its name, the SHA-256 of its signed manifest and the
    #: items in it (not of one item, so ``item_id`` is None). Appended after the bundle's tree
    #: head was signed, so the bundle's own proofs do not cover it; later tree heads do.
    BUNDLE_EXPORTED = "bundle.exported"
    #: A signed tree head was timestamped by an RFC 3161 authority: its size and root, the
    #: authority's time and name, the SHA-256 of its response (kept beside the log). Not of one
    #: item; every item under that head existed by that time.
    TREE_HEAD_STAMPED = "tree_head.stamped"
    #: Live media seen by staff (a frame of a call): not a stored item, but the same custody.
    LIVE_VIEWED = "live.viewed"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One leaf of the log. ``data`` is the exact byte string whose leaf hash is in the tree."""

    index: int
    timestamp: int  # ms since the epoch
    kind: EntryKind
    actor: str
    reason: str
    item_id: str | None
    data: bytes
    leaf_hash: bytes

    def record(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "timestamp": self.timestamp,
            "kind": self.kind.value,
            "actor": self.actor,
            "reason": self.reason,
            "item_id": self.item_id,
            "leaf_hash": self.leaf_hash.hex(),
        }


def _new_leaves(conn: Connection, start: int) -> list[bytes]:
    """The leaf hashes of the entries from index ``start`` on, each checked against its data."""
    leaves: list[bytes] = []
    for idx, data, stored in conn.execute(
        "SELECT idx, data, leaf_hash FROM log_entries WHERE idx >= ? ORDER BY idx", (start,)
    ):
        if idx != start + len(leaves):
            raise IntegrityError(f"log entry {start + len(leaves)} is missing")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        h = leaf_hash(raw)
        if h != bytes(stored):
            raise IntegrityError(f"log entry {idx} does not match its leaf hash")
        leaves.append(h)
    return leaves


def _entry(row: tuple[Any, ...]) -> LogEntry:
    idx, ts, kind, actor, reason, item_id, data, lh = row
    return LogEntry(idx, ts, EntryKind(kind), actor, reason, item_id, bytes(data), bytes(lh))


_COLUMNS = "idx, timestamp, kind, actor, reason, item_id, data, leaf_hash"


class TransparencyLog:
    """Appends entries, signs tree heads, and proves inclusion and consistency."""

    def __init__(
        self,
        db: EvidenceDatabase,
        key: SigningKey,
        tree: MerkleTree,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._key = key
        self._tree = tree
        self._clock = clock
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        db: EvidenceDatabase,
        key: SigningKey,
        *,
        clock: Callable[[], float] = time.time,
    ) -> TransparencyLog:
        """Create the table if needed and rebuild the tree, checking every stored row."""

        def load(conn: Connection) -> MerkleTree:
            tree = MerkleTree()
            for h in _new_leaves(conn, 0):
                tree.append_hash(h)
            tree.warm()
            return tree

        await db.create_schema(sqlite=_SCHEMA, postgresql=_POSTGRES_SCHEMA)
        return cls(db, key, await db.run(load), clock)

    @property
    def size(self) -> int:
        """Entries in this process's tree (see :meth:`refresh` for other processes')."""
        return len(self._tree)

    async def refresh(self) -> int:
        """Add the entries other processes appended since (checking each); returns the size."""
        async with self._lock:
            start = len(self._tree)
            for h in await self._db.run(lambda conn: _new_leaves(conn, start)):
                self._tree.append_hash(h)
            return len(self._tree)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def append(
        self,
        kind: EntryKind,
        *,
        actor: str,
        reason: str,
        item_id: str | None,
        fields: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        index_update: IndexUpdate | None = None,
    ) -> LogEntry:
        """Append one entry; ``index_update(conn, index)`` runs in the same transaction.

        The leaf data is the canonical JSON of ``{"kind", "timestamp", "actor", "reason",
        "item_id"}`` plus ``fields``.
        """
        if not actor:
            raise InvalidRecord("every log entry needs an actor")
        ts = self.now_ms() if timestamp is None else timestamp
        body: dict[str, Any] = dict(fields or {})
        body.update(kind=kind.value, timestamp=ts, actor=actor, reason=reason, item_id=item_id)
        try:
            data = canonical_json(body)
        except (TypeError, ValueError) as exc:
            raise InvalidRecord(f"the entry is not JSON-serialisable: {exc}") from exc
        lh = leaf_hash(data)

        async def commit() -> int:
            async with self._lock:
                start = len(self._tree)

                def write(conn: Connection) -> list[bytes]:
                    # Exclusive among processes: entries of other processes come first.
                    others = _new_leaves(conn, start)
                    index = start + len(others)
                    conn.execute(
                        f"INSERT INTO log_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (index, ts, kind.value, actor, reason, item_id, data, lh),
                    )
                    if index_update is not None:
                        index_update(conn, index)
                    return others

                others = await self._db.transaction(write, exclusive=True)
                for h in others:
                    self._tree.append_hash(h)
                return self._tree.append_hash(lh)

        # Shielded: once the row may be committed, the in-memory tree must follow it even when
        # the caller is cancelled.
        index = await asyncio.shield(commit())
        return LogEntry(index, ts, kind, actor, reason, item_id, data, lh)

    def tree_head(self, size: int | None = None) -> SignedTreeHead:
        """Sign the root of the first ``size`` entries (all of them by default) now."""
        n = len(self._tree) if size is None else size
        return self._key.sign_tree_head(n, self._tree.root(n), self.now_ms())

    def root(self, size: int | None = None) -> bytes:
        return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return self._tree.consistency_proof(old_size, new_size)

    def leaf_hash(self, index: int) -> bytes:
        return self._tree.leaf(index)

    async def entry(self, index: int) -> LogEntry | None:
        def read(conn: Connection) -> LogEntry | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM log_entries WHERE idx = ?", (index,)
            ).fetchone()
            return None if row is None else _entry(row)

        return await self._db.run(read)

    async def entries(self, *, item_id: str | None = None, limit: int = 1000) -> list[LogEntry]:
        """Entries in log order, of one item or (item_id None) of the whole log, newest last."""

        def read(conn: Connection) -> list[LogEntry]:
            if item_id is None:
                sql = f"SELECT {_COLUMNS} FROM log_entries ORDER BY idx LIMIT ?"
                rows = conn.execute(sql, (limit,))
            else:
                sql = f"SELECT {_COLUMNS} FROM log_entries WHERE item_id = ? ORDER BY idx LIMIT ?"
                rows = conn.execute(sql, (item_id, limit))
            return [_entry(row) for row in rows]

        return await self._db.run(read)

    async def grew(self, start: int, end: int, *, besides: EntryKind) -> bool:
        """Whether an entry of another kind than ``besides`` has an index from ``start`` to
        ``end - 1``."""

        def read(conn: Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM log_entries WHERE idx >= ? AND idx < ? AND kind != ? LIMIT 1",
                (start, end, besides.value),
            ).fetchone()
            return row is not None

        return await self._db.run(read)
