"""PostgreSQL storage: an asyncpg pool bound to one schema (``search_path``), the schema of the
stores (``schema/*.sql``, one file per domain), and its migrations.

The schema shares SQLite's history: ``schema_version`` holds the same numbers as
:data:`server.storage.sqlite.database.SCHEMA_VERSION`, so one version names one set of tables on
either backend. The PostgreSQL schema starts at :data:`BASE_VERSION`; every later version needs
its entry in :data:`_MIGRATIONS`, and a start refuses a database newer than this code.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..database import SchemaTooNew, StorageUnavailable
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

#: Waits between attempts to reach a database that dropped the connection or refused a new
#: one (a restart, a failover): about three seconds in all, then StorageUnavailable.
_RECONNECT_DELAYS_S = (0.1, 0.3, 0.6, 1.0, 1.0)

#: What a lost or refused connection raises: the statement did not run, or its transaction
#: was rolled back by the server (a COMMIT whose answer was lost is the exception).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: The schema, one file per domain in ``schema/`` (run in name order at every start; each
#: statement is idempotent, so a store ported later finds its tables in an older database).
_SCHEMA_DIR = Path(__file__).with_name("schema")


def schema_sql() -> str:
    """Every domain's DDL, in file name order."""
    files = sorted(_SCHEMA_DIR.glob("*.sql"))
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


#: Changes to databases made by an earlier version, by the version they lead to (every version
#: after BASE_VERSION up to SCHEMA_VERSION must be here, even as an empty tuple).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 8: the outbox's delivery leases, which the PostgreSQL schema had from the start.
    8: (),
}


def _status_count(status: str) -> int:
    """The row count of a command status (``"UPDATE 3"``, ``"INSERT 0 1"``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


async def _migrate(conn: Connection, supported: int) -> None:
    """Create or bring the schema up to ``supported``, inside the caller's transaction."""
    await conn.execute(schema_sql())
    found = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    version = int(found)
    if version > supported:
        raise SchemaTooNew("the PostgreSQL database", version, supported)
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

    backend = "postgresql"

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
        serialization check, or if the connection was lost (the server restarting), so ``fn``
        must be safe to repeat. :class:`StorageUnavailable` once the database stays away."""
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                return await self._reconnecting(lambda: self._transaction_once(fn))
            except (
                asyncpg.exceptions.DeadlockDetectedError,
                asyncpg.exceptions.SerializationError,
            ):
                if attempt == _TRANSACTION_ATTEMPTS:
                    raise
                logger.info("transaction aborted by the server (attempt %d); retrying", attempt)
        raise AssertionError("unreachable")

    async def _reconnecting(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, again after a lost or refused connection (the pool opens a new
        one), until the delays run out: then :class:`StorageUnavailable`."""
        for delay in (*_RECONNECT_DELAYS_S, None):
            try:
                return await call()
            except _CONNECTION_ERRORS as exc:
                if self._closed:
                    raise
                if delay is None:
                    raise StorageUnavailable(
                        f"the PostgreSQL database cannot be reached ({type(exc).__name__}:"
                        f" {exc}); the change was not made: try again"
                    ) from exc
                logger.warning("PostgreSQL connection lost (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit); returns the number of rows it changed."""
        status: str = await self._reconnecting(lambda: self._live().execute(sql, *params))
        return _status_count(status)

    async def fetchrow(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._reconnecting(
            lambda: self._live().fetchrow(sql, *params)
        )
        return row

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._reconnecting(
            lambda: self._live().fetch(sql, *params)
        )
        return rows

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._reconnecting(lambda: self._live().fetchval(sql, *params))

    async def ping(self) -> bool:
        """True if the database answers a trivial query (for ``/healthz``), at once: no
        retries, so a probe learns of an outage while it lasts."""
        try:
            return bool(await self._live().fetchval("SELECT 1", timeout=2.0) == 1)
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError, RuntimeError, TimeoutError):
            logger.exception("database ping failed")
            return False

    async def aclose(self) -> None:
        """Close the pool (waiting for connections in use to be released). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()
