"""Stamped tree heads: signed tree heads an RFC 3161 time-stamping authority has timestamped,
kept beside the log (table ``tree_head_stamps`` of ``evidence.db``) for bundles to carry.

A tree head is stamped with a timestamp of its signed message (``evidence.timestamp``): the
authority vouches that the head, and so every entry under it, existed at the token's time, which
the archive's own clock cannot prove. The archive never talks to the network: the server
implements :class:`TimestampAuthority` (an HTTP POST to ``INSPECT_TSA_URL`` behind its outbound
guard) and calls :meth:`TreeHeadStamps.stamp` on a timer, retrying while the authority is down.
Nothing waits for it: a head left unstamped is covered by the next one stamped, since every
later head contains every earlier entry.

Each stamp kept is also logged as "tree_head.stamped" in the same transaction as its row, so the
custody log says when the archive got which outside time, and a stamp row deleted later is
missed; those entries alone do not ask for another stamp (else every stamp would).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from rfc3161_client import TimeStampRequest

from evidence._db import Connection, EvidenceDatabase
from evidence._index import from_ms
from evidence.errors import InvalidRecord, InvalidTimestamp
from evidence.log import EntryKind, TransparencyLog, canonical_json
from evidence.record import format_time, parse_time
from evidence.signing import SignedTreeHead, SigningKey, verify_tree_head
from evidence.timestamp import Timestamp, TimestampError, request_for, verify_response

__all__ = [
    "STAMP_ACTOR",
    "STAMP_POSTGRES_SCHEMA",
    "STAMP_SCHEMA",
    "StampedHead",
    "TimestampAuthority",
    "TreeHeadStamps",
]

RunIo = Callable[..., Awaitable[Any]]

STAMP_ACTOR = "system:timestamp"

STAMP_SCHEMA = """
CREATE TABLE IF NOT EXISTS tree_head_stamps (
    tree_size INTEGER PRIMARY KEY,
    tree_head TEXT NOT NULL,     -- the signed tree head's JSON, signature included
    response BLOB NOT NULL,      -- the authority's RFC 3161 response (DER), as received
    gen_time TEXT NOT NULL,      -- the token's time (ISO 8601, UTC)
    authority TEXT NOT NULL,     -- the authority's name (RFC 4514)
    stamped_at INTEGER NOT NULL, -- when the archive kept it (ms since the epoch)
    roots TEXT NOT NULL          -- the root certificate(s) it was checked against (PEM)
);
"""
STAMP_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tree_head_stamps (
    tree_size bigint PRIMARY KEY,
    tree_head text NOT NULL,
    response bytea NOT NULL,
    gen_time text NOT NULL,
    authority text NOT NULL,
    stamped_at bigint NOT NULL,
    roots text NOT NULL
);
"""
_COLUMNS = "tree_size, tree_head, response, gen_time, authority, stamped_at, roots"


class TimestampAuthority(Protocol):
    """An RFC 3161 time-stamping authority, as the server reaches it."""

    async def timestamp(self, query: bytes) -> bytes:
        """POST ``query`` (DER, ``application/timestamp-query``) and return the reply's body;
        raise when no reply came (down, refused, timed out): the caller tries again later."""
        ...


@dataclass(frozen=True, slots=True)
class StampedHead:
    """A signed tree head with the authority's timestamp of its signed message."""

    tree_head: SignedTreeHead
    response: bytes
    gen_time: datetime
    authority: str
    stamped_at: datetime
    #: The authority's root certificate(s) the response was checked against (PEM): kept with
    #: it, so a bundle still carries the right root after the operator changes authority.
    roots_pem: bytes

    @property
    def tree_size(self) -> int:
        return self.tree_head.tree_size


class _AlreadyStamped(Exception):
    """Another process kept a stamp of this tree size first."""


def _row(row: tuple[Any, ...]) -> StampedHead:
    _size, head, response, gen_time, authority, stamped_at, roots = row
    return StampedHead(
        tree_head=SignedTreeHead.from_json(json.loads(head)),
        response=bytes(response),
        gen_time=parse_time(gen_time),
        authority=authority,
        stamped_at=from_ms(stamped_at),
        roots_pem=roots.encode(),
    )


def _pem(roots: Sequence[x509.Certificate]) -> bytes:
    unique = {root.fingerprint(hashes.SHA256()): root for root in roots}
    return b"".join(root.public_bytes(serialization.Encoding.PEM) for root in unique.values())


class TreeHeadStamps:
    """The stamped heads of one archive's log (see the module docstring); the archive creates
    the table (:data:`STAMP_SCHEMA`) when it opens."""

    def __init__(self, db: EvidenceDatabase, log: TransparencyLog, key: SigningKey, run_io: RunIo):
        self._db = db
        self._log = log
        self._key = key
        self._run_io = run_io

    async def head_to_stamp(self) -> SignedTreeHead | None:
        """A freshly signed head of the whole log when it has grown since the last stamped
        head (by more than "tree_head.stamped" entries), else None."""
        size = await self._log.refresh()

        def last(conn: Connection) -> int:
            row = conn.execute("SELECT MAX(tree_size) FROM tree_head_stamps").fetchone()
            return int(row[0] or 0)

        stamped = await self._db.run(last)
        if size <= stamped:
            return None
        if not await self._log.grew(stamped, size, besides=EntryKind.TREE_HEAD_STAMPED):
            return None
        return self._log.tree_head(size)

    async def add(
        self,
        sth: SignedTreeHead,
        response: bytes,
        roots: Sequence[x509.Certificate],
        *,
        request: TimeStampRequest | None = None,
    ) -> StampedHead:
        """Keep ``response`` as the timestamp of ``sth`` (a head of this log, signed by this
        archive) once it checks against ``roots`` (and ``request``'s nonce), logging
        "tree_head.stamped". A response that does not check raises :class:`InvalidTimestamp`
        with the reason, and nothing is kept. A size stamped already keeps its first stamp,
        which is returned."""
        await self._check_head(sth)
        check = functools.partial(verify_response, request=request)
        try:
            stamp: Timestamp = await self._run_io(check, response, sth.signed_message(), roots)
        except TimestampError as exc:
            raise InvalidTimestamp(
                f"the timestamp of tree head {sth.tree_size} is refused: {exc}"
            ) from None
        stamped_at = self._log.now_ms()
        kept = StampedHead(
            tree_head=sth,
            response=response,
            gen_time=stamp.gen_time,
            authority=stamp.authority,
            stamped_at=from_ms(stamped_at),
            roots_pem=_pem(roots),
        )

        def insert(conn: Connection, _index: int) -> None:
            # Under the log's lock: of two processes stamping one size, the second stops here
            # and its log entry is rolled back with this transaction.
            found = conn.execute(
                "SELECT 1 FROM tree_head_stamps WHERE tree_size = ?", (sth.tree_size,)
            ).fetchone()
            if found is not None:
                raise _AlreadyStamped
            conn.execute(
                f"INSERT INTO tree_head_stamps ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sth.tree_size,
                    canonical_json(sth.to_json()).decode(),
                    response,
                    format_time(kept.gen_time),
                    kept.authority,
                    stamped_at,
                    kept.roots_pem.decode(),
                ),
            )

        try:
            await self._log.append(
                EntryKind.TREE_HEAD_STAMPED,
                actor=STAMP_ACTOR,
                reason="RFC 3161 timestamp of a signed tree head",
                item_id=None,
                timestamp=stamped_at,
                fields={
                    "tree_size": sth.tree_size,
                    "root_hash": sth.root_hash,
                    "gen_time": format_time(kept.gen_time),
                    "authority": kept.authority,
                    "serial": stamp.serial,
                    "response_sha256": hashlib.sha256(response).hexdigest(),
                },
                index_update=insert,
            )
        except _AlreadyStamped:
            first = await self._get(sth.tree_size)
            assert first is not None  # rows are never deleted
            return first
        return kept

    async def stamp(
        self, tsa: TimestampAuthority, roots: Sequence[x509.Certificate]
    ) -> StampedHead | None:
        """Stamp the log's head if it has grown since the last stamp (None when it has not):
        the request to ``tsa``, the check of its answer, the stamp kept and logged. Raises what
        ``tsa`` raises when it does not answer, :class:`InvalidTimestamp` when it answers
        wrong; either way nothing is kept and a later call stamps a later head."""
        sth = await self.head_to_stamp()
        if sth is None:
            return None
        request = request_for(sth.signed_message())
        response = await tsa.timestamp(request.as_bytes())
        return await self.add(sth, response, roots, request=request)

    async def all(self) -> list[StampedHead]:
        """Every stamped head, smallest tree first."""

        def read(conn: Connection) -> list[StampedHead]:
            sql = f"SELECT {_COLUMNS} FROM tree_head_stamps ORDER BY tree_size"
            return [_row(row) for row in conn.execute(sql)]

        return await self._db.run(read)

    async def covering(self, leaf_indexes: Sequence[int], tree_size: int) -> dict[int, StampedHead]:
        """For each leaf index, the earliest stamped head that contains it (its tree size is
        larger) among the heads of at most ``tree_size``; indexes no such head covers are left
        out."""

        def read(conn: Connection) -> dict[int, StampedHead]:
            found: dict[int, StampedHead] = {}
            for index in set(leaf_indexes):
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM tree_head_stamps WHERE tree_size > ?"
                    " AND tree_size <= ? ORDER BY tree_size LIMIT 1",
                    (index, tree_size),
                ).fetchone()
                if row is not None:
                    found[index] = _row(row)
            return found

        return await self._db.run(read)

    async def _get(self, tree_size: int) -> StampedHead | None:
        def read(conn: Connection) -> StampedHead | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM tree_head_stamps WHERE tree_size = ?", (tree_size,)
            ).fetchone()
            return None if row is None else _row(row)

        return await self._db.run(read)

    async def _check_head(self, sth: SignedTreeHead) -> None:
        """``sth`` is this archive's signature over a prefix of its own log."""
        if not verify_tree_head(sth, self._key.public_key):
            raise InvalidRecord(
                f"tree head {sth.tree_size} is not signed by this archive's key {self._key.key_id}"
            )
        size = self._log.size
        if sth.tree_size > size:
            size = await self._log.refresh()
        if not 0 < sth.tree_size <= size or self._log.root(sth.tree_size).hex() != sth.root_hash:
            raise InvalidRecord(f"tree head {sth.tree_size} is not a head of this archive's log")
