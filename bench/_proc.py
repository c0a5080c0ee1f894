"""What the benchmarks read about the machine from ``/proc``: the CPU model, a process's CPU
time and memory, the whole machine's busy time, and a wait for the machine to be quiet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from pathlib import Path

__all__ = [
    "cpu_model",
    "machine_busy_s",
    "machine_cpu_s",
    "process_cpu_s",
    "process_rss_mb",
    "wait_quiet",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/<pid>/stat``).

    Raises :class:`OSError` when the process has gone: a measured process that vanished is a
    failed run, and reading it as 0 s would turn into a negative CPU share instead."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (0 when it has gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    total = sum(values)
    return (total - idle) / CLK_TCK, total / CLK_TCK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine, all cores."""
    return machine_cpu_s()[0]


async def wait_quiet(limit_s: float, busy_pct: float, interval_s: float = 0.5) -> float:
    """Wait (at most ``limit_s``) until the machine uses under ``busy_pct`` % of one core, so
    that another workload does not land in a measured window; returns the last busy share."""
    deadline = time.monotonic() + limit_s
    while True:
        before, t0 = machine_busy_s(), time.monotonic()
        await asyncio.sleep(interval_s)
        busy = 100 * (machine_busy_s() - before) / (time.monotonic() - t0)
        if busy < busy_pct or time.monotonic() >= deadline:
            return busy
