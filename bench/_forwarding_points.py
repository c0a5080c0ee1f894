"""The measured points of ``bench/forwarding.py``: a load point (CPU, delivery and loop lag of
N publisher+subscriber pairs), a latency point (one stream, time drawn into the frames), and
the capacity search over load points."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av

from bench._forwarding_clients import (
    TIME_WRAP,
    Clip,
    ClipTrack,
    ClockTrack,
    Pair,
    Profile,
    Publisher,
    Subscriber,
    close_pairs,
    connect_pairs,
    now_ms,
    read_ms,
)
from bench._forwarding_server import RunFailed, ServerProcess
from bench._proc import machine_busy_s, machine_cpu_s, process_cpu_s, process_rss_mb, wait_quiet
from bench._stats import LagProbe, percentile

__all__ = [
    "CPU_LIMIT",
    "DELIVERY_MIN",
    "MODES",
    "NOISE_PCT",
    "Capacity",
    "LatencyPoint",
    "LoadPoint",
    "Timing",
    "find_capacity",
    "run_latency",
    "run_load",
]

CPU_LIMIT = 70.0  # % of one core, for capacity
DELIVERY_MIN = 0.95
NOISE_PCT = 20.0  # other load (% of one core) above which a point is flagged
#: Bench names of the server modes: this engine, the same while grading, aiortc MediaRelay.
MODES = {"forwarder": "engine", "grading": "grading", "baseline": "relay"}
MODES_BY_SERVER = {server: name for name, server in MODES.items()}


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a point warms up and measures, waits to connect and for a quiet machine."""

    warmup: float
    seconds: float
    connect_s: float
    quiet_s: float


# -- load points ---------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadPoint:
    mode: str
    profile: str
    streams: int
    seconds: float = 0.0
    server_cpu_pct: float = 0.0  # % of one core, whole server process
    per_stream_pct: float = 0.0
    pub_fps: float = 0.0
    pub_keyframes_per_s: float = 0.0  # keyframes each publisher sent (the clip's, and on PLI)
    sub_fps_mean: float = 0.0
    sub_fps_min: float = 0.0
    delivered_mean: float = 0.0
    delivered_min: float = 0.0
    server_lag_ms: dict[str, float] = field(default_factory=dict)
    client_cpu_pct: float = 0.0
    client_lag_ms: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0  # % of all cores
    other_cpu_pct: float = 0.0  # % of one core used by neither the server nor the clients
    server_rss_mb: float = 0.0
    sampled_fps: float = 0.0  # frames per second per stream the grading sink got
    error: str | None = None

    @property
    def passes(self) -> bool:
        return (
            self.error is None
            and self.server_cpu_pct < CPU_LIMIT
            and self.delivered_min >= DELIVERY_MIN
        )

    @property
    def client_limited(self) -> bool:
        """Whether the clients, not the server, may have been the limit."""
        return self.client_cpu_pct > 90 or self.machine_busy_pct > 95

    @property
    def noisy(self) -> bool:
        """Whether something else on the machine took a noticeable share meanwhile."""
        return self.other_cpu_pct > NOISE_PCT

    def failure(self) -> str:
        """Why the point does not count for capacity ('' if it does)."""
        if self.error is not None:
            return f"failed to run: {self.error.splitlines()[0]}"
        if self.server_cpu_pct >= CPU_LIMIT:
            return f"server CPU {self.server_cpu_pct:.0f}%"
        if self.delivered_min < DELIVERY_MIN:
            why = f"a subscriber got {100 * self.delivered_min:.0f}% of its frames"
            if self.client_limited:
                why += (
                    f" while the machine was saturated ({self.machine_busy_pct:.0f}% of all"
                    f" cores; clients {self.client_cpu_pct:.0f}%, other load"
                    f" {self.other_cpu_pct:.0f}% of a core): not the server's limit alone"
                )
            elif self.noisy:
                why += f" (other load {self.other_cpu_pct:.0f}% of a core)"
            return why
        return ""


async def run_load(mode: str, clip: Clip, streams: int, timing: Timing) -> LoadPoint:
    point = LoadPoint(MODES_BY_SERVER[mode], clip.profile.name, streams)
    server = ServerProcess(mode)
    probe = LagProbe()
    pairs: list[Pair] = []
    try:
        await wait_quiet(timing.quiet_s, NOISE_PCT)
        await server.start()
        probe.start()
        fps = clip.profile.fps
        tracks = [ClipTrack(clip, phase=(i * 0.618034 % 1) / fps) for i in range(streams)]
        pairs = await connect_pairs(
            server, tracks, [Subscriber() for _ in range(streams)], timing.connect_s
        )
        await asyncio.sleep(timing.warmup)  # bitrate estimates and queues settle

        await server.lag()
        probe.take()
        sampled0 = await server.sampled()
        sent0 = [p.publisher.sent for p in pairs]
        got0 = [p.subscriber.frames for p in pairs]
        keyframes0 = sum(t.keyframes for t in tracks)
        server0, client0, machine0 = (
            process_cpu_s(server.pid),
            process_cpu_s(os.getpid()),
            machine_cpu_s(),
        )
        t0 = time.monotonic()
        await asyncio.sleep(timing.seconds)
        elapsed = time.monotonic() - t0
        server1, client1, machine1 = (
            process_cpu_s(server.pid),
            process_cpu_s(os.getpid()),
            machine_cpu_s(),
        )
        keyframes = sum(t.keyframes for t in tracks) - keyframes0
        sent = [p.publisher.sent - s for p, s in zip(pairs, sent0, strict=True)]
        got = [p.subscriber.frames - g for p, g in zip(pairs, got0, strict=True)]
        point.server_lag_ms = await server.lag()
        point.client_lag_ms = probe.take()
        point.server_rss_mb = process_rss_mb(server.pid)
        sampled = await server.sampled() - sampled0
        if mode == "grading" and streams and not sampled:
            raise RunFailed("the grading sink got no frame")
    except RunFailed as exc:
        point.error = str(exc)
        return point
    finally:
        await probe.aclose()
        await close_pairs(pairs)
        await server.aclose()

    point.seconds = elapsed
    point.server_cpu_pct = 100 * (server1 - server0) / elapsed
    point.per_stream_pct = point.server_cpu_pct / max(streams, 1)
    point.sampled_fps = sampled / max(streams, 1) / elapsed
    point.client_cpu_pct = 100 * (client1 - client0) / elapsed
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    point.machine_busy_pct = 100 * busy / total if total else 0.0
    ours = (server1 - server0) + (client1 - client0)
    point.other_cpu_pct = max(0.0, 100 * (busy - ours) / elapsed)
    if streams:
        point.pub_fps = sum(sent) / streams / elapsed
        point.pub_keyframes_per_s = keyframes / streams / elapsed
        rates = [g / elapsed for g in got]
        point.sub_fps_mean = sum(rates) / streams
        point.sub_fps_min = min(rates)
        ratios = [min(1.0, g / s) if s else 0.0 for g, s in zip(got, sent, strict=True)]
        point.delivered_mean = sum(ratios) / streams
        point.delivered_min = min(ratios)
    return point


# -- latency -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LatencyPoint:
    path: str  # "engine" or "direct"
    profile: str
    subscriber: str  # "aiortc": frame complete when the next starts; "marker": at its marker
    samples: int = 0
    unreadable: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    other_cpu_pct: float = 0.0  # % of one core used by anything but this bench and its server
    error: str | None = None


async def run_latency(
    path: str,
    profile: Profile,
    subscriber_rule: str,
    timing: Timing,
) -> LatencyPoint:
    connect_s = timing.connect_s
    point = LatencyPoint(path, profile.name, subscriber_rule)
    samples: list[float] = []
    recording = False

    def on_frame(frame: av.VideoFrame) -> None:
        arrived = now_ms()
        drawn = read_ms(frame)
        if not recording:
            return
        if drawn is None:
            point.unreadable += 1
        else:
            samples.append((arrived - drawn) % TIME_WRAP)

    publisher = Publisher(ClockTrack(profile))
    subscriber = Subscriber(on_frame, on_marker=subscriber_rule == "marker")
    server = ServerProcess("engine") if path == "engine" else None
    pairs: list[Pair] = []
    try:
        await wait_quiet(timing.quiet_s, NOISE_PCT)
        if server is not None:
            await server.start()
            pairs = await connect_pairs(server, [publisher.track], [subscriber], connect_s)
        else:
            pairs = [Pair(publisher, subscriber)]
            async with asyncio.timeout(connect_s):
                await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
                await subscriber.pc.setRemoteDescription(publisher.pc.localDescription)
                await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
                await publisher.pc.setRemoteDescription(subscriber.pc.localDescription)
                await subscriber.first.wait()
        await asyncio.sleep(timing.warmup)
        ours = [os.getpid()] + ([server.pid] if server is not None else [])
        ours0, machine0, t0 = sum(map(process_cpu_s, ours)), machine_busy_s(), time.monotonic()
        recording = True
        await asyncio.sleep(timing.seconds)
        recording = False
        used = sum(map(process_cpu_s, ours)) - ours0
        other = machine_busy_s() - machine0 - used
        point.other_cpu_pct = max(0.0, 100 * other / (time.monotonic() - t0))
    except RunFailed as exc:
        point.error = str(exc)
    except TimeoutError:
        point.error = f"no frame after {connect_s:g} s"
    finally:
        await close_pairs(pairs or [Pair(publisher, subscriber)])
        if server is not None:
            await server.aclose()
    point.samples = len(samples)
    if samples:
        point.p50_ms = percentile(samples, 50)
        point.p95_ms = percentile(samples, 95)
        point.max_ms = max(samples)
    elif point.error is None:
        point.error = f"no readable frame ({point.unreadable} unreadable)"
    return point


# -- capacity ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Capacity:
    mode: str
    profile: str
    streams: int = 0  # the most pairs that passed
    bounded: bool = False  # a failing point above ``streams`` was found
    points: list[LoadPoint] = field(default_factory=list)


async def find_capacity(
    mode: str,
    clip: Clip,
    guess: int,
    max_streams: int,
    steps: int,
    timing: Timing,
    show: Callable[[LoadPoint], None],
) -> Capacity:
    """Grow from ``guess`` by half again while points pass, then bisect between the best pass
    and the first failure, ``steps`` points at most."""
    result = Capacity(MODES_BY_SERVER[mode], clip.profile.name)
    low, high = 0, max_streams + 1
    n = max(1, min(guess, max_streams))
    for _ in range(steps):
        point = await run_load(mode, clip, n, timing)
        result.points.append(point)
        show(point)
        if not point.passes and point.noisy:
            # Something else on the machine took CPU meanwhile: measure once more.
            point = await run_load(mode, clip, n, timing)
            result.points.append(point)
            show(point)
        if point.passes:
            low = n
        else:
            high = n
        if high - low <= max(1, low // 10):
            break
        n = (
            (low + high) // 2
            if high <= max_streams
            else min(max_streams, max(low + 1, low * 3 // 2))
        )
        if n in {p.streams for p in result.points}:
            break
    result.streams = low
    result.bounded = high <= max_streams
    return result
