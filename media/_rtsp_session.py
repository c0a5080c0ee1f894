"""The worker side of an RTSP pull (see :mod:`media.ingest`): one connection to the camera on
its own thread, read with PyAV, forwarding H.264 baseline access units as they are or feeding
one transcode to H.264 constrained baseline, decoding only while the source asks for pictures.
Everything it hands to the event loop goes through ``call_soon_threadsafe`` with a bound."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol
from urllib.parse import urlsplit

import av

from ._rtsp_encoder import VIDEO_CLOCK, _Encoder
from .keyframes import EncodedFrame, h264_nal_types, h264_parameter_sets

logger = logging.getLogger("media.ingest")

_START_CODE = b"\x00\x00\x00\x01"
OPUS_CLOCK = 48_000
#: H.264 profiles a browser that negotiated constrained baseline decodes as they are.
_FORWARDABLE = frozenset({"Baseline", "Constrained Baseline"})
#: Frames (audio and video) handed to the loop and not yet taken; past this the loop is
#: stalled and frames are dropped (video up to the next keyframe) rather than queued without
#: bound. FFmpeg hands over the second or so of frames it read while probing the stream in one
#: burst (50 Opus + 30 video frames at 720p30), which must fit.
_BACKLOG = 300
#: Decoded pictures handed to the loop and not yet taken (they are large): past this, skipped.
_DECODED_BACKLOG = 4
#: Video frames the status's frame rate is measured over (camera timestamps).
_FPS_FRAMES = 32
#: Packets kept since the last keyframe, so decoding can start at the keyframe the source asked
#: from even though the worker has read on meanwhile.
_GOP_LIMIT = 300


@dataclass(frozen=True, slots=True)
class _StreamInfo:
    """What the camera sends, read when the connection opens."""

    codec: str
    profile: str | None
    width: int | None
    height: int | None
    fps: float | None
    transcoding: str | None
    audio_codec: str | None

    @property
    def audio_forwarded(self) -> bool:
        return self.audio_codec == "opus"

    @property
    def audio_note(self) -> str | None:
        if self.audio_codec is None:
            return None
        if self.audio_forwarded:
            return "audio opus forwarded"
        return f"audio {self.audio_codec} not forwarded (browsers are sent Opus only)"


@dataclass(frozen=True, slots=True)
class _PullSpec:
    """What a session needs to know of the pull that runs it; the same for every connection."""

    #: The camera's URL with its credentials (only FFmpeg sees it).
    url: str
    #: FFmpeg's RTSP demuxer options.
    options: Mapping[str, str]
    open_timeout_s: float
    read_timeout_s: float
    #: Keyframe interval of the transcode, when the camera's video cannot be forwarded.
    keyframe_interval_s: float
    #: Names the session's encoder thread.
    participant_id: str
    #: Set by the loop when the pull stops; the session then ends at its next packet.
    stop: threading.Event


class _SessionHost(Protocol):
    """The pull a session reports to. The worker never calls these itself: it posts them to
    the loop with ``call_soon_threadsafe``, so they run on the loop thread."""

    def opened(self, session: _Session, info: _StreamInfo) -> None:
        """The camera answered and sends ``info``: publish its tracks."""
        ...

    def deliver(self, session: _Session, frame: EncodedFrame) -> None:
        """One encoded frame for the published track of its kind."""
        ...

    def deliver_decoded(self, session: _Session, frame: Any) -> None:
        """One decoded picture, for whatever samples the video track."""
        ...

    def describe(self, exc: BaseException, *, opening: bool, elapsed: float) -> str:
        """Why the connection failed (``opening``) or ended, fit to show an operator. Called on
        the worker thread: it must only read what does not change."""
        ...


def _resolves(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.getaddrinfo(parts.hostname, parts.port or 554)
    except (OSError, UnicodeError):
        return False
    return True


def _h264_profile(context: Any) -> str | None:
    """The stream's H.264 profile name as FFmpeg reports it, else from the SPS in extradata."""
    profile = getattr(context, "profile", None)
    if profile:
        return str(profile)
    sets = h264_parameter_sets(bytes(context.extradata or b""))
    if len(sets) > 5:
        return {66: "Baseline", 77: "Main", 100: "High"}.get(sets[5], f"profile {sets[5]}")
    return None


def _inspect(video: Any, audio: Any) -> _StreamInfo:
    context = video.codec_context
    codec = str(context.name)
    profile = _h264_profile(context) if codec == "h264" else getattr(context, "profile", None)
    transcoding = None
    if codec != "h264" or profile not in _FORWARDABLE:
        if codec == "h264":
            why = f"H.264 {profile or 'of unknown'} profile (B-frames, CABAC) cannot be forwarded"
        elif codec == "hevc":
            why = "B-frames/H.265 cannot be forwarded"
        else:
            why = f"{codec} cannot be forwarded"
        transcoding = f"transcoding {codec} -> h264: {why} to browsers"
    rate = video.average_rate or video.guessed_rate
    return _StreamInfo(
        codec=codec,
        profile=str(profile) if profile else None,
        width=int(context.width) or None,
        height=int(context.height) or None,
        fps=round(float(rate), 2) if rate else None,
        transcoding=transcoding,
        audio_codec=str(audio.codec_context.name) if audio is not None else None,
    )


def _continues_picture(data: bytes) -> bool:
    """Whether an H.264 packet's first slice continues a picture (``first_mb_in_slice`` > 0,
    whose exp-Golomb code starts with a 0 bit) instead of starting one."""
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 4 < len(data):
        if data[i + 3] & 0x1F in (1, 5):
            return not data[i + 4] & 0x80
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


class _ParameterSets:
    """Keeps the newest SPS/PPS of an H.264 stream and puts them in front of keyframes that
    come without them."""

    def __init__(self, initial: bytes = b"") -> None:
        self._sets = initial

    def apply(self, data: bytes) -> tuple[bytes, bool]:
        types = h264_nal_types(data)
        if 7 in types:
            # Once each: a keyframe in slices may repeat them before every slice.
            units = dict.fromkeys(h264_parameter_sets(data).split(_START_CODE))
            self._sets = b"".join(_START_CODE + unit for unit in units if unit) or self._sets
        keyframe = 5 in types
        if keyframe and 7 not in types and self._sets:
            data = self._sets + data
        return data, keyframe


class _Session:
    """One connection to the camera, run on the worker thread. The loop writes
    ``want_decode``, ``aborted`` and ``handled``; the worker threads write the rest."""

    def __init__(
        self, host: _SessionHost, spec: _PullSpec, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._host = host
        self._spec = spec
        self._loop = loop
        self._stop = spec.stop
        self.want_decode = False
        self.aborted: str | None = None
        self.encoder: _Encoder | None = None
        self.posted = 0
        self.handled = 0
        self.dropped = 0
        self.decoded_posted = 0
        self.decoded_handled = 0
        self._lock = threading.Lock()
        self._video_gap = False
        self._first: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._sets = _ParameterSets()
        self._gop: list[tuple[bytes, int]] | None = None
        self._decoder: Any = None
        # FFmpeg's H.264 parser cuts an access unit before every SPS, so a keyframe whose
        # slices each carry SPS/PPS (GStreamer's payloader does that) comes in pieces; a
        # receiver needs it whole. Keyframes are held until the next packet shows whether it
        # continues them, until two keyframes came whole (then never again, unless one is cut).
        self._held: tuple[bytes, int] | None = None
        self._split_keyframes: bool | None = None
        self._keyframes_held = 0

    def run(self) -> str | None:
        """Read until the camera goes away (returns why) or the pull stops (returns None)."""
        started = time.monotonic()
        try:
            container: Any = av.open(
                self._spec.url,
                options=dict(self._spec.options),
                # FFmpeg answers the first interrupted read with the frame its parser still
                # held and only the second with the error: half the timeout each.
                timeout=(self._spec.open_timeout_s, self._spec.read_timeout_s / 2),
            )
        except (av.FFmpegError, OSError) as exc:
            return self._host.describe(exc, opening=True, elapsed=time.monotonic() - started)
        try:
            return self._read(container)
        except (av.FFmpegError, OSError) as exc:
            if self._stop.is_set():
                return None
            return self._host.describe(exc, opening=False, elapsed=time.monotonic() - started)
        finally:
            if self.encoder is not None:
                self.encoder.close()
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass

    def _read(self, container: Any) -> str | None:
        video = next(iter(container.streams.video), None)
        if video is None:
            return "the camera sends no video"
        audio = next(iter(container.streams.audio), None)
        info = _inspect(video, audio)
        if info.transcoding:
            self.encoder = _Encoder(
                f"media-rtsp-encode-{self._spec.participant_id}",
                info.fps or 25.0,
                self._spec.keyframe_interval_s,
                self._encoded,
            )
        else:
            self._sets = _ParameterSets(h264_parameter_sets(bytes(video.codec_context.extradata)))
        self._post(self._host.opened, self, info)
        streams = [video, audio] if info.audio_forwarded else [video]
        for packet in container.demux(streams):
            if self._stop.is_set():
                return None
            if self.aborted:
                return self.aborted
            if not packet.size:
                continue
            if packet.stream_index != video.index:
                self._send(self._audio_frame(packet))
            elif self.encoder is not None:
                self._transcode(video, packet)
            else:
                self._forward(packet)
        return None if self._stop.is_set() else "the camera ended the stream"

    # -- timestamps and hand-over -------------------------------------------------------------

    def _ticks(self, key: str, pts: int | None, time_base: Fraction | None, clock: int) -> int:
        """``pts`` as ``clock`` ticks from the first one seen under ``key``; never backwards."""
        last = self._last.get(key, 0)
        if pts is None or time_base is None:
            return last
        first = self._first.setdefault(key, pts)
        ticks = max(last, round((pts - first) * time_base * clock))
        self._last[key] = ticks
        return ticks

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to hand frames to
            self._stop.set()

    def _send(self, frame: EncodedFrame) -> None:
        """Hand one encoded frame to the loop, unless the loop is that far behind."""
        with self._lock:
            if frame.kind == "video" and self._video_gap:
                if not frame.keyframe:
                    self.dropped += 1
                    return
                self._video_gap = False
            if self.posted - self.handled >= _BACKLOG:
                self.dropped += 1
                if frame.kind == "video":
                    # A gap breaks every frame up to the next keyframe.
                    self._video_gap = True
                    if self.encoder is not None:
                        self.encoder.force_keyframe()
                return
            self.posted += 1
        self._post(self._host.deliver, self, frame)

    def _send_decoded(self, frame: Any) -> None:
        """Hand one decoded picture to the loop (for the frame taps), unless it is behind."""
        if self.decoded_posted - self.decoded_handled >= _DECODED_BACKLOG:
            return
        self.decoded_posted += 1
        self._post(self._host.deliver_decoded, self, frame)

    def _audio_frame(self, packet: Any) -> EncodedFrame:
        pts = packet.pts if packet.pts is not None else packet.dts
        return EncodedFrame(
            kind="audio",
            codec="opus",
            data=bytes(packet),
            timestamp=self._ticks("audio", pts, packet.time_base, OPUS_CLOCK),
            clock_rate=OPUS_CLOCK,
            keyframe=True,
            arrival=time.monotonic(),
        )

    # -- forwarded H.264 ----------------------------------------------------------------------

    def _forward(self, packet: Any) -> None:
        pts = packet.pts if packet.pts is not None else packet.dts
        ticks = self._ticks("video", pts, packet.time_base, VIDEO_CLOCK)
        data = bytes(packet)
        continues = _continues_picture(data)
        if self._held is not None:
            if continues:
                self._held = (self._held[0] + data, self._held[1])
                self._split_keyframes = True
                return
            self._release_held()
        elif continues:
            # The rest of a keyframe that was already sent: hold keyframes from now on.
            self._split_keyframes = True
        data, keyframe = self._sets.apply(data)
        if keyframe and self._split_keyframes is not False:
            self._held = (data, ticks)
            return
        self._forward_unit(data, ticks, keyframe)

    def _release_held(self) -> None:
        assert self._held is not None
        (data, ticks), self._held = self._held, None
        data, keyframe = self._sets.apply(data)
        self._keyframes_held += 1
        if self._split_keyframes is None and self._keyframes_held >= 2:
            self._split_keyframes = False  # this camera sends whole keyframes: stop holding
        self._forward_unit(data, ticks, keyframe)

    def _forward_unit(self, data: bytes, ticks: int, keyframe: bool) -> None:
        self._send(
            EncodedFrame(
                kind="video",
                codec="h264",
                data=data,
                timestamp=ticks,
                clock_rate=VIDEO_CLOCK,
                keyframe=keyframe,
                arrival=time.monotonic(),
            )
        )
        self._decode_forwarded(data, ticks, keyframe)

    def _decode_forwarded(self, data: bytes, ticks: int, keyframe: bool) -> None:
        """Decode while the source wants pictures, from the keyframe it started at."""
        if keyframe:
            self._gop = [(data, ticks)]
        elif self._gop is not None:
            self._gop.append((data, ticks))
            if len(self._gop) > _GOP_LIMIT:
                self._gop = None
        if not self.want_decode:
            self._decoder = None
            return
        if self._decoder is None:
            if not self._gop:
                return  # wait for a keyframe
            # The worker read on while the loop decided: catch up from the keyframe.
            self._decoder = av.CodecContext.create("h264", "r")
            backlog = list(self._gop)
        else:
            backlog = [(data, ticks)]
        newest = None
        for unit, pts in backlog:
            if self._decoder is None:
                break  # it failed: start again at the next keyframe
            newest = self._decode(unit, pts) or newest
        if newest is not None:
            self._send_decoded(newest)

    def _decode(self, data: bytes, ticks: int) -> Any:
        packet = av.Packet(data)
        packet.pts = ticks
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as exc:
            logger.debug("RTSP decode failed, waiting for a keyframe: %s", exc)
            self._decoder = None
            self._gop = None
            return None
        if not frames:
            return None
        frame = frames[-1]
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        return frame

    # -- transcoded ---------------------------------------------------------------------------

    def _transcode(self, video: Any, packet: Any) -> None:
        assert self.encoder is not None
        try:
            frames = video.codec_context.decode(packet)
        except av.FFmpegError as exc:
            logger.debug("RTSP decode failed: %s", exc)
            return
        for frame in frames:
            frame.pts = self._ticks("decoded", frame.pts, video.time_base, VIDEO_CLOCK)
            frame.time_base = Fraction(1, VIDEO_CLOCK)
            if self.want_decode:
                self._send_decoded(frame)
            self.encoder.put(frame)

    def _encoded(self, data: bytes, pts: int, keyframe: bool) -> None:
        data, has_idr = self._sets.apply(data)
        self._send(
            EncodedFrame(
                kind="video",
                codec="h264",
                data=data,
                timestamp=pts,
                clock_rate=VIDEO_CLOCK,
                keyframe=keyframe or has_idr,
                arrival=time.monotonic(),
            )
        )
