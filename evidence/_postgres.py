"""The archive's database on PostgreSQL: one psycopg connection on the archive's own thread,
running the same synchronous SQL functions as SQLite does (``?`` placeholders are rewritten
for psycopg), so the index, the log and the stamps have one implementation.

Exclusive transactions (every log append) take a transaction-scoped advisory lock, so the
nodes sharing the database append one after another and the log never forks, with no file
lock on the shared volume. A connection lost (PostgreSQL restarted, a failover) is opened
again and the function run again, for about three seconds; then :class:`ArchiveUnavailable`.
A transaction that failed was rolled back by the server, so running it again is safe.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import psycopg

from evidence._db import Connection, Cursor
from evidence.errors import ArchiveUnavailable

__all__ = ["APPLICATION_NAME", "PostgresDatabase"]

#: How the archive's sessions are named in ``pg_stat_activity``.
APPLICATION_NAME = "inspectd-evidence"

logger = logging.getLogger(__name__)

T = TypeVar("T")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Waits between attempts to reach the database again.
_RECONNECT_DELAYS_S = (0.1, 0.3, 0.6, 1.0, 1.0)
#: One lock for every node's appends to this schema's log.
_APPEND_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.evidence_log'))"


class _Connection:
    """A psycopg connection seen as the archive's :class:`Connection`."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        # The archive's SQL has no literal '%' or '?' beyond its placeholders.
        statement = sql.replace("%", "%%").replace("?", "%s")
        cursor: Cursor = self._conn.execute(statement, tuple(parameters))
        return cursor


class PostgresDatabase:
    """:class:`evidence._db.EvidenceDatabase` on PostgreSQL."""

    backend: Literal["postgresql"] = "postgresql"

    def __init__(self, executor: ThreadPoolExecutor, dsn: str, schema: str | None) -> None:
        self._executor = executor
        self._dsn = dsn
        self._schema = schema
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, *, schema: str | None = None) -> PostgresDatabase:
        if schema is not None and not _IDENTIFIER.match(schema):
            raise ValueError(f"not a plain schema name: {schema!r}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-pg")
        db = cls(executor, dsn, schema)
        try:
            await db._call(lambda conn: None)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return db

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
        )
        if self._schema is not None:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
            conn.execute(f"SET search_path TO {self._schema}")
        return conn

    def _with_connection(self, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """On the database thread: ``fn(connection)``, again on a new connection after a lost
        one, until the delays run out."""
        for delay in (*_RECONNECT_DELAYS_S, None):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                return fn(self._conn)
            except psycopg.OperationalError as exc:
                lost = self._conn is None or self._conn.closed or self._conn.broken
                if not lost:
                    raise
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if delay is None or self._closed:
                    raise ArchiveUnavailable(
                        f"the evidence database cannot be reached ({exc}); nothing was changed:"
                        " try again"
                    ) from exc
                logger.warning("evidence database connection lost (%s); retrying", exc)
                time.sleep(delay)
        raise AssertionError("unreachable")

    async def _call(self, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        if self._closed:
            raise RuntimeError("the evidence database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._with_connection, fn)

    async def create_schema(self, *, sqlite: str, postgresql: str) -> None:
        def create(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            with conn.transaction():
                # Two nodes starting at once: one creates, the other finds it done.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
                for statement in _statements(postgresql):
                    conn.execute(statement)

        await self._call(create)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        return await self._call(lambda conn: fn(_Connection(conn)))

    async def transaction(self, fn: Callable[[Connection], T], *, exclusive: bool = False) -> T:
        def transact(conn: psycopg.Connection[tuple[Any, ...]]) -> T:
            with conn.transaction():
                if exclusive:
                    conn.execute(_APPEND_LOCK)
                return fn(_Connection(conn))

        return await self._call(transact)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await loop.run_in_executor(self._executor, close)
        finally:
            self._executor.shutdown(wait=True)


def _statements(script: str) -> Iterator[str]:
    """The statements of a DDL script (no semicolons inside them), without ``--`` comments."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
