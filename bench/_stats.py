"""What the benchmarks share: percentiles and an event-loop lag probe."""

from __future__ import annotations

import asyncio

__all__ = ["LAG_INTERVAL_S", "LagProbe", "percentile"]

#: How often the lag probe wakes up; lag is how late it wakes.
LAG_INTERVAL_S = 0.010


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class LagProbe:
    """How late the event loop runs a 10 ms timer (ms), like a loop-lag monitor does."""

    def __init__(self, name: str = "bench-lag-probe") -> None:
        self.samples: list[float] = []
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_INTERVAL_S
            await asyncio.sleep(LAG_INTERVAL_S)
            self.samples.append(max(0.0, (loop.time() - due) * 1000))

    def take(self) -> dict[str, float]:
        """p50, p99 and max of the samples since the last call (which clears them)."""
        samples, self.samples = sorted(self.samples), []
        if not samples:
            return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}

        def at(q: float) -> float:
            return samples[min(len(samples) - 1, int(q / 100 * len(samples)))]

        return {"n": len(samples), "p50": at(50), "p99": at(99), "max": samples[-1]}

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
