"""``EvidenceArchive``: stores evidence files, indexes them, and logs every access.

Layout under ``data_dir``: ``evidence.db`` (SQLite: the log and the search index),
``signing_key.pem`` and ``evidence/<yyyy>/<mm>/<item_id>/<file>``; the stamped tree heads
(``evidence.stamps``) live in ``evidence.db`` too. With a PostgreSQL database the index, log
and stamps are its tables ``items``, ``log_entries`` and ``tree_head_stamps`` instead, and the
directory holds the files and the key only. The index row and the log
entry of every change are written in one transaction, so they never disagree.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from rfc3161_client import TimeStampRequest

from evidence import _files
from evidence._db import Connection, Database, EvidenceDatabase
from evidence._index import (
    ITEM_COLUMNS,
    POSTGRES_SCHEMA,
    SCHEMA,
    check_files,
    from_ms,
    item_from_row,
    ms,
    unlink_all,
)
from evidence.credentials import ContentCredentials
from evidence.errors import (
    EvidenceError,
    InvalidRecord,
    NotFound,
    OnLegalHold,
    RetentionActive,
    StorageFull,
)
from evidence.log import EntryKind, LogEntry, TransparencyLog
from evidence.merkle import leaf_hash, verify_inclusion
from evidence.record import (
    EvidenceFile,
    EvidenceItem,
    EvidenceRecord,
    IntegrityReport,
    LogisticsStage,
    Use,
    format_time,
)
from evidence.retention import retain_until, retention_period
from evidence.signing import SignedTreeHead, SigningKey, verify_tree_head
from evidence.stamps import (
    STAMP_POSTGRES_SCHEMA,
    STAMP_SCHEMA,
    StampedHead,
    TimestampAuthority,
    TreeHeadStamps,
)

__all__ = ["EvidenceArchive", "ItemProof"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

SYSTEM_ACTOR = "system:retention"
_ITEM_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class ItemProof:
    """An item with its "item.added" leaf data and audit path in a tree of ``tree_size``."""

    item: EvidenceItem
    directory: Path
    leaf_data: bytes
    leaf_hash: bytes
    tree_size: int
    audit_path: tuple[bytes, ...]


class EvidenceArchive:
    """The evidence store the server calls. Open with :meth:`open`, close with :meth:`aclose`."""

    def __init__(
        self,
        data_dir: Path,
        db: EvidenceDatabase,
        log: TransparencyLog,
        key: SigningKey,
        io: ThreadPoolExecutor,
        clock: Callable[[], float],
    ) -> None:
        self.data_dir = data_dir
        self._db = db
        self._log = log
        self._key = key
        self._io = io
        self._clock = clock
        self._closed = False
        self._stamps = TreeHeadStamps(db, log, key, self.run_io)

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        io_threads: int = 2,
        database_url: str | None = None,
        schema: str | None = None,
    ) -> EvidenceArchive:
        """Open (creating on first start) the archive in ``data_dir``: its files and signing
        key there, its index, log and stamps in ``evidence.db`` there or, with
        ``database_url``, in that PostgreSQL database (``schema``, else the server's
        ``search_path``), which every node of a deployment shares."""
        io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="evidence-io")
        loop = asyncio.get_running_loop()
        db: EvidenceDatabase | None = None
        try:
            await loop.run_in_executor(io, lambda: data_dir.mkdir(parents=True, exist_ok=True))
            key = await loop.run_in_executor(io, SigningKey.load_or_create, data_dir)
            if database_url is None:
                # Processes sharing the directory: exclusive transactions lock this file.
                db = await Database.open(data_dir / "evidence.db", lock=data_dir / "evidence.lock")
            else:
                from evidence._postgres import PostgresDatabase

                db = await PostgresDatabase.open(database_url, schema=schema)
            await db.create_schema(
                sqlite=SCHEMA + STAMP_SCHEMA, postgresql=POSTGRES_SCHEMA + STAMP_POSTGRES_SCHEMA
            )
            log = await TransparencyLog.open(db, key, clock=clock)
        except BaseException:
            if db is not None:
                await db.aclose()
            io.shutdown(wait=False)
            raise
        logger.info("evidence archive open: %d log entries, key %s", log.size, key.key_id)
        return cls(data_dir, db, log, key, io, clock)

    async def aclose(self) -> None:
        """Close the database and the IO threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._db.aclose()
        finally:
            self._io.shutdown(wait=False)

    # -- adding ---------------------------------------------------------------------------

    async def add_item(
        self,
        files: Sequence[tuple[str, Path]],
        record: EvidenceRecord,
        *,
        actor: str,
        move: bool = True,
    ) -> EvidenceItem:
        """Store ``files`` as one item, log "item.added" and index it; returns the item.

        ``files`` are (name, path) pairs; they are moved (``move``) or copied. If anything
        fails nothing is left in the index, the log or the item directory, and moved files
        are back where they were. A full disk raises :class:`StorageFull`.
        """
        if not files:
            raise InvalidRecord("an evidence item needs at least one file")
        names = [name for name, _ in files]
        for name in names:
            if not _files.safe_name(name):
                raise InvalidRecord(f"file name {name!r} is not allowed")
        if len(set(names)) != len(names):
            raise InvalidRecord("file names within an item must be unique")
        if not actor:
            raise InvalidRecord("actor is required")
        now_ms = int(self._clock() * 1000)
        added_at = from_ms(now_ms)
        until = retain_until(record, added_at)
        item_id = uuid.uuid4().hex
        rel_dir = f"evidence/{added_at:%Y}/{added_at:%m}/{item_id}"
        item_dir = self.data_dir / rel_dir
        sources = [(name, Path(path)) for name, path in files]

        placed = await self.run_io(_files.place_files, sources, item_dir, move)
        file_meta = [EvidenceFile(p.name, p.sha256, p.size).to_json() for p in placed]
        record_json = record.to_json()
        stage = record.logistics_stage

        def index(conn: Connection, leaf_index: int) -> None:
            conn.execute(
                "INSERT INTO items (item_id, added_at, rel_dir, record, files, leaf_index,"
                " case_id, order_id, tracking_number, unit_id, use, stage, stage_rank,"
                " started_at, grade, retention_class, retain_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item_id,
                    now_ms,
                    rel_dir,
                    json.dumps(record_json),
                    json.dumps(file_meta),
                    leaf_index,
                    record.case_id,
                    record.order_id,
                    record.tracking_number,
                    record.unit_id,
                    record.use.value,
                    None if stage is None else stage.value,
                    None if stage is None else stage.rank,
                    ms(record.started_at),
                    record.grade,
                    record.retention_class,
                    ms(until),
                ),
            )

        try:
            entry = await self._log.append(
                EntryKind.ITEM_ADDED,
                actor=actor,
                reason="captured",
                item_id=item_id,
                timestamp=now_ms,
                fields={
                    "record": record_json,
                    "files": file_meta,
                    "added_at": format_time(added_at),
                },
                index_update=index,
            )
        except BaseException:
            await asyncio.shield(self.run_io(_files.undo_placement, placed, item_dir))
            raise
        if move:
            copied = [p.source for p in placed if not p.renamed]
            if copied:
                await self.run_io(unlink_all, copied)
        logger.info("evidence item added", extra={"item_id": item_id, "case_id": record.case_id})
        return EvidenceItem(
            item_id=item_id,
            record=record,
            files=tuple(EvidenceFile(**f) for f in file_meta),
            added_at=added_at,
            leaf_index=entry.index,
            retain_until=until,
        )

    # -- reading --------------------------------------------------------------------------

    async def search(
        self,
        *,
        order_id: str | None = None,
        tracking_number: str | None = None,
        case_id: str | None = None,
        unit_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        grade: str | None = None,
        stage: LogisticsStage | str | None = None,
        use: Use | str | None = None,
        limit: int = 100,
    ) -> list[EvidenceItem]:
        """Items matching every given filter (times compare with ``started_at``).

        With ``tracking_number`` the result follows the parcel: logistics stage order, then
        time; otherwise newest first. Searching is not logged (it shows no media).
        """
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("order_id", order_id),
            ("tracking_number", tracking_number),
            ("case_id", case_id),
            ("unit_id", unit_id),
            ("grade", grade),
            ("stage", None if stage is None else LogisticsStage(stage).value),
            ("use", None if use is None else Use(use).value),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("started_at >= ?")
            args.append(ms(since))
        if until is not None:
            where.append("started_at < ?")
            args.append(ms(until))
        order = (
            "stage_rank IS NULL, stage_rank, started_at, item_id"
            if tracking_number is not None
            else "started_at DESC, item_id"
        )
        sql = f"SELECT {ITEM_COLUMNS} FROM items"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        args.append(max(0, min(limit, 10_000)))

        def read(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, args).fetchall()

        return [item_from_row(row)[0] for row in await self._db.run(read)]

    async def get(self, item_id: str, *, actor: str, reason: str) -> EvidenceItem:
        """The item; logs "item.viewed" with who and why."""
        item, _ = await self._row(item_id)
        await self._log_access(EntryKind.ITEM_VIEWED, item_id, actor, reason)
        return item

    async def file_path(self, item_id: str, name: str, *, actor: str, reason: str) -> Path:
        """Path of one file of the item for serving; logs "item.downloaded"."""
        item, rel_dir = await self._row(item_id)
        if item.file(name) is None:
            raise NotFound(f"item {item_id} has no file {name!r}", item_id=item_id)
        path = self.data_dir / rel_dir / name
        await self._log_access(
            EntryKind.ITEM_DOWNLOADED, item_id, actor, reason, fields={"file": name}
        )
        return path

    async def peek(self, item_id: str) -> EvidenceItem:
        """The item's index entry, not logged: for answers about an item the caller has just
        acted on (a hold) or is already reading (the further byte ranges of one download)."""
        item, _ = await self._row(item_id)
        return item

    async def stored_path(self, item_id: str, name: str) -> Path:
        """Where a file lies, not logged (see :meth:`peek`); :meth:`file_path` logs."""
        item, rel_dir = await self._row(item_id)
        if item.file(name) is None:
            raise NotFound(f"item {item_id} has no file {name!r}", item_id=item_id)
        return self.data_dir / rel_dir / name

    async def verify(self, item_id: str) -> IntegrityReport:
        """Recompute file hashes and check the item's inclusion under a fresh signed head.

        Expected hashes come from the logged record, not the index. Never logs.
        """
        item, rel_dir = await self._row(item_id)
        await self._log.refresh()  # the item may have been added by another process
        entry = await self._log.entry(item.leaf_index)
        problems: list[str] = []
        logged: dict[str, Any] = {}
        record_ok = entry is not None and entry.item_id == item_id
        if entry is None or not record_ok:
            problems.append(f"log entry {item.leaf_index} is not this item's record")
        else:
            if leaf_hash(entry.data) != self._log.leaf_hash(item.leaf_index):
                record_ok = False
                problems.append(f"log entry {item.leaf_index} does not match its leaf hash")
            logged = entry.record()
            if logged.get("record") != item.record.to_json():
                record_ok = False
                problems.append("the indexed record differs from the logged record")
        expected = logged.get("files") or [f.to_json() for f in item.files]
        directory = self.data_dir / rel_dir
        checks = await self.run_io(check_files, directory, expected)
        problems.extend(f"file {c.name}: {c.status}" for c in checks if c.status != "ok")
        sth = self._log.tree_head()
        proof = self._log.inclusion_proof(item.leaf_index, sth.tree_size)
        inclusion_ok = entry is not None and verify_inclusion(
            item.leaf_index,
            sth.tree_size,
            leaf_hash(entry.data),
            proof,
            bytes.fromhex(sth.root_hash),
        )
        if not inclusion_ok:
            problems.append("the inclusion proof does not lead to the signed root")
        signature_ok = verify_tree_head(sth, self._key.public_key)
        if not signature_ok:
            problems.append("the tree head signature does not verify")
        ok = record_ok and inclusion_ok and signature_ok and all(c.status == "ok" for c in checks)
        return IntegrityReport(
            item_id=item_id,
            ok=ok,
            files=tuple(checks),
            record_ok=record_ok,
            inclusion_ok=inclusion_ok,
            signature_ok=signature_ok,
            leaf_index=item.leaf_index,
            tree_size=sth.tree_size,
            root_hash=sth.root_hash,
            problems=tuple(problems),
        )

    async def log_entries(self, item_id: str) -> list[LogEntry]:
        """The custody trail of one item, oldest first (kept after deletion)."""
        return await self._log.entries(item_id=item_id)

    def tree_head(self) -> SignedTreeHead:
        """A signed tree head over the log as this process knows it (:meth:`refresh` first to
        include what other processes appended)."""
        return self._log.tree_head()

    async def refresh(self) -> int:
        """Catch up with entries other processes appended to the log; returns its size."""
        return await self._log.refresh()

    def public_key_pem(self) -> str:
        return self._key.public_key_pem()

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def database(self) -> EvidenceDatabase:
        """Where the index, the log and the stamps are kept (``evidence.migrate`` copies them
        from one to another)."""
        return self._db

    @property
    def log(self) -> TransparencyLog:
        return self._log

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return self._log.consistency_proof(old_size, new_size)

    async def proof(self, item_id: str, tree_size: int) -> ItemProof:
        """The item's logged record and audit path in the tree of ``tree_size`` (not logged)."""
        item, rel_dir = await self._row(item_id)
        if item.leaf_index >= self._log.size:
            await self._log.refresh()  # added by another process
        entry = await self._log.entry(item.leaf_index)
        if entry is None:
            raise NotFound(f"log entry {item.leaf_index} is missing", item_id=item_id)
        return ItemProof(
            item=item,
            directory=self.data_dir / rel_dir,
            leaf_data=entry.data,
            leaf_hash=self._log.leaf_hash(item.leaf_index),
            tree_size=tree_size,
            audit_path=tuple(self._log.inclusion_proof(item.leaf_index, tree_size)),
        )

    async def log_view(
        self,
        *,
        actor: str,
        reason: str,
        subject: str,
        what: str,
        fields: Mapping[str, Any] | None = None,
    ) -> LogEntry:
        """Log "live.viewed": ``actor`` saw ``what`` (e.g. a frame id) of ``subject`` (e.g.
        a case), something the archive does not store, so that live media seen by staff
        leaves the same trace as a stored item's view. ``fields`` add details (a display
        name beside the actor); they cannot replace the entry's own keys."""
        if not actor:
            raise InvalidRecord("live.viewed needs an actor")
        if not reason or not reason.strip():
            raise InvalidRecord("live.viewed needs a reason")
        if not subject or not what:
            raise InvalidRecord("live.viewed needs what was seen, and of what")
        body = dict(fields or {})
        body.update(subject=subject, what=what)
        return await self._log.append(
            EntryKind.LIVE_VIEWED, actor=actor, reason=reason, item_id=None, fields=body
        )

    async def record_export(
        self, item_id: str, *, actor: str, reason: str, bundle: str
    ) -> LogEntry:
        """Log "item.exported" (used by :func:`evidence.export_bundle`)."""
        await self._row(item_id)
        return await self._log_access(
            EntryKind.ITEM_EXPORTED, item_id, actor, reason, fields={"bundle": bundle}
        )

    async def record_bundle(
        self,
        name: str,
        *,
        manifest_sha256: str,
        item_ids: Sequence[str],
        tree_size: int,
        actor: str,
        reason: str,
    ) -> LogEntry:
        """Log "bundle.exported" (used by :func:`evidence.export_bundle`): which bundle, the
        SHA-256 of its signed manifest, its items and the tree size its proofs refer to."""
        if not actor:
            raise InvalidRecord("bundle.exported needs an actor")
        return await self._log.append(
            EntryKind.BUNDLE_EXPORTED,
            actor=actor,
            reason=reason,
            item_id=None,
            fields={
                "bundle": name,
                "manifest_sha256": manifest_sha256,
                "items": list(item_ids),
                "tree_size": tree_size,
            },
        )

    def sign_manifest(self, manifest: bytes) -> str:
        """The archive key's signature (base64) over a bundle manifest (see ``signing``)."""
        return self._key.sign_manifest(manifest)

    async def content_credentials(self) -> ContentCredentials:
        """The archive's key as a C2PA signer for :func:`evidence.export_bundle`, under the
        archive's local root (made once in ``data_dir``; bundles carry it as the anchor). An
        operator's certificate instead: ``ContentCredentials.from_files``."""
        return await self.run_io(self._key.content_credentials, self.data_dir)

    # -- outside timestamps (``evidence.stamps``) -----------------------------------------

    async def head_to_stamp(self) -> SignedTreeHead | None:
        """A freshly signed head of the log when it grew since the last stamped head, else
        None: what to ask a time-stamping authority for next."""
        return await self._stamps.head_to_stamp()

    async def add_stamp(
        self,
        sth: SignedTreeHead,
        response: bytes,
        roots: Sequence[x509.Certificate],
        *,
        request: TimeStampRequest | None = None,
    ) -> StampedHead:
        """Keep an authority's RFC 3161 ``response`` for ``sth`` once it checks against
        ``roots``; :class:`InvalidTimestamp` (with the reason, nothing kept) otherwise."""
        return await self._stamps.add(sth, response, roots, request=request)

    async def stamp(
        self, tsa: TimestampAuthority, roots: Sequence[x509.Certificate]
    ) -> StampedHead | None:
        """:meth:`head_to_stamp`, ask ``tsa``, :meth:`add_stamp`: one round of the server's
        stamping loop (None when the log has not grown)."""
        return await self._stamps.stamp(tsa, roots)

    async def stamps(self) -> list[StampedHead]:
        """Every stamped head, smallest tree first."""
        return await self._stamps.all()

    async def stamps_covering(
        self, leaf_indexes: Sequence[int], tree_size: int
    ) -> dict[int, StampedHead]:
        """For each leaf index, the earliest stamped head of at most ``tree_size`` entries that
        contains it; uncovered indexes are left out."""
        return await self._stamps.covering(leaf_indexes, tree_size)

    # -- retention ------------------------------------------------------------------------

    async def hold(self, item_id: str, *, actor: str, reason: str) -> None:
        """Put the item under legal hold: it cannot be deleted until released."""
        await self._set_hold(item_id, True, EntryKind.ITEM_HELD, actor, reason)

    async def release(self, item_id: str, *, actor: str, reason: str) -> None:
        """Lift the legal hold."""
        await self._set_hold(item_id, False, EntryKind.ITEM_RELEASED, actor, reason)

    async def set_retention(
        self, item_id: str, retention_class: str, *, actor: str, reason: str
    ) -> EvidenceItem:
        """Change the item's retention class; retain-until is recounted from when it was added."""
        item, _ = await self._row(item_id)
        until = item.added_at + retention_period(retention_class)

        def update(conn: Connection, _index: int) -> None:
            conn.execute(
                "UPDATE items SET retention_class = ?, retain_until = ? WHERE item_id = ?",
                (retention_class, ms(until), item_id),
            )

        await self._log_access(
            EntryKind.RETENTION_CHANGED,
            item_id,
            actor,
            reason,
            fields={"retention_class": retention_class, "retain_until": format_time(until)},
            index_update=update,
        )
        return (await self._row(item_id))[0]

    async def delete(self, item_id: str, *, actor: str, reason: str) -> None:
        """Delete the files and index row; the log entries stay and "item.deleted" is added.

        Refused while on legal hold (:class:`OnLegalHold`) or before retain-until
        (:class:`RetentionActive`).
        """
        await self._delete(item_id, EntryKind.ITEM_DELETED, actor, reason)

    async def purge_expired(self) -> list[str]:
        """Delete every item past its retain-until that is not on hold; returns their ids."""
        now = int(self._clock() * 1000)

        def read(conn: Connection) -> list[tuple[str, str, int]]:
            return conn.execute(
                "SELECT item_id, retention_class, retain_until FROM items"
                " WHERE retain_until <= ? AND legal_hold = 0 ORDER BY retain_until",
                (now,),
            ).fetchall()

        purged: list[str] = []
        for item_id, retention_class, until in await self._db.run(read):
            reason = f"retention {retention_class} ended {format_time(from_ms(until))}"
            try:
                await self._delete(item_id, EntryKind.ITEM_EXPIRED, SYSTEM_ACTOR, reason)
            except (OnLegalHold, RetentionActive, NotFound):
                continue  # held or changed since the query
            purged.append(item_id)
        return purged

    # -- internals ------------------------------------------------------------------------

    async def _delete(self, item_id: str, kind: EntryKind, actor: str, reason: str) -> None:
        _, rel_dir = await self._row(item_id)
        now = int(self._clock() * 1000)

        def remove(conn: Connection, _index: int) -> None:
            # Checked inside the transaction so a concurrent hold cannot slip between.
            row = conn.execute(
                "SELECT legal_hold, retain_until FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no evidence item {item_id}", item_id=item_id)
            if row[0]:
                raise OnLegalHold(f"item {item_id} is on legal hold", item_id=item_id)
            if now < row[1]:
                until = format_time(from_ms(row[1]))
                raise RetentionActive(f"item {item_id} is retained until {until}", item_id=item_id)
            conn.execute("DELETE FROM items WHERE item_id = ?", (item_id,))

        await self._log_access(kind, item_id, actor, reason, index_update=remove)
        try:
            await self.run_io(_files.remove_tree, self.data_dir / rel_dir)
        except OSError:
            logger.exception("could not remove files of deleted item", extra={"item_id": item_id})

    async def _set_hold(
        self, item_id: str, held: bool, kind: EntryKind, actor: str, reason: str
    ) -> None:
        await self._row(item_id)

        def update(conn: Connection, _index: int) -> None:
            cur = conn.execute(
                "UPDATE items SET legal_hold = ? WHERE item_id = ?", (int(held), item_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no evidence item {item_id}", item_id=item_id)

        await self._log_access(kind, item_id, actor, reason, index_update=update)

    async def _log_access(
        self,
        kind: EntryKind,
        item_id: str,
        actor: str,
        reason: str,
        *,
        fields: dict[str, Any] | None = None,
        index_update: Callable[[Connection, int], None] | None = None,
    ) -> LogEntry:
        if not actor:
            raise InvalidRecord(f"{kind.value} needs an actor")
        if not reason or not reason.strip():
            raise InvalidRecord(f"{kind.value} needs a reason")
        return await self._log.append(
            kind,
            actor=actor,
            reason=reason,
            item_id=item_id,
            fields=fields,
            index_update=index_update,
        )

    async def _row(self, item_id: str) -> tuple[EvidenceItem, str]:
        if not _ITEM_ID.match(item_id):
            raise NotFound(f"no evidence item {item_id!r}", item_id=item_id)

        def read(conn: Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            return row

        row = await self._db.run(read)
        if row is None:
            raise NotFound(f"no evidence item {item_id}", item_id=item_id)
        return item_from_row(row)

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking file work on the archive's IO threads; ENOSPC becomes StorageFull."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._io, fn, *args)
        except OSError as exc:
            if isinstance(exc, EvidenceError):
                raise
            if exc.errno == errno.ENOSPC:
                raise StorageFull("the evidence disk is full") from exc
            raise
