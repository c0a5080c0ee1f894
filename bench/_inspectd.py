"""Running ``inspectd serve`` for the benchmarks: find the command, start a server with its log
in a file, wait until it answers ``/healthz``, read its log's tail, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

__all__ = ["Server", "free_port", "inspectd_command", "spawn", "stop_all"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def inspectd_command() -> str:
    beside = Path(sys.executable).with_name("inspectd")
    found = str(beside) if beside.exists() else shutil.which("inspectd")
    if found is None:
        raise SystemExit("bench: inspectd not found (install the project: make bench)")
    return found


@dataclass(slots=True)
class Server:
    """One ``inspectd serve`` process; ``label`` names it in errors."""

    label: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(
                f"bench: {self.label} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def _give_up(self, wait_s: float) -> None:
        raise SystemExit(f"bench: no /healthz after {wait_s:.0f} s:\n{self.log_tail()}")

    async def wait_healthy(self, client: aiohttp.ClientSession, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                async with client.get(f"{self.base_url}/healthz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                self._give_up(wait_s)
            await asyncio.sleep(0.05)  # polling a process we do not control

    def wait_healthy_blocking(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            self._check_alive()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                self._give_up(wait_s)
            time.sleep(0.05)  # polling a process we do not control


ServerT = TypeVar("ServerT", bound=Server)


def spawn(
    kind: type[ServerT], label: str, env: dict[str, str], log_path: Path, **extra: Any
) -> ServerT:
    """``inspectd serve`` on a free loopback port, its output in ``log_path``, as a ``kind``
    (a :class:`Server`, or a subclass with the ``extra`` fields)."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [inspectd_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return kind(label, f"http://127.0.0.1:{port}", process, log_path, **extra)


def stop_all(servers: Iterable[Server], timeout_s: float) -> None:
    """SIGTERM every server still running, then wait for each (killing it past the timeout)."""
    servers = list(servers)
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
