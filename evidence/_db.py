"""The archive's database on one dedicated thread: every call runs there, the event loop never
blocks on it. The archive's SQL is written once, in synchronous functions of a
:class:`Connection` (``?`` placeholders): :class:`Database` runs them on SQLite
(``evidence.db``), :class:`evidence._postgres.PostgresDatabase` on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from evidence.errors import StorageFull

__all__ = ["Connection", "Cursor", "Database", "EvidenceDatabase"]

T = TypeVar("T")


class Cursor(Protocol):
    """What the archive reads of a statement's result (rows are tuples)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def rowcount(self) -> int: ...


class Connection(Protocol):
    """What the archive's SQL functions are given: ``sqlite3.Connection`` or its PostgreSQL
    stand-in, with ``?`` placeholders either way."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class EvidenceDatabase(Protocol):
    """The archive's database: functions of a :class:`Connection` run on its own thread."""

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]: ...

    async def create_schema(self, *, sqlite: str, postgresql: str) -> None:
        """Run the DDL written for this backend (idempotent statements)."""
        ...

    async def run(self, fn: Callable[[Connection], T]) -> T: ...

    async def transaction(self, fn: Callable[[Connection], T], *, exclusive: bool = False) -> T:
        """``fn(conn)`` in one transaction, rolled back on any error; ``exclusive``: one such
        transaction at a time among every process sharing the archive."""
        ...

    async def aclose(self) -> None: ...


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing): one holder among every
    process, and every open of it in this process, at a time. ``None``: no lock."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class Database:
    """SQLite: a single connection owned by a single worker thread. Exclusive transactions
    hold ``lock`` (a file beside the database, :func:`file_lock`) when one is given."""

    backend: Literal["sqlite"] = "sqlite"

    def __init__(
        self, executor: ThreadPoolExecutor, conn: sqlite3.Connection, lock: Path | None = None
    ) -> None:
        self._executor = executor
        self._conn: sqlite3.Connection | None = conn
        self._lock = lock

    @classmethod
    async def open(cls, path: Path, *, lock: Path | None = None) -> Database:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-db")

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # Evidence: a committed entry survives a power cut.
            conn.execute("PRAGMA synchronous=FULL")
            return conn

        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, conn, lock)

    async def create_schema(self, *, sqlite: str, postgresql: str) -> None:
        await self._run(lambda conn: conn.executescript(sqlite))

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` on the database thread."""
        return await self._run(fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the evidence database is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, conn)
        except (sqlite3.Error, OSError) as exc:
            if _is_full(exc):
                raise StorageFull("the evidence disk is full") from exc
            raise

    async def transaction(self, fn: Callable[[Connection], T], *, exclusive: bool = False) -> T:
        """Run ``fn(conn)`` inside BEGIN IMMEDIATE ... COMMIT; roll back on any error. With
        ``exclusive``, all of it holds the database's lock file (:func:`file_lock`)."""

        def wrapped(conn: sqlite3.Connection) -> T:
            with file_lock(self._lock if exclusive else None):
                return transact(conn)

        def transact(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._run(wrapped)

    async def aclose(self) -> None:
        """Close the connection and stop the thread; idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, conn.close)
        finally:
            self._executor.shutdown(wait=True)
