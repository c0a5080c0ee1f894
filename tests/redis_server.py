"""A real Redis for the tests: the machine's own at 127.0.0.1:6379 when it answers, else a
``redis-server`` started for the session. Tests that need Redis fail, never skip, when neither
is possible."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

__all__ = ["RedisProcess", "free_port", "redis_url", "start_redis"]

LOCAL = ("127.0.0.1", 6379)


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A ``redis-server`` of our own on ``port`` (nothing kept on disk); can be restarted."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError(
                "these tests need Redis: none answers at 127.0.0.1:6379 and there is no "
                "redis-server binary (install the Debian package redis-server)"
            )
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="test-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _answers("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_redis(port: int | None = None) -> RedisProcess:
    server = RedisProcess(port)
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL for tests that share a server (use your own key prefix per test)."""
    configured = os.environ.get("INSPECT_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if _answers(*LOCAL):
        yield f"redis://{LOCAL[0]}:{LOCAL[1]}/0"
        return
    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()
