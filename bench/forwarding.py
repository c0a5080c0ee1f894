"""Media plane: CPU, frame delivery, loop lag, glass-to-glass latency and capacity per process.

Compares this service's :class:`media.MediaEngine` ("forwarder") with the baseline the design
rejects: aiortc's ``MediaRelay`` ("baseline"), where the server decodes each published track
and every subscriber's sender encodes it again; and "grading": the forwarder while a grading
sampler is attached to every published track (decoded once, sampled at 2 fps into a sink that
drops them). All run the same way:

- The server runs alone in a child process (``bench/_media_child.py``); SDP goes over a pipe.
  Its CPU is read from ``/proc/<pid>/stat`` (all threads: aiortc decodes and encodes off the
  loop) and a timer in it samples its event-loop lag every 10 ms.
- This process plays every client, cheaply, so that two cores suffice: a publisher sends a
  synthetic moving clip, VP8-encoded once per profile at a realistic bitrate, as ``av.Packet``
  objects paced in real time (aiortc packetizes them without encoding), looping from a
  keyframe; a subscriber (an agent) counts the encoded frames its receiver completes through
  ``media._aiortc.tap_encoded_frames`` and tells the tap not to decode them.
- A point: N publisher+subscriber pairs (one room each), a warm-up, then a measured window.
  Delivery is frames completed at each subscriber over frames its publisher sent.
- Latency: a publisher draws the time into each frame as it hands it to its (live) encoder;
  the subscriber decodes and reads it: now - drawn, through the engine and, as the floor, over
  one direct aiortc hop.
- Capacity: the most pairs one server process carries under 70% of one core with every
  subscriber getting >= 95% of its publisher's frames (search: grow, then bisect; a point that
  fails while something else on the machine used CPU is measured once more).
- Other load: CPU used by anything but the server and the clients during a window is shown;
  above 20% of a core the point is flagged as noisy.

Every peer, client or server, is created with ``RTCConfiguration(iceServers=[])``.

    .venv/bin/python bench/media.py [--quick] [--seconds 10] [--streams 4] [--json PATH]

Exits 1 if a part failed to run (figures are still printed); missing a target is a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from the repository root: make the packages and test doubles importable.
sys.path.insert(0, str(ROOT))

import aiortc  # noqa: E402
import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from bench._media_child import RunFailed, ServerProcess  # noqa: E402
from bench._stats import LagProbe, percentile  # noqa: E402
from media import _aiortc  # noqa: E402
from tests.fakes.camera import (  # noqa: E402
    client_accept,
    client_offer,
    client_pc,
    wait_connected,
)

VIDEO_CLOCK = 90_000
CLIP_S = 4  # one GOP, looped; further keyframes only when asked (PLI), as Chromium sends them
CPU_LIMIT = 70.0  # % of one core, for capacity
DELIVERY_MIN = 0.95
LATENCY_TARGET_MS = 100.0
NOISE_PCT = 20.0  # other load (% of one core) above which a point is flagged
#: Bench names of the server modes: this engine, the same while grading, aiortc MediaRelay.
MODES = {"forwarder": "engine", "grading": "grading", "baseline": "relay"}
MODES_BY_SERVER = {server: name for name, server in MODES.items()}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    width: int
    height: int
    fps: int
    bitrate: int


PROFILES = {
    "480p15": Profile("480p15", 640, 480, 15, 1_000_000),
    "720p30": Profile("720p30", 1280, 720, 30, 2_500_000),
}


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    total = sum(values)
    return (total - idle) / CLK_TCK, total / CLK_TCK


async def wait_quiet(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until the machine is nearly idle before a point starts, so
    another workload does not land in its window; returns the last busy share (% of a core)."""
    deadline = time.monotonic() + limit_s
    while True:
        before, t0 = machine_busy_s()[0], time.monotonic()
        await asyncio.sleep(0.5)
        busy = 100 * (machine_busy_s()[0] - before) / (time.monotonic() - t0)
        if busy < NOISE_PCT or time.monotonic() >= deadline:
            return busy


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a point warms up and measures, waits to connect and for a quiet machine."""

    warmup: float
    seconds: float
    connect_s: float
    quiet_s: float


# -- the clip ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clip:
    """A profile's synthetic camera, VP8-encoded once: frame ``i`` is ``frames[i % len]``."""

    profile: Profile
    frames: list[bytes]
    keyframes: list[int]

    @property
    def kbps(self) -> float:
        return sum(map(len, self.frames)) * 8 / CLIP_S / 1000


def scene(profile: Profile, count: int) -> Iterable[np.ndarray]:
    """Moving yuv420p pictures: a panning textured background and a sliding box, so libvpx
    spends its bitrate as it would on a hand-held camera."""
    w, h = profile.width, profile.height
    rng = np.random.default_rng(5)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (2 * h, 2 * w), dtype=np.uint8), (0, 0), 1.5)
    chroma = np.full((h // 2, w), 128, dtype=np.uint8)
    box = h // 4
    for i in range(count):
        dy, dx = (2 * i) % h, (3 * i) % w
        yuv = np.concatenate([texture[dy : dy + h, dx : dx + w], chroma])
        x = (8 * i) % (w - box)
        yuv[h // 3 : h // 3 + box, x : x + box] = 220
        yield yuv


def encode_clip(profile: Profile) -> Clip:
    encoder: Any = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = profile.width, profile.height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, profile.fps)
    encoder.framerate = profile.fps
    encoder.bit_rate = profile.bitrate
    encoder.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "g": str(CLIP_S * profile.fps + 1),
        "lag-in-frames": "0",
        "minrate": str(profile.bitrate),
        "maxrate": str(profile.bitrate),
        # WebRTC caps a keyframe at ~9 average frames; uncapped, libvpx makes 720p keyframes
        # of ~230 kB, a burst no camera sends.
        "max-intra-rate": "900",
    }
    packets: list[Any] = []
    count = CLIP_S * profile.fps
    for i, yuv in enumerate(scene(profile, count)):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    frames = [bytes(p) for p in packets[:count]]
    keyframes = [i for i, data in enumerate(frames) if not data[0] & 1]
    if len(frames) != count or not keyframes or keyframes[0] != 0:
        raise RunFailed(f"clip encoding for {profile.name} went wrong: keyframes {keyframes}")
    return Clip(profile, frames, keyframes)


# -- client tracks -------------------------------------------------------------------------------


class Pacer:
    """Real time from the first frame asked for, offset by ``phase`` seconds so that many
    publishers do not all send in the same millisecond, as cameras do not."""

    def __init__(self, fps: int, phase: float) -> None:
        self.period = 1 / fps
        self.phase = phase
        self._start: float | None = None

    async def wait(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time() + self.phase
        delay = self._start + index * self.period - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


class ClipTrack(MediaStreamTrack):
    """A publisher's camera that hands aiortc pre-encoded VP8 (``av.Packet``), never frames.

    Asked for a keyframe (:meth:`keyframe`, on the server's PLI), it restarts the clip at its
    keyframe, as a live encoder would answer.
    """

    kind = "video"

    def __init__(self, clip: Clip, phase: float) -> None:
        super().__init__()
        self.clip = clip
        self.sent = 0
        self.keyframes = 0
        self._start = 0  # the index the clip last restarted at
        self._restart = False
        self._pacer = Pacer(clip.profile.fps, phase)
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)

    def keyframe(self) -> None:
        self._restart = True

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.sent
        await self._pacer.wait(index)
        if self._restart:
            self._restart, self._start = False, index
        position = (index - self._start) % len(self.clip.frames)
        self.keyframes += position in self.clip.keyframes
        packet = av.Packet(self.clip.frames[position])
        packet.pts = index * VIDEO_CLOCK // self.clip.profile.fps
        packet.time_base = self._time_base
        self.sent += 1
        return packet


#: The drawn time: white and black start cells, 24 bits of milliseconds, parity, black end.
_TIME_BITS = 24
_TIME_CELLS = _TIME_BITS + 4
_TIME_WRAP = 1 << _TIME_BITS


def _time_band(width: int, height: int) -> tuple[int, int]:
    return width // _TIME_CELLS, max(16, height // 8)


def now_ms() -> int:
    return int(time.monotonic() * 1000) % _TIME_WRAP


def draw_ms(y: np.ndarray, ms: int) -> None:
    """Draw ``ms`` as big black/white cells across the top of a luma plane (survives VP8 at low
    bitrates, as ``tests/fakes/camera.py`` draws frame numbers)."""
    cell_w, band_h = _time_band(y.shape[1], y.shape[0])
    bits = [(ms >> (_TIME_BITS - 1 - i)) & 1 for i in range(_TIME_BITS)]
    for i, bit in enumerate([1, 0, *bits, sum(bits) & 1, 0]):
        y[:band_h, i * cell_w : (i + 1) * cell_w] = 235 if bit else 16


def read_ms(frame: av.VideoFrame) -> int | None:
    """The time :func:`draw_ms` drew into a decoded frame, or ``None`` if unreadable."""
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    cell_w, band_h = _time_band(frame.width, frame.height)
    mx, my = cell_w // 4, band_h // 4
    cells = [
        int(y[my : band_h - my, i * cell_w + mx : (i + 1) * cell_w - mx].mean() > 128)
        for i in range(_TIME_CELLS)
    ]
    bits = cells[2 : 2 + _TIME_BITS]
    if cells[:2] != [1, 0] or cells[-1] != 0 or sum(bits) & 1 != cells[-2]:
        return None
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    return value


class ClockTrack(MediaStreamTrack):
    """A live camera (aiortc encodes it) that draws the time each frame leaves it."""

    kind = "video"

    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile
        self.sent = 0
        self._pacer = Pacer(profile.fps, 0.0)
        self._pictures = list(scene(profile, CLIP_S * profile.fps))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.sent
        await self._pacer.wait(index)
        yuv = self._pictures[index % len(self._pictures)].copy()
        draw_ms(yuv[: self.profile.height], now_ms())
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index * VIDEO_CLOCK // self.profile.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


# -- clients -------------------------------------------------------------------------------------


def _vp8_only() -> list[Any]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")]


class Publisher:
    """A client that sends one video track (sendonly), VP8 only: the clip is VP8."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.pc: RTCPeerConnection = client_pc()
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(_vp8_only())
        if isinstance(track, ClipTrack) and hasattr(_aiortc, "on_keyframe_request"):
            # aiortc only tells its own encoder, which pre-encoded packets never reach.
            _aiortc.on_keyframe_request(transceiver.sender, track.keyframe)

    @property
    def sent(self) -> int:
        return int(getattr(self.track, "sent", 0))

    async def aclose(self) -> None:
        self.track.stop()
        await self.pc.close()


class Subscriber:
    """A client that receives one video track (recvonly) and counts its encoded frames.

    With ``on_frame`` it also decodes (the latency probe); otherwise its tap tells aiortc not
    to hand the frames to the decoder, so counting costs no decoding. ``on_marker`` makes its
    receiver complete a frame at the RTP marker bit, as Chromium does, instead of when the next
    frame starts (aiortc's rule, one frame interval later).
    """

    def __init__(
        self,
        on_frame: Callable[[av.VideoFrame], None] | None = None,
        *,
        on_marker: bool = False,
    ) -> None:
        self.pc: RTCPeerConnection = client_pc()
        self.on_marker = on_marker
        self.pc.addTransceiver("video", direction="recvonly")
        self.frames = 0
        self.first = asyncio.Event()
        self._on_frame = on_frame
        self._task: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = _aiortc.receiver_of(self.pc, track)
        if receiver is not None:
            if self.on_marker:
                _aiortc.release_frames_on_marker(receiver)
            _aiortc.tap_encoded_frames(receiver, self._on_encoded)
        # Read the track even when nothing should be decoded: until the tap may skip the
        # decoder, aiortc queues every decoded frame without bound for a reader.
        self._task = asyncio.create_task(self._read(track), name="bench-subscriber")

    def _on_encoded(self, mime_type: str, clock_rate: int, data: bytes, timestamp: int) -> bool:
        self.frames += 1
        self.first.set()
        return self._on_frame is not None

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if self._on_frame is not None:
                    self._on_frame(frame)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.pc.close()


@dataclass(slots=True)
class Pair:
    publisher: Publisher
    subscriber: Subscriber


async def _limited(coros: Iterable[Awaitable[Any]], limit: int = 8) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def _negotiate(
    server: ServerProcess, pc: RTCPeerConnection, room: str, pid: str, role: str
) -> None:
    answer = await server.answer(room, pid, role, await client_offer(pc))
    await client_accept(pc, answer)


async def connect_pairs(
    server: ServerProcess,
    tracks: Sequence[MediaStreamTrack],
    subscribers: list[Subscriber],
    wait_s: float,
) -> list[Pair]:
    """Publishers first; once the server holds every track, the subscribers (who would
    otherwise need a renegotiation); then wait for a frame at every subscriber."""
    pairs = [Pair(Publisher(t), s) for t, s in zip(tracks, subscribers, strict=True)]
    try:
        async with asyncio.timeout(wait_s):
            await _limited(
                _negotiate(server, p.publisher.pc, f"room-{i}", f"pub-{i}", "publish")
                for i, p in enumerate(pairs)
            )
            while await server.tracks() < len(pairs):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)
            await _limited(
                _negotiate(server, p.subscriber.pc, f"room-{i}", f"sub-{i}", "subscribe")
                for i, p in enumerate(pairs)
            )
            for pair in pairs:
                await wait_connected(pair.publisher.pc)
                await wait_connected(pair.subscriber.pc)
                await pair.subscriber.first.wait()
    except TimeoutError:
        got = sum(p.subscriber.first.is_set() for p in pairs)
        await close_pairs(pairs)
        raise RunFailed(
            f"{len(pairs)} pairs not all flowing after {wait_s:g} s ({got} subscribers had a frame)"
        ) from None
    except BaseException:
        await close_pairs(pairs)
        raise
    return pairs


async def close_pairs(pairs: list[Pair]) -> None:
    await asyncio.gather(
        *(p.subscriber.aclose() for p in pairs),
        *(p.publisher.aclose() for p in pairs),
        return_exceptions=True,
    )


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
        await wait_quiet(timing.quiet_s)
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
            machine_busy_s(),
        )
        t0 = time.monotonic()
        await asyncio.sleep(timing.seconds)
        elapsed = time.monotonic() - t0
        server1, client1, machine1 = (
            process_cpu_s(server.pid),
            process_cpu_s(os.getpid()),
            machine_busy_s(),
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
            samples.append((arrived - drawn) % _TIME_WRAP)

    publisher = Publisher(ClockTrack(profile))
    subscriber = Subscriber(on_frame, on_marker=subscriber_rule == "marker")
    server = ServerProcess("engine") if path == "engine" else None
    pairs: list[Pair] = []
    try:
        await wait_quiet(timing.quiet_s)
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
        ours0, machine0, t0 = sum(map(process_cpu_s, ours)), machine_busy_s()[0], time.monotonic()
        recording = True
        await asyncio.sleep(timing.seconds)
        recording = False
        used = sum(map(process_cpu_s, ours)) - ours0
        other = machine_busy_s()[0] - machine0 - used
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


# -- report --------------------------------------------------------------------------------------


def _lag(point: LoadPoint) -> str:
    lag = point.server_lag_ms
    return f"{lag.get('p99', 0):>6.1f}{lag.get('max', 0):>7.0f}" if lag else f"{'-':>6}{'-':>7}"


LOAD_HEADER = (
    f"{'mode':10}{'profile':8}{'pairs':>6}{'srv cpu':>9}{'/stream':>9}{'pub fps':>8}{'kf/s':>5}"
    f"{'sub fps':>8}{'min':>6}{'deliv':>7}{'min':>6}{'lag p99':>8}{'max':>7}"
    f"{'cli cpu':>8}{'other':>7}{'srv MB':>7}"
)


def load_row(point: LoadPoint) -> str:
    if point.error is not None:
        first = point.error.splitlines()[0]
        return f"{point.mode:10}{point.profile:8}{point.streams:>6}  FAILED: {first}"
    flags = []
    if point.client_limited:
        flags.append(f"machine saturated ({point.machine_busy_pct:.0f}% of all cores)")
    if point.noisy:
        flags.append("noisy (other load)")
    if point.mode == "grading":
        flags.append(f"sampled {point.sampled_fps:.1f} fps/stream")
    return (
        f"{point.mode:10}{point.profile:8}{point.streams:>6}{point.server_cpu_pct:>8.1f}%"
        f"{point.per_stream_pct:>8.2f}%{point.pub_fps:>8.1f}{point.pub_keyframes_per_s:>5.1f}"
        f"{point.sub_fps_mean:>8.1f}"
        f"{point.sub_fps_min:>6.1f}{100 * point.delivered_mean:>6.1f}%"
        f"{100 * point.delivered_min:>5.0f}%{_lag(point)}{point.client_cpu_pct:>7.0f}%"
        f"{point.other_cpu_pct:>6.0f}%{point.server_rss_mb:>7.0f}"
        + (f"  {' '.join(flags)}" if flags else "")
    )


def header(args: argparse.Namespace, clips: dict[str, Clip]) -> dict[str, Any]:
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "platform": platform.platform(terse=True),
    }
    print("media plane benchmark (issue 5): this service's MediaEngine ('forwarder') against")
    print("aiortc MediaRelay ('baseline': server decodes, each subscriber's sender re-encodes);")
    print("'grading' = the forwarder with the grading sampler on every published track")
    print(
        "machine: "
        + ", ".join(f"{key} {value}" for key, value in machine.items())
        + f"; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "method: server alone in a child process (CPU from /proc/<pid>/stat, all threads, as "
        "% of one core; loop lag = lateness of a 10 ms timer in it); clients in this process: "
        "publishers send a pre-encoded VP8 clip as av.Packet in real time, subscribers count "
        "encoded frames at the receiver without decoding; one room per publisher+subscriber pair"
    )
    for clip in clips.values():
        p = clip.profile
        print(
            f"clip {p.name}: {p.width}x{p.height} @ {p.fps} fps, {clip.kbps:.0f} kbit/s "
            f"(target {p.bitrate // 1000}), keyframes at frames {clip.keyframes} of "
            f"{len(clip.frames)}, looped, and restarted at its keyframe on a PLI"
        )
    print(
        f"window {args.seconds:g} s after {args.warmup:g} s warm-up (capacity: "
        f"{args.capacity_seconds:g} s); delivery = frames completed at the subscriber / frames "
        "its publisher sent in the window; 'kf/s' = keyframes per publisher per second; "
        "'cli cpu' = this process (all clients); 'other' = CPU "
        "used meanwhile by anything else on the machine, % of one core (each point first "
        f"waits up to {args.quiet_wait:g} s for it to fall under {NOISE_PCT:.0f}%)"
    )
    return machine


# -- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    profiles = [PROFILES[name] for name in args.profiles]
    clips = {p.name: encode_clip(p) for p in profiles}
    machine = header(args, clips)
    figures: dict[str, Any] = {
        "machine": machine,
        "clips": {n: {"kbps": c.kbps, "keyframes": c.keyframes} for n, c in clips.items()},
        "load": [],
        "ratios": {},
        "latency": [],
        "capacity": [],
    }
    failed = False
    by_key: dict[tuple[str, str], LoadPoint] = {}
    timing = Timing(args.warmup, args.seconds, args.connect_timeout, args.quiet_wait)

    if 1 in args.parts:
        print(f"\n1. CPU, delivery and loop lag per forwarded stream (N pairs, {args.seconds:g} s)")
        print(LOAD_HEADER)
        for name, mode in MODES.items():
            if name == "grading":
                continue  # the same process as the forwarder's when idle
            # What a server process costs with no peer at all (includes the lag probe).
            idle = await run_load(mode, clips[profiles[0].name], 0, replace(timing, seconds=2.0))
            print(load_row(idle).replace(idle.profile, "idle".ljust(len(idle.profile)), 1))
            figures["idle"] = figures.get("idle", {}) | {name: asdict(idle)}
            failed |= idle.error is not None
        for profile in profiles:
            for name, mode in MODES.items():
                n = args.baseline_streams if name == "baseline" else args.streams
                point = await run_load(mode, clips[profile.name], n, timing)
                print(load_row(point), flush=True)
                figures["load"].append({**asdict(point), "passes": point.passes})
                by_key[(name, profile.name)] = point
                failed |= point.error is not None
        for profile in profiles:
            fwd, base = (
                by_key.get(("forwarder", profile.name)),
                by_key.get(("baseline", profile.name)),
            )
            if fwd and base and fwd.error is None and base.error is None:
                ratio = base.per_stream_pct / max(fwd.per_stream_pct, 1e-9)
                figures["ratios"][profile.name] = ratio
                verdict = "meets" if ratio >= 4 else "MISSES"
                print(
                    f"CPU per stream, baseline/forwarder, {profile.name}: {ratio:.1f}x "
                    f"({base.per_stream_pct:.2f}% / {fwd.per_stream_pct:.2f}%; "
                    f"target >= 4x: {verdict})"
                )
            grading = by_key.get(("grading", profile.name))
            if fwd and grading and fwd.error is None and grading.error is None:
                extra = grading.per_stream_pct - fwd.per_stream_pct
                figures["grading_extra_pct"] = figures.get("grading_extra_pct", {}) | {
                    profile.name: extra
                }
                print(
                    f"grading (decode + {grading.sampled_fps:.1f} fps sample) adds {extra:.2f}% "
                    f"of a core per published stream at {profile.name}"
                )

    if 2 in args.parts:
        print(f"\n2. Glass-to-glass latency, one stream, {args.seconds:g} s (ms)")
        print("   drawn into the frame as the publisher's encoder takes it, read after decoding")
        print(
            f"{'path':10}{'profile':8}{'subscriber':11}{'frames':>7}{'p50':>7}{'p95':>7}{'max':>7}"
        )
        rules = ["aiortc"]
        if hasattr(_aiortc, "release_frames_on_marker"):
            rules.append("marker")
        for profile in profiles:
            for rule in rules:
                for path in ("engine", "direct"):
                    lat = await run_latency(path, profile, rule, timing)
                    figures["latency"].append(asdict(lat))
                    failed |= lat.error is not None
                    label = "engine" if path == "engine" else "direct*"
                    row = f"{label:10}{profile.name:8}{rule:11}"
                    if lat.error is not None:
                        print(f"{row}  FAILED: {lat.error.splitlines()[0]}")
                        continue
                    note = "  noisy (other load)" if lat.other_cpu_pct > NOISE_PCT else ""
                    if path == "engine":
                        ok = lat.p50_ms < LATENCY_TARGET_MS
                        verdict = "meets" if ok else "MISSES"
                        note = f"  target p50 < {LATENCY_TARGET_MS:.0f}: {verdict}" + note
                    print(
                        f"{row}{lat.samples:>7}{lat.p50_ms:>7.0f}{lat.p95_ms:>7.0f}"
                        f"{lat.max_ms:>7.0f}{note}",
                        flush=True,
                    )
        print("   * direct: publisher and subscriber peers connected to each other (no server)")
        print(
            "   subscriber 'aiortc': a frame is complete when the next one starts (one frame "
            "interval late); 'marker': complete at its last packet, as a browser does"
        )

    if 3 in args.parts:
        print(
            f"\n3. Capacity: most pairs per server process at < {CPU_LIMIT:.0f}% of one core "
            f"with every subscriber >= {100 * DELIVERY_MIN:.0f}% of its frames"
        )
        print(LOAD_HEADER)
        for profile in [p for p in profiles if p.name in args.capacity_profiles]:
            for name, mode in MODES.items():
                if name not in args.capacity_modes:
                    continue
                known = by_key.get((name, profile.name))
                guess = 4
                if known and known.error is None and known.per_stream_pct > 0:
                    guess = int(0.8 * CPU_LIMIT / known.per_stream_pct)
                cap = await find_capacity(
                    mode,
                    clips[profile.name],
                    guess,
                    args.max_streams,
                    args.capacity_steps,
                    replace(timing, seconds=args.capacity_seconds),
                    lambda p: print(load_row(p), flush=True),
                )
                figures["capacity"].append(
                    {
                        "mode": cap.mode,
                        "profile": cap.profile,
                        "streams": cap.streams,
                        "bounded": cap.bounded,
                        "points": [{**asdict(p), "passes": p.passes} for p in cap.points],
                    }
                )
                above = [p for p in cap.points if p.streams > cap.streams]
                if above:
                    first = min(reversed(above), key=lambda p: p.streams)  # the latest
                    why = f" ({first.streams} failed: {first.failure()})"
                else:
                    why = f" (no failing point up to {args.max_streams})"
                figures["capacity"][-1]["limit"] = why.strip(" ()")
                print(f"=> {name} {profile.name}: {cap.streams} pairs{why}", flush=True)
        caps = {(c["mode"], c["profile"]): c["streams"] for c in figures["capacity"]}
        for profile in profiles:
            fwd, base = caps.get(("forwarder", profile.name)), caps.get(("baseline", profile.name))
            if fwd is not None and base is not None:
                print(f"capacity {profile.name}: forwarder {fwd} pairs, baseline {base} pairs")
    return figures, failed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--seconds", type=float, help="measured window per point (10)")
    parser.add_argument("--warmup", type=float, help="seconds before each window (3)")
    parser.add_argument("--streams", type=int, help="forwarder and grading pairs in part 1 (4)")
    parser.add_argument("--baseline-streams", type=int, help="baseline pairs in part 1 (2)")
    parser.add_argument("--capacity-seconds", type=float, help="window per capacity point (8)")
    parser.add_argument("--capacity-steps", type=int, help="capacity points per search (5)")
    parser.add_argument("--max-streams", type=int, default=120, help="capacity search cap (120)")
    parser.add_argument(
        "--profiles", default="480p15,720p30", help="comma-separated (480p15,720p30)"
    )
    parser.add_argument(
        "--capacity-profiles", default="480p15,720p30", help="which profiles get part 3"
    )
    parser.add_argument(
        "--capacity-modes", default="forwarder,baseline", help="which modes get part 3"
    )
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (1,2,3)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="per point (60 s)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each point, wait up to this long for other load to stop (5 s; quick 3)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    quick = args.quick
    defaults = {
        "seconds": 3.0 if quick else 10.0,
        "warmup": 1.0 if quick else 3.0,
        "streams": 2 if quick else 4,
        "baseline_streams": 1 if quick else 2,
        "capacity_seconds": 3.0 if quick else 8.0,
        "capacity_steps": 2 if quick else 5,
        "quiet_wait": 3.0 if quick else 5.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.profiles = [p for p in args.profiles.split(",") if p]
    args.capacity_profiles = [p for p in args.capacity_profiles.split(",") if p]
    args.capacity_modes = [m for m in args.capacity_modes.split(",") if m]
    args.parts = {int(p) for p in args.parts.split(",") if p}
    unknown = set(args.profiles + args.capacity_profiles) - set(PROFILES)
    if unknown:
        raise SystemExit(f"bench: unknown profiles {sorted(unknown)} (have {sorted(PROFILES)})")
    if set(args.capacity_modes) - set(MODES) or args.parts - {1, 2, 3}:
        raise SystemExit(
            "bench: --capacity-modes from forwarder,grading,baseline; --parts from 1,2,3"
        )
    if (
        min(args.seconds, args.capacity_seconds, args.connect_timeout) <= 0
        or min(args.warmup, args.quiet_wait) < 0
    ):
        raise SystemExit("bench: durations must be positive")
    if min(args.streams, args.baseline_streams, args.capacity_steps, args.max_streams) < 1:
        raise SystemExit("bench: stream counts and steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        figures, failed = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except RunFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    command = shlex.join([sys.executable, *sys.argv])
    figures["command"] = command
    figures["args"] = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    figures["args"]["json"] = str(args.json) if args.json else None
    figures["wall_s"] = time.monotonic() - started
    print(f"\ncommand: {command}; took {figures['wall_s']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if failed:
        print("bench: some points failed to run (see FAILED above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
