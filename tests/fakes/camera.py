"""Synthetic media for tests and benchmarks: numbered camera frames, a tone, client helpers.

The frame number is drawn as a row of big black/white blocks at the top of the picture so it
survives VP8/H.264 compression at low bitrates and can be read back after a round trip through
the server (:func:`read_frame_number`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

__all__ = [
    "PreEncodedVideoTrack",
    "NumberedVideoTrack",
    "ToneAudioTrack",
    "TrackReader",
    "audio_level",
    "client_accept",
    "client_offer",
    "client_pc",
    "read_frame_number",
    "wait_connected",
]

VIDEO_CLOCK = 90_000
#: Blocks in the number band: white + black start markers, 16 bits MSB first, parity, black end.
_CELLS = 20
_BITS = 16
_WHITE, _BLACK = 235, 16


class _Pacer:
    """Real-time pacing from the first frame asked for, so a late reader does not get a burst."""

    def __init__(self, period: float) -> None:
        self._period = period
        self._start: float | None = None

    async def wait(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + index * self._period - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def _band_geometry(width: int, height: int) -> tuple[int, int]:
    return width // _CELLS, max(16, height // 8)


class NumberedVideoTrack(MediaStreamTrack):
    """A camera that shows an "item" (an orange box with a dark scratch) and its frame number.

    Frames are numbered from 0 (mod 2**16), paced in real time at ``fps`` with a 90 kHz clock.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 15) -> None:
        super().__init__()
        if width < _CELLS * 8 or height < 64 or width % 2 or height % 2:
            raise ValueError("width >= 160, height >= 64, both even")
        self.width, self.height, self.fps = width, height, fps
        self.frames_sent = 0
        self._pacer = _Pacer(1 / fps)
        self._base = self._draw_base()

    def _draw_base(self) -> np.ndarray:
        w, h = self.width, self.height
        yuv = np.empty((h * 3 // 2, w), dtype=np.uint8)
        y = yuv[:h]
        y[:] = 110
        u = yuv[h : h + h // 4].reshape(h // 2, w // 2)
        v = yuv[h + h // 4 :].reshape(h // 2, w // 2)
        u[:] = 128
        v[:] = 128
        # The item: an orange box in the middle, with a dark diagonal "scratch".
        top, bottom, left, right = h * 3 // 8, h * 7 // 8, w // 4, w * 3 // 4
        y[top:bottom, left:right] = 160
        u[top // 2 : bottom // 2, left // 2 : right // 2] = 80
        v[top // 2 : bottom // 2, left // 2 : right // 2] = 190
        for i in range(min(bottom - top, right - left) // 2):
            y[top + 10 + i, left + 20 + 2 * i : left + 24 + 2 * i] = 40
        return yuv

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.frames_sent
        await self._pacer.wait(index)
        yuv = self._base.copy()
        _draw_number(yuv[: self.height], index & 0xFFFF)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame


#: PyAV encoders for :class:`PreEncodedVideoTrack`: real-time settings, no B-frames.
_ENCODERS = {
    "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
    "h264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}),
}


class PreEncodedVideoTrack(MediaStreamTrack):
    """A camera whose numbered frames were encoded up front: ``recv()`` returns ``av.Packet``s,
    which aiortc's sender packetizes without encoding. ``payloads`` are the exact bytes sent,
    in order (a keyframe every ``gop`` frames; PLIs cannot make more)."""

    kind = "video"

    def __init__(
        self,
        codec: str = "vp8",
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        *,
        count: int = 150,
        gop: int = 15,
    ) -> None:
        super().__init__()
        self.codec, self.fps = codec, fps
        self.payloads: list[bytes] = []
        self.frames_sent = 0
        self._pacer = _Pacer(1 / fps)
        name, options = _ENCODERS[codec]
        context = av.CodecContext.create(name, "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"  # type: ignore[attr-defined]
        context.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        context.gop_size = gop  # type: ignore[attr-defined]
        context.options = dict(options)
        camera = NumberedVideoTrack(width, height, fps)
        packets: list[av.Packet] = []
        for index in range(count):
            yuv = camera._base.copy()
            _draw_number(yuv[:height], index & 0xFFFF)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index * VIDEO_CLOCK // fps
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            packets.extend(context.encode(frame))  # type: ignore[attr-defined]
        packets.extend(context.encode(None))  # type: ignore[attr-defined]
        self._packets = [(bytes(packet), int(packet.pts or 0)) for packet in packets]

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live" or self.frames_sent >= len(self._packets):
            raise MediaStreamError
        index = self.frames_sent
        await self._pacer.wait(index)
        data, pts = self._packets[index]
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.payloads.append(data)
        self.frames_sent += 1
        return packet


def _cell_values(number: int) -> list[int]:
    bits = [(number >> (_BITS - 1 - i)) & 1 for i in range(_BITS)]
    return [1, 0, *bits, sum(bits) & 1, 0]


def _draw_number(y: np.ndarray, number: int) -> None:
    height, width = y.shape
    cell_w, band_h = _band_geometry(width, height)
    for i, bit in enumerate(_cell_values(number)):
        y[:band_h, i * cell_w : (i + 1) * cell_w] = _WHITE if bit else _BLACK


def read_frame_number(frame: av.VideoFrame) -> int | None:
    """The number :class:`NumberedVideoTrack` drew into ``frame``, or ``None`` if unreadable."""
    y = frame.reformat(format="gray").to_ndarray()
    height, width = y.shape
    cell_w, band_h = _band_geometry(width, height)
    # Sample the middle of each block: edges blur under compression.
    mx, my = cell_w // 4, band_h // 4
    values: list[int] = []
    for i in range(_CELLS):
        block = y[my : band_h - my, i * cell_w + mx : (i + 1) * cell_w - mx]
        values.append(1 if float(block.mean()) > 128 else 0)
    if values[0] != 1 or values[1] != 0 or values[-1] != 0:
        return None
    bits = values[2 : 2 + _BITS]
    if sum(bits) & 1 != values[2 + _BITS]:
        return None
    number = 0
    for bit in bits:
        number = (number << 1) | bit
    return number


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone as 48 kHz signed 16-bit 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(
        self,
        frequency: float = 440.0,
        *,
        channels: int = 1,
        sample_rate: int = 48_000,
        ptime: float = 0.02,
        amplitude: float = 0.3,
    ) -> None:
        super().__init__()
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self.frequency, self.channels, self.sample_rate = frequency, channels, sample_rate
        self.amplitude = amplitude
        self.samples_per_frame = int(sample_rate * ptime)
        self.frames_sent = 0
        self._pacer = _Pacer(ptime)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.frames_sent
        await self._pacer.wait(index)
        start = index * self.samples_per_frame
        t = (np.arange(start, start + self.samples_per_frame) / self.sample_rate).astype(np.float64)
        wave = (np.sin(2 * math.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)
        interleaved = np.repeat(wave, self.channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            interleaved, format="s16", layout="mono" if self.channels == 1 else "stereo"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self.frames_sent += 1
        return frame


def audio_level(frame: av.AudioFrame) -> float:
    """RMS level of ``frame`` from 0 (silence) to 1 (full scale)."""
    samples = frame.to_ndarray()
    if samples.dtype == np.int16:
        data = samples.astype(np.float64) / 32767.0
    elif samples.dtype == np.int32:
        data = samples.astype(np.float64) / 2147483647.0
    else:
        data = samples.astype(np.float64)
    return float(np.sqrt(np.mean(np.square(data)))) if data.size else 0.0


class TrackReader:
    """Consumes a received track in a task and records what arrived.

    ``numbers`` holds the decoded frame numbers of video frames (unreadable ones are skipped);
    ``audible`` counts audio frames above ``audible_level``. :meth:`wait_until` waits, with a
    timeout, for a condition on the reader.
    """

    def __init__(self, track: MediaStreamTrack, *, audible_level: float = 0.02) -> None:
        self.track = track
        self.kind = track.kind
        self.frames = 0
        self.numbers: list[int] = []
        self.audible = 0
        self.ended = False
        self._audible_level = audible_level
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"test-reader-{track.kind}")

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.frames += 1
                if isinstance(frame, av.VideoFrame):
                    number = read_frame_number(frame)
                    if number is not None:
                        self.numbers.append(number)
                elif isinstance(frame, av.AudioFrame) and audio_level(frame) > self._audible_level:
                    self.audible += 1
                self._changed.set()
        except MediaStreamError:
            self.ended = True
            self._changed.set()

    async def wait_until(self, predicate: Callable[[TrackReader], bool]) -> None:
        """Wait until ``predicate(self)`` holds (wrap it in ``asyncio.timeout``)."""
        while not predicate(self):
            if self._task.done():
                self._task.result()
                raise AssertionError(f"{self.kind} track ended before the condition held")
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def client_pc() -> RTCPeerConnection:
    """An aiortc peer for a test client, without aiortc's default public STUN server."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def client_offer(pc: RTCPeerConnection) -> str:
    """Create and apply an offer; aiortc returns once ICE gathering completed."""
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def client_accept(pc: RTCPeerConnection, answer_sdp: str) -> None:
    """Apply the server's answer."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))


async def wait_connected(pc: RTCPeerConnection) -> None:
    """Wait until ``pc`` is connected (wrap it in ``asyncio.timeout``); fails fast if it fails
    or closes."""
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    try:
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed"):
                raise AssertionError(f"connection {pc.connectionState}")
            changed.clear()
            await changed.wait()
    finally:
        pc.remove_listener("connectionstatechange", changed.set)
