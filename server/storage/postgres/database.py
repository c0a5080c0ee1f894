"""PostgreSQL storage: an asyncpg pool bound to one schema (``search_path``), the schema of the
stores ported so far, and its migrations.

The schema shares SQLite's history: ``schema_version`` holds the same numbers as
:data:`server.storage.sqlite.database.SCHEMA_VERSION`, so one version names one set of tables on
either backend. The PostgreSQL schema starts at :data:`BASE_VERSION`; every later version needs
its entry in :data:`_MIGRATIONS`, and a start refuses a database newer than this code.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..sqlite.database import SCHEMA_VERSION

__all__ = ["BASE_VERSION", "SCHEMA_VERSION", "Connection", "PostgresDatabase", "SchemaTooNew"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a transaction's function is given: a connection of the pool, in the transaction.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

#: The version the PostgreSQL schema below was first written at.
BASE_VERSION = 7

#: How many times a transaction that lost a deadlock or a serialization check is run again.
_TRANSACTION_ATTEMPTS = 5

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Every statement is idempotent: the script runs at each start, so a table added here for a
# newly ported store appears in databases made before it (as SQLite's CREATE IF NOT EXISTS).
# Types: times are double precision (seconds since the epoch, as SQLite's REAL), money is
# decimal text (never a float at rest), JSON is the text the store wrote (read back exactly).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id                 text PRIMARY KEY,
    -- Creation order, for ties of created_at (SQLite's rowid).
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind               text NOT NULL,
    state              text NOT NULL,
    customer_name      text NOT NULL,
    customer_contact   text,
    order_id           text,
    sku                text,
    reason             text,
    tracking_number    text,
    unit_id            text,
    carrier            text,
    shipped_at         double precision,
    delivered_at       double precision,
    customer_locale    text,
    customer_time_zone text,
    claimed_reason     text,
    verified_reason    text,
    category           text,
    order_value        text,
    order_currency     text,
    country            text,
    intake             text,
    refund_state       text NOT NULL DEFAULT 'none',
    disposition        text,
    approval           text,
    final_grade        text,
    agent_id           text,
    decision           text,
    refund_amount      text,
    currency           text,
    facts              text,
    note               text,
    outcome            text,
    resolution_note    text,
    grading            text,
    created_at         double precision NOT NULL,
    waiting_at         double precision,
    in_call_at         double precision,
    decided_at         double precision,
    closed_at          double precision,
    updated_at         double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_state ON cases (state, created_at, seq);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at, seq);
CREATE INDEX IF NOT EXISTS cases_order ON cases (order_id);
CREATE INDEX IF NOT EXISTS cases_tracking ON cases (tracking_number);
CREATE INDEX IF NOT EXISTS cases_contact ON cases (customer_contact, created_at);
CREATE INDEX IF NOT EXISTS cases_returns ON cases (kind, created_at, seq);
CREATE TABLE IF NOT EXISTS case_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id   text NOT NULL REFERENCES cases (id),
    at        double precision NOT NULL,
    type      text NOT NULL,
    actor     text NOT NULL,
    data      text NOT NULL,
    dedup_key text,
    UNIQUE (case_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, id);
CREATE TABLE IF NOT EXISTS webhooks (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL,
    created_by text,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     text NOT NULL UNIQUE,
    event_id        text NOT NULL,
    event           text NOT NULL,
    case_id         text NOT NULL,
    webhook_id      text,
    url             text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    last_error      text,
    created_at      double precision NOT NULL,
    finished_at     double precision,
    -- Until when a node holds this delivery (PostgresWebhookStore.claim_due); NULL: nobody.
    claimed_until   double precision
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (webhook_id, url, case_id, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_finished ON webhook_outbox (finished_at)
    WHERE status <> 'pending';
"""

#: Changes to databases made by an earlier version, by the version they lead to (every version
#: after BASE_VERSION up to SCHEMA_VERSION must be here, even as an empty tuple).
_MIGRATIONS: dict[int, tuple[str, ...]] = {}


class SchemaTooNew(RuntimeError):
    """The database was made by a newer version of the program than this one."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the PostgreSQL database is at schema version {found}, newer than this program's "
            f"{supported}: run the newer version (or restore a backup made for this one)"
        )
        self.found = found
        self.supported = supported


def _status_count(status: str) -> int:
    """The row count of a command status (``"UPDATE 3"``, ``"INSERT 0 1"``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


async def _migrate(conn: Connection, supported: int) -> None:
    """Create or bring the schema up to ``supported``, inside the caller's transaction."""
    await conn.execute(_SCHEMA)
    found = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    version = int(found)
    if version > supported:
        raise SchemaTooNew(version, supported)
    if version == supported:
        return
    # A new database is the base schema; an older one has what it had.
    start = max(version, BASE_VERSION)
    for target in range(start + 1, supported + 1):
        if target not in _MIGRATIONS:
            raise RuntimeError(f"the PostgreSQL backend has no migration to schema {target}")
        for statement in _MIGRATIONS[target]:
            await conn.execute(statement)
        logger.info("database migrated to schema %d", target)
    await conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)"
        " ON CONFLICT (version) DO NOTHING",
        supported,
        time.time(),
    )


class PostgresDatabase:
    """An asyncpg pool whose connections all use one schema. :meth:`transaction` runs a
    function in a transaction on one connection, again if PostgreSQL chose it as a deadlock's
    or a serialization failure's victim."""

    def __init__(self, pool: asyncpg.Pool, schema: str | None) -> None:
        self._pool = pool
        self.schema = schema
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        supported_version: int = SCHEMA_VERSION,
    ) -> PostgresDatabase:
        """Connect, creating ``schema`` (a plain lower-case identifier; ``None``: the server's
        ``search_path``) and its tables if needed; :class:`SchemaTooNew` if the database was
        made by a newer version."""
        settings: dict[str, str] = {}
        if schema is not None:
            if not _IDENTIFIER.match(schema):
                raise ValueError(f"not a plain schema name: {schema!r}")
            # Created before the pool, whose connections name it in their search_path.
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            finally:
                await conn.close()
            settings["search_path"] = schema
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, server_settings=settings
        )
        db = cls(pool, schema)
        try:
            await db._transaction_once(db._setup(supported_version))
        except BaseException:
            await pool.close()
            raise
        logger.info("PostgreSQL database open (schema %s)", schema or "default")
        return db

    @staticmethod
    def _setup(supported: int) -> Callable[[Connection], Awaitable[None]]:
        async def work(conn: Connection) -> None:
            # Two nodes starting at once: one migrates, the other waits and finds it done.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            await _migrate(conn, supported)

        return work

    def _live(self) -> asyncpg.Pool:
        if self._closed:
            raise RuntimeError("database is closed")
        return self._pool

    async def _transaction_once(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        async with self._live().acquire() as conn, conn.transaction():
            return await fn(conn)

    async def transaction(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """``await fn(connection)`` inside ``BEGIN`` ... ``COMMIT`` (rolled back if it raises);
        run again, up to a few times, if PostgreSQL aborted it for a deadlock or a failed
        serialization check, so ``fn`` must be safe to repeat."""
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                return await self._transaction_once(fn)
            except (
                asyncpg.exceptions.DeadlockDetectedError,
                asyncpg.exceptions.SerializationError,
            ):
                if attempt == _TRANSACTION_ATTEMPTS:
                    raise
                logger.info("transaction aborted by the server (attempt %d); retrying", attempt)
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit); returns the number of rows it changed."""
        status: str = await self._live().execute(sql, *params)
        return _status_count(status)

    async def fetchrow(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._live().fetchrow(sql, *params)
        return row

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._live().fetch(sql, *params)
        return rows

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._live().fetchval(sql, *params)

    async def ping(self) -> bool:
        """True if the database answers a trivial query (for ``/healthz``)."""
        try:
            return bool(await self.fetchval("SELECT 1") == 1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError):
            logger.exception("database ping failed")
            return False

    async def aclose(self) -> None:
        """Close the pool (waiting for connections in use to be released). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()
