"""A real PostgreSQL for the tests: ``INSPECT_TEST_POSTGRES_URL`` if set, else the machine's own
at 127.0.0.1:5432 (database ``test``) when it answers, else a throwaway cluster (``initdb`` and
``postgres`` from /usr/lib/postgresql/*/bin) started for the session on a free port. Each test
gets schemas of its own, dropped after it. Tests that need PostgreSQL fail, never skip, when
none of this is possible."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import asyncpg
import pytest

__all__ = [
    "NewSchema",
    "PostgresProcess",
    "create_schema",
    "drop_schemas",
    "new_postgres_schema",
    "postgres_schema",
    "postgres_url",
    "start_postgres",
]

LOCAL = ("127.0.0.1", 5432)
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: The unix user a cluster of our own runs as when the tests run as root (initdb refuses root).
SERVICE_USER = "postgres"

# The SSLRequest packet: any PostgreSQL answers it with one byte, "S" or "N".
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).parent
    raise AssertionError(
        "these tests need PostgreSQL: none answers at 127.0.0.1:5432 and there is no initdb "
        "(install the Debian package postgresql, or set INSPECT_TEST_POSTGRES_URL)"
    )


class PostgresProcess:
    """A cluster of our own in a temporary folder (trust auth, no fsync), on ``port``."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = _bin_dir()
        self.port = port or _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = Path(tempfile.mkdtemp(prefix="test-postgres-"))
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                raise AssertionError(
                    "these tests need PostgreSQL: none answers at 127.0.0.1:5432, and initdb "
                    f"refuses to run as root while there is no {SERVICE_USER!r} user to run it "
                    "as (run the tests as another user, or set INSPECT_TEST_POSTGRES_URL)"
                ) from None
            self._user = SERVICE_USER
            os.chown(self._dir, account.pw_uid, account.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(args, capture_output=True, user=self._user, check=False)

    def start(self, timeout: float = 30.0) -> None:
        data = self._dir / "data"
        if not (data / "PG_VERSION").exists():
            self._init(data)
        self._serve(data, timeout)

    def _init(self, data: Path) -> None:
        done = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise AssertionError(f"initdb failed: {done.stderr.decode(errors='replace')}")

    def _serve(self, data: Path, timeout: float) -> None:
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self._dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
        )
        deadline = time.monotonic() + timeout
        while not _answers("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"postgres did not start on port {self.port}")
            time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server as a restart does ("fast" shutdown, SIGINT: every client is
        disconnected at once), keeping its data for :meth:`start`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # SIGTERM ("smart") waits for clients
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Stop the server and remove its data."""
        self.halt()
        shutil.rmtree(self._dir, ignore_errors=True)


def start_postgres(port: int | None = None) -> PostgresProcess:
    server = PostgresProcess(port)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A DSN of a database the tests may create schemas in (each test in its own)."""
    configured = os.environ.get("INSPECT_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    if _answers(*LOCAL):
        yield LOCAL_URL
        return
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


NewSchema = Callable[[], Awaitable[str]]


async def create_schema(url: str) -> str:
    """A fresh, empty schema (``t_<random>``) in the database at ``url``; its name."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    return name


async def drop_schemas(url: str, names: Iterable[str]) -> None:
    """Drop these schemas and everything in them."""
    conn = await asyncpg.connect(url)
    try:
        for name in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def new_postgres_schema(postgres_url: str) -> AsyncIterator[NewSchema]:
    """``await new_postgres_schema()``: a fresh schema of the test's own, as many as the test
    wants; all dropped (``CASCADE``) after the test."""
    made: list[str] = []

    async def make() -> str:
        made.append(await create_schema(postgres_url))
        return made[-1]

    yield make
    if made:
        await drop_schemas(postgres_url, made)


@pytest.fixture
async def postgres_schema(new_postgres_schema: NewSchema) -> str:
    """One fresh schema of the test's own (its connections set ``search_path`` to it)."""
    return await new_postgres_schema()
