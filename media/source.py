"""One published track: :class:`TrackSource`, fed complete encoded frames by whoever receives
the track and fanning them out to its subscribers, its encoded taps (pre-roll, recorders) and,
while something wants pictures, its frame taps (the sampler, shared transcodes). See
:mod:`media.forwarder` for the whole path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from aioutil import cancel_and_wait

from ._fanout import Fanout, Outlet
from .keyframes import EncodedFrame, h264_size, vp8_size
from .transcode import Transcode

__all__ = [
    "GOP_CACHE_BYTES",
    "GOP_CACHE_FRAMES",
    "KEYFRAME_MIN_INTERVAL_S",
    "KINDS",
    "FrameTap",
    "SourceStats",
    "TrackSource",
]

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("audio", "video")

#: At most one keyframe request to a publisher per this many seconds; a request inside the
#: window is sent when it ends, never lost.
KEYFRAME_MIN_INTERVAL_S = 0.3

#: Bounds of a source's cached keyframe group (``gop_cache``); a longer group is not cached.
GOP_CACHE_FRAMES = 300
GOP_CACHE_BYTES = 8 * 1024 * 1024

#: Seconds of frames the rolling fps and bitrate figures cover.
_STATS_WINDOW_S = 2.0
#: With temporal layers the publisher aims at most at the lowest estimate divided by this: the
#: base layer's share of the bitrate, assumed no smaller (VP8 L1T3 gives it about 40%).
_MIN_BASE_SHARE = 0.4


class FrameTap(Protocol):
    """Something that takes a source's *decoded* frames (the sampler, a transcode). Never
    blocks; closed when the source ends. A tap with a true ``base_layer_only`` attribute is
    content with a layered publisher's base temporal layer; while only such taps are attached,
    the frames above it are not decoded."""

    def push(self, frame: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceStats:
    """What a published track looks like right now (camera status, metrics)."""

    room_id: str
    publisher_id: str
    track_id: str
    kind: str
    codec: str | None
    width: int | None
    height: int | None
    fps: float
    bitrate_kbps: float
    frames: int
    keyframes: int
    #: Wall-clock seconds of the newest frame (``None`` before the first).
    last_frame_at: float | None
    subscribers: int
    decoding: bool
    #: ``"vp8 -> h264 for 2 subscribers"`` while a shared transcode runs, else ``None``.
    transcoding: str | None


class _RateLimitedKeyframes:
    """Sends keyframe requests through ``send`` at most once per ``interval`` seconds; a request
    inside the window is sent when the window ends."""

    def __init__(
        self,
        send: Callable[[], Awaitable[bool]] | None,
        interval: float,
        clock: Callable[[], float],
        name: str,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._name = name
        self._last = -interval
        self._pending: asyncio.Task[None] | None = None
        self.sent = 0
        self.coalesced = 0

    def request(self) -> None:
        if self._send is None:
            return
        if self._pending is not None:
            self.coalesced += 1
            return
        wait = self._last + self._interval - self._clock()
        self._pending = asyncio.get_running_loop().create_task(
            self._run(max(wait, 0.0)), name=self._name
        )

    async def _run(self, wait: float) -> None:
        try:
            if wait > 0:
                await asyncio.sleep(wait)
            self._last = self._clock()
            self.sent += 1
            assert self._send is not None
            await self._send()
        except ConnectionError:
            pass  # the transport is closing; the source ends with it
        except Exception:
            logger.exception("keyframe request failed (%s)", self._name)
        finally:
            self._pending = None

    def cancel(self) -> None:
        task, self._pending = self._pending, None
        if task is not None:
            task.cancel()


class TrackSource(Fanout):
    """One published track: encoded frames fanned out to subscribers, taps and transcodes.

    ``keyframe_requester`` asks the publisher for a keyframe (a PLI for a WebRTC publisher).
    ``decoded``, when given, is the track on which decoded frames arrive while the source
    wants decoding (aiortc's remote track): a reader task passes them to the frame taps and
    ends the source when the track ends. Without it, the owner calls :meth:`push_decoded` and
    :meth:`end` itself.
    """

    def __init__(
        self,
        room_id: str,
        publisher_id: str,
        kind: str,
        track_id: str,
        *,
        decoded: MediaStreamTrack | None = None,
        keyframe_requester: Callable[[], Awaitable[bool]] | None = None,
        on_ended: Callable[[TrackSource], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        keyframe_interval_s: float = KEYFRAME_MIN_INTERVAL_S,
        gop_cache: bool = False,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown track kind {kind!r}")
        self.room_id = room_id
        self.publisher_id = publisher_id
        self.kind = kind
        self.track_id = track_id
        self._decoded = decoded
        self._on_ended = on_ended
        self._clock = clock
        self._wall_clock = wall_clock
        self._keyframes = _RateLimitedKeyframes(
            keyframe_requester,
            keyframe_interval_s,
            clock,
            f"media-pli-{publisher_id}-{track_id}",
        )
        self._encoded_taps: list[Callable[[EncodedFrame], None]] = []
        self._frame_taps: list[FrameTap] = []
        self._transcodes: dict[str, Transcode] = {}
        self._task: asyncio.Task[None] | None = None
        self._decode_from_keyframe = True
        #: ``(arrival, bytes, temporal layer)`` of the frames of the last two seconds.
        self._window: deque[tuple[float, int, int]] = deque()
        #: How many temporal layers the publisher sends (1 without temporal layers).
        self.temporal_layers = 1
        #: The frames since the newest keyframe, replayed to a new subscriber (``gop_cache``:
        #: for publishers that cannot be asked for a keyframe, such as RTSP cameras).
        self._gop: list[EncodedFrame] | None = [] if gop_cache and kind == "video" else None
        self._gop_bytes = 0
        self.live = True
        self.codec: str | None = None
        self.size: tuple[int, int] | None = None
        #: Encoded frames, keyframes and bytes received; decoded frames seen.
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.decoded_frames = 0
        self.last_frame_at: float | None = None

    def __repr__(self) -> str:
        return f"<TrackSource {self.kind} of {self.publisher_id} in {self.room_id}>"

    @property
    def origin(self) -> TrackSource:
        return self

    @property
    def keyframe_requests(self) -> int:
        """Keyframe requests sent to the publisher (after rate limiting)."""
        return self._keyframes.sent

    @property
    def transcode_count(self) -> int:
        return sum(1 for t in self._transcodes.values() if t.live)

    @property
    def decoding(self) -> bool:
        """Whether frames are being decoded (some frame tap is attached)."""
        return bool(self._frame_taps) and self.live

    # -- encoded side ---------------------------------------------------------------------------

    def push(self, frame: EncodedFrame) -> bool:
        """One complete encoded frame from the publisher, on the loop thread. Returns whether
        it must be decoded (and decoded frames passed to :meth:`push_decoded`)."""
        if not self.live:
            return False
        self.frames += 1
        self.bytes += len(frame.data)
        self.last_frame_at = self._wall_clock()
        layer = frame.temporal_id or 0
        if layer >= self.temporal_layers:
            self.temporal_layers = layer + 1
        self._window.append((frame.arrival, len(frame.data), layer))
        while self._window and self._window[0][0] < frame.arrival - _STATS_WINDOW_S:
            self._window.popleft()
        if frame.codec != self.codec:
            self._codec_changed(frame.codec)
        if self._gop is not None:
            self._cache(frame)
        if frame.keyframe:
            self.keyframes += 1
            if self.kind == "video":
                size = vp8_size(frame.data) if frame.codec == "vp8" else h264_size(frame.data)
                if size is not None:
                    self.size = size
        self._fan(frame)
        for tap in self._encoded_taps:
            try:
                tap(frame)
            except Exception:
                logger.exception("encoded tap of %r failed", self)
        if not self._frame_taps:
            self._decode_from_keyframe = True
            return False
        if self._decode_from_keyframe:
            if not frame.keyframe:
                return False
            self._decode_from_keyframe = False
        if frame.temporal_id and self._base_layer_enough():
            return False  # base-layer frames never refer to it: the decoder does not need it
        return True

    def _base_layer_enough(self) -> bool:
        """Whether every frame tap is content with the base layer (the grading sampler, at a
        few frames a second, is; a transcode feeding subscribers is not)."""
        return all(getattr(tap, "base_layer_only", False) for tap in self._frame_taps)

    def _cache(self, frame: EncodedFrame) -> None:
        assert self._gop is not None
        if frame.keyframe:
            self._gop.clear()
            self._gop_bytes = 0
        elif not self._gop:
            return  # no keyframe yet, or the group outgrew the cache: wait for the next one
        self._gop.append(frame)
        self._gop_bytes += len(frame.data)
        if len(self._gop) > GOP_CACHE_FRAMES or self._gop_bytes > GOP_CACHE_BYTES:
            self._gop.clear()
            self._gop_bytes = 0

    def attach(self, outlet: Outlet) -> None:
        """Feed ``outlet``: directly when it takes this source's codec, else through the shared
        transcode to its codec. With a keyframe group cached, the outlet starts with it."""
        if (
            self.codec is not None
            and outlet.codec is not None
            and outlet.codec != self.codec
            and outlet.kind == self.kind
        ):
            self.transcode(outlet.codec).attach(outlet)
            return
        super().attach(outlet)
        if self._gop:
            outlet.replay(list(self._gop))

    def _codec_changed(self, codec: str) -> None:
        self.codec = codec
        for outlet in tuple(self._outlets):
            if outlet.codec is not None and outlet.codec != codec:
                self.transcode(outlet.codec).attach(outlet)

    def subscriber_estimate(self) -> int | None:
        """What the publisher should aim for, from the bitrates this track's direct subscribers
        said they can take (REMB), in bit/s; None while none has said.

        Without temporal layers that is the lowest estimate: every subscriber gets every frame.
        With them, a slow subscriber is sent fewer layers (:meth:`SubscriberTrack.choose_layer`)
        rather than slowing the rest: the aim is the highest estimate, but never so high that
        the base layer alone would not fit the lowest one."""
        estimates: list[int] = [
            bps
            for outlet in self.subscribers
            if (bps := getattr(outlet, "estimate_bps", None)) is not None
        ]
        if not estimates:
            return None
        if self.temporal_layers < 2:
            return min(estimates)
        share = max(_MIN_BASE_SHARE, self.layer_share(0))
        return int(min(max(estimates), min(estimates) / share))

    def layer_bitrates(self) -> list[float]:
        """Bit/s of the last two seconds up to each temporal layer: ``[base, base + 1, ...]``
        (one entry without temporal layers; empty before two frames)."""
        window = self._window
        if len(window) < 2:
            return []
        span = window[-1][0] - window[0][0]
        if span <= 0:
            return []
        per_layer = [0] * self.temporal_layers
        for _, size, layer in window:
            per_layer[layer] += size
        rates, total = [], 0
        for size in per_layer:
            total += size
            rates.append(total * 8 / span)
        return rates

    def layer_share(self, layer: int) -> float:
        """The share of the bitrate that layers up to ``layer`` carry (1.0 when unknown)."""
        rates = self.layer_bitrates()
        if not rates or rates[-1] <= 0 or layer >= len(rates):
            return 1.0
        return rates[layer] / rates[-1]

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (rate-limited; never lost)."""
        if self.live and self.kind == "video":
            self._keyframes.request()

    def add_encoded_tap(self, tap: Callable[[EncodedFrame], None]) -> None:
        """Also show every encoded frame to ``tap`` (pre-roll, recorders); must not block."""
        self._encoded_taps.append(tap)

    # -- decoded side ---------------------------------------------------------------------------

    def add_frame_tap(self, tap: FrameTap) -> None:
        """Decode from the next keyframe on and show every decoded frame to ``tap``."""
        if not self.live:
            tap.close()
            return
        first = not self._frame_taps
        self._frame_taps.append(tap)
        if first:
            self._decode_from_keyframe = True
            self.request_keyframe()

    def remove_frame_tap(self, tap: FrameTap) -> None:
        """Stop showing decoded frames to ``tap``; decoding stops with the last one."""
        if tap in self._frame_taps:
            self._frame_taps.remove(tap)

    def push_decoded(self, frame: Any) -> None:
        """One decoded frame (on the loop thread), for the frame taps."""
        self.decoded_frames += 1
        for tap in tuple(self._frame_taps):
            try:
                tap.push(frame)
            except Exception:
                logger.exception("frame tap of %r failed", self)

    def transcode(self, codec: str) -> Transcode:
        """The one shared transcode of this source to ``codec`` (made on first use)."""
        existing = self._transcodes.get(codec)
        if existing is not None and existing.live:
            return existing
        transcode = Transcode(self, codec, on_idle=self._transcode_idle)
        self._transcodes[codec] = transcode
        self.add_frame_tap(transcode)
        logger.info("transcoding %s to %s for a subscriber", self.codec, codec)
        return transcode

    def _transcode_idle(self, transcode: Transcode) -> None:
        if self._transcodes.get(transcode.codec) is transcode:
            del self._transcodes[transcode.codec]
        self.remove_frame_tap(transcode)
        transcode.close()

    # -- lifecycle and stats ----------------------------------------------------------------------

    def start(self) -> None:
        """Start reading ``decoded`` (owned by this source; :meth:`aclose` ends it)."""
        if self._task is None and self._decoded is not None:
            self._task = asyncio.create_task(
                self._read_decoded(),
                name=f"media-source-{self.publisher_id}-{self.kind}-{self.track_id}",
            )

    async def _read_decoded(self) -> None:
        assert self._decoded is not None
        try:
            while True:
                frame = await self._decoded.recv()
                self.push_decoded(frame)
        except MediaStreamError:
            logger.debug(
                "published %s track ended",
                self.kind,
                extra={"room_id": self.room_id, "participant_id": self.publisher_id},
            )
        except Exception:
            logger.exception(
                "reading a published %s track failed",
                self.kind,
                extra={"room_id": self.room_id, "participant_id": self.publisher_id},
            )
        self.end()

    def end(self) -> None:
        """The publisher stopped: detach everyone, close the taps, tell the owner once."""
        if not self.live:
            return
        self._shutdown()
        if self._on_ended is not None:
            self._on_ended(self)

    def _shutdown(self) -> None:
        self.live = False
        self._keyframes.cancel()
        self._detach_all()
        for transcode in list(self._transcodes.values()):
            transcode.close()
        self._transcodes.clear()
        taps, self._frame_taps = self._frame_taps, []
        for tap in taps:
            tap.close()
        self._encoded_taps.clear()

    async def aclose(self) -> None:
        """Stop reading and detach every subscriber. Idempotent."""
        self._shutdown()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def stats(self) -> SourceStats:
        window = list(self._window)
        fps = bitrate = 0.0
        if len(window) >= 2:
            span = window[-1][0] - window[0][0]
            if span > 0:
                fps = (len(window) - 1) / span
                bitrate = sum(size for _, size, _ in window[1:]) * 8 / span / 1000
        transcoding = None
        if self._transcodes:
            transcoding = ", ".join(
                f"{self.codec} -> {t.codec} for {len(t.subscribers)} subscriber(s)"
                for t in self._transcodes.values()
            )
        return SourceStats(
            room_id=self.room_id,
            publisher_id=self.publisher_id,
            track_id=self.track_id,
            kind=self.kind,
            codec=self.codec,
            width=self.size[0] if self.size else None,
            height=self.size[1] if self.size else None,
            fps=round(fps, 1),
            bitrate_kbps=round(bitrate, 1),
            frames=self.frames,
            keyframes=self.keyframes,
            last_frame_at=self.last_frame_at,
            subscribers=len(self._outlets)
            + sum(len(t.subscribers) for t in self._transcodes.values()),
            decoding=self.decoding,
            transcoding=transcoding,
        )
