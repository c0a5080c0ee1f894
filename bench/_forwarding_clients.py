"""The clients of ``bench/forwarding.py``: the synthetic camera (a clip VP8-encoded once, or a
live track that draws the time into each frame), and the publisher and subscriber peers that
this process plays against the server process."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from bench._forwarding_server import RunFailed, ServerProcess
from media import _aiortc
from tests.fakes.camera import client_accept, client_offer, client_pc, wait_connected

__all__ = [
    "CLIP_S",
    "PROFILES",
    "TIME_WRAP",
    "Clip",
    "ClipTrack",
    "ClockTrack",
    "Pair",
    "Profile",
    "Publisher",
    "Subscriber",
    "close_pairs",
    "connect_pairs",
    "encode_clip",
    "now_ms",
    "read_ms",
]

VIDEO_CLOCK = 90_000
CLIP_S = 4  # one GOP, looped; further keyframes only when asked (PLI), as Chromium sends them


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
TIME_WRAP = 1 << _TIME_BITS


def _time_band(width: int, height: int) -> tuple[int, int]:
    return width // _TIME_CELLS, max(16, height // 8)


def now_ms() -> int:
    return int(time.monotonic() * 1000) % TIME_WRAP


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
