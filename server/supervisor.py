"""``inspectd serve --workers N``: N serving processes on one host, behind one HTTP port.

One media process per core (aiortc's event loop stalls past ~40 streams per process). The
supervisor starts N ``inspectd serve --worker I`` processes; each listens on the same host and
port (``SO_REUSEPORT``: the kernel spreads connections), takes its own slice of
``INSPECT_MEDIA_PORTS`` (ephemeral UDP ports when it is unset: fine on one host without a
firewall) and its own node id, and shares the data directory and Redis with the others (a
WebSocket on one worker reaches a call whose media is on another through Redis). Only worker 0
pulls RTSP cameras and seeds ``--demo``.

The supervisor prepares what every worker would otherwise race to create (database schema,
secret and signing keys, the self-signed certificate), forwards SIGTERM/SIGINT to the workers,
restarts a worker that dies (with a backoff, logged; a worker that exits with status 2, a
configuration error, stops them all), and exits once they have all stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from server.settings import Settings, SettingsError

__all__ = ["Supervisor", "WorkerSpec", "media_port_slices", "parse_workers"]

logger = logging.getLogger("inspectd.supervisor")

#: Exit status of a worker that will not start with these settings (as ``inspectd`` uses it).
CONFIG_ERROR = 2
#: Restart delays: doubling from the first to the last; a worker that ran this long without
#: dying starts again from the first.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
RESTART_RESET_AFTER_S = 60.0


def parse_workers(text: str) -> int:
    """``N`` (1 or more), or ``0`` / ``auto``: one per core."""
    value = text.strip().lower()
    if value in ("0", "auto"):
        return max(1, os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a number of workers or 'auto', got {text!r}") from None
    if count < 0:
        raise ValueError(f"expected a number of workers or 'auto', got {text!r}")
    return count or max(1, os.cpu_count() or 1)


def media_port_slices(ports: range | None, count: int) -> list[str | None]:
    """``INSPECT_MEDIA_PORTS`` split into ``count`` contiguous ``MIN-MAX`` ranges (``None``
    each when unset: ephemeral ports)."""
    if ports is None:
        return [None] * count
    if len(ports) < count:
        raise SettingsError(
            "INSPECT_MEDIA_PORTS",
            f"{len(ports)} ports cannot be split between {count} workers",
        )
    size, extra = divmod(len(ports), count)
    slices: list[str | None] = []
    start = ports.start
    for index in range(count):
        width = size + (1 if index < extra else 0)
        slices.append(f"{start}-{start + width - 1}")
        start += width
    return slices


def check_workers(settings: Settings, count: int) -> None:
    """Refuse what cannot work with ``count`` workers."""
    if count > 1 and not settings.redis_url:
        raise SettingsError(
            "INSPECT_REDIS_URL",
            f"serve --workers {count} needs Redis: the workers share calls, the agent queue "
            "and chat through it (or run --workers 1)",
        )
    if count > 1 and settings.node_id:
        raise SettingsError(
            "INSPECT_NODE_ID", "leave it empty with --workers: each worker names itself"
        )
    media_port_slices(settings.media_port_range, count)


@dataclass(slots=True)
class WorkerSpec:
    """How to start worker ``index``: its command line."""

    index: int
    argv: list[str]


@dataclass(slots=True)
class _Worker:
    spec: WorkerSpec
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    delay_s: float = RESTART_FIRST_S
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs the workers until a stop signal; see the module docstring."""

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        *,
        stop_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = [_Worker(spec) for spec in specs]
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._stopping = asyncio.Event()
        self._config_error = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        """Start every worker and keep them running until :meth:`stop` (SIGTERM/SIGINT);
        returns the exit status for the supervisor."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)
        try:
            await asyncio.gather(*(self._keep(worker) for worker in self._workers))
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        logger.info("all workers stopped")
        return CONFIG_ERROR if self._config_error else 0

    async def _start(self, worker: _Worker) -> None:
        worker.process = await asyncio.create_subprocess_exec(*worker.spec.argv)
        worker.started_at = self._clock()
        logger.info("worker %d started (pid %d)", worker.spec.index, worker.process.pid)

    async def _keep(self, worker: _Worker) -> None:
        while not self._stopping.is_set():
            await self._start(worker)
            process = worker.process
            assert process is not None
            waiter = asyncio.ensure_future(process.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not waiter.done():
                await self._terminate(worker, waiter)
                return
            status = waiter.result()
            worker.exits.append(status)
            if self._stopping.is_set():
                return
            if status == CONFIG_ERROR:
                logger.error(
                    "worker %d exited with status %d (a configuration error): stopping",
                    worker.spec.index,
                    status,
                )
                self._config_error = True
                self.stop()
                return
            ran = self._clock() - worker.started_at
            if ran >= RESTART_RESET_AFTER_S:
                worker.delay_s = RESTART_FIRST_S
            worker.restarts += 1
            logger.warning(
                "worker %d (pid %d) exited with status %d after %.1fs; restarting in %.1fs",
                worker.spec.index,
                process.pid,
                status,
                ran,
                worker.delay_s,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.delay_s):
                    await self._stopping.wait()
            worker.delay_s = min(worker.delay_s * 2, RESTART_MAX_S)

    async def _terminate(self, worker: _Worker, waiter: asyncio.Future[int]) -> None:
        """Forward the stop (SIGTERM: the worker closes its sockets and files its captures),
        then kill a worker that does not stop in time."""
        process = worker.process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await asyncio.shield(waiter)
        except TimeoutError:
            logger.warning("worker %d did not stop in time: killing it", worker.spec.index)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await waiter
        logger.info("worker %d stopped (status %d)", worker.spec.index, waiter.result())


def worker_argv(index: int, flags: Sequence[str]) -> list[str]:
    """The command line of worker ``index``: ``inspectd serve --worker I FLAGS``."""
    return [sys.executable, "-m", "server.cli", "serve", "--worker", str(index), *flags]
