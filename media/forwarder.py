"""The one seam through which media flows from publishers to subscribers, encoded.

A published track becomes a :class:`TrackSource`. Whoever receives it (the engine's receiver tap
for a WebRTC publisher, an ingest for RTSP) :meth:`~TrackSource.push`-es every complete
**encoded** frame; the source fans it out to its subscribers without decoding it, and each
subscriber's aiortc sender packetizes the ``av.Packet`` it gets without encoding it. Decoding
happens once per published track, and only while a frame tap (the grading sampler, a shared
transcode) is attached: the push tells the receiver whether to decode.

Each sending transceiver of a subscriber gets one :class:`SubscriberTrack` (``subscriber.py``),
set on its ``RTCRtpSender`` once and kept for the life of the peer; routing only re-points it at
another source. An aiortc sender blocked in ``recv()`` of a replaced track keeps waiting on the
*old* track, and a track that ends stops the sender for good, so swapping tracks under a sender
would not survive a publisher leaving and another arriving.

A subscriber starts at a keyframe (it asks the source for one, rate-limited, and drops what
comes before) and its timestamps stay continuous across source changes. A subscriber whose
negotiated codec is not the source's gets the source's one shared :class:`Transcode`
(``transcode.py``) to that codec, never a black screen and never one encoder per subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from aioutil import cancel_and_wait

from ._fanout import Fanout, Outlet
from .keyframes import EncodedFrame, h264_size, vp8_size
from .subscriber import DEFAULT_QUEUE, ForwardingTotals, SubscriberTrack
from .transcode import Transcode

__all__ = [
    "KINDS",
    "ForwardingTotals",
    "FrameTap",
    "Forwarder",
    "SourceStats",
    "SubscriberTrack",
    "TrackSource",
    "Transcode",
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


class FrameTap(Protocol):
    """Something that takes a source's *decoded* frames (the sampler, a transcode). Never
    blocks; closed when the source ends."""

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
        self._window: deque[tuple[float, int]] = deque()
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
        self._window.append((frame.arrival, len(frame.data)))
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
        return True

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
                bitrate = sum(size for _, size in window[1:]) * 8 / span / 1000
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


@dataclass(slots=True)
class _Member:
    room_id: str
    participant_id: str
    sources: list[TrackSource] = field(default_factory=list)
    outlets: list[SubscriberTrack] = field(default_factory=list)


class Forwarder:
    """Routes every participant's published tracks to every *other* participant of its room.

    Participants :meth:`join` a room, :meth:`publish` sources and :meth:`subscribe` one
    :class:`SubscriberTrack` per sending transceiver. :meth:`route` (re)assigns sources to idle
    subscriber tracks and reports who has fewer subscriber tracks than available sources.
    """

    def __init__(
        self,
        on_source_ended: Callable[[TrackSource], None] | None = None,
        *,
        queue_sizes: dict[str, int] | None = None,
    ) -> None:
        self._on_source_ended = on_source_ended
        self._queue_sizes = {**DEFAULT_QUEUE, **(queue_sizes or {})}
        self._members: dict[str, _Member] = {}
        self._rooms: dict[str, dict[str, _Member]] = {}
        #: What every subscriber track got, for metrics.
        self.totals = ForwardingTotals()

    # -- membership ---------------------------------------------------------------------------

    def join(self, room_id: str, participant_id: str) -> None:
        """Register a participant in a room (before it publishes or subscribes)."""
        current = self._members.get(participant_id)
        if current is not None:
            if current.room_id == room_id:
                return
            raise ValueError(f"participant {participant_id!r} is already in {current.room_id!r}")
        member = _Member(room_id, participant_id)
        self._members[participant_id] = member
        self._rooms.setdefault(room_id, {})[participant_id] = member

    async def leave(self, participant_id: str) -> str | None:
        """Unpublish and unsubscribe a participant; returns the room it was in."""
        member = self._members.pop(participant_id, None)
        if member is None:
            return None
        room = self._rooms.get(member.room_id, {})
        room.pop(participant_id, None)
        if not room:
            self._rooms.pop(member.room_id, None)
        self._unsubscribe(member)
        await self._unpublish(member)
        return member.room_id

    def room_of(self, participant_id: str) -> str | None:
        member = self._members.get(participant_id)
        return member.room_id if member else None

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        participant_id: str,
        kind: str,
        track_id: str,
        *,
        decoded: MediaStreamTrack | None = None,
        keyframe_requester: Callable[[], Awaitable[bool]] | None = None,
        gop_cache: bool = False,
    ) -> TrackSource:
        """A new source for a track ``participant_id`` publishes; the caller pushes its frames."""
        member = self._member(participant_id)
        source = TrackSource(
            member.room_id,
            participant_id,
            kind,
            track_id,
            decoded=decoded,
            keyframe_requester=keyframe_requester,
            on_ended=self._source_ended,
            gop_cache=gop_cache,
        )
        member.sources.append(source)
        source.start()
        return source

    async def unpublish(self, participant_id: str) -> None:
        """Stop forwarding everything ``participant_id`` publishes; its subscribers go idle."""
        member = self._members.get(participant_id)
        if member is not None:
            await self._unpublish(member)

    async def _unpublish(self, member: _Member) -> None:
        sources, member.sources = member.sources, []
        await asyncio.gather(*(source.aclose() for source in sources))

    def _source_ended(self, source: TrackSource) -> None:
        member = self._members.get(source.publisher_id)
        if member is not None and source in member.sources:
            member.sources.remove(source)
        if self._on_source_ended is not None:
            self._on_source_ended(source)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(self, participant_id: str, kind: str) -> SubscriberTrack:
        """A new, idle track for one of ``participant_id``'s sending transceivers.

        :meth:`route` attaches a source to it.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown track kind {kind!r}")
        member = self._member(participant_id)
        outlet = SubscriberTrack(kind, participant_id, self._queue_sizes[kind], self.totals)
        member.outlets.append(outlet)
        return outlet

    def unsubscribe(self, participant_id: str) -> None:
        """Stop every subscriber track of ``participant_id`` (their senders then stop)."""
        member = self._members.get(participant_id)
        if member is not None:
            self._unsubscribe(member)

    @staticmethod
    def _unsubscribe(member: _Member) -> None:
        outlets, member.outlets = member.outlets, []
        for outlet in outlets:
            outlet.stop()

    # -- routing ------------------------------------------------------------------------------

    def available(self, participant_id: str) -> dict[str, int]:
        """How many live tracks of each kind the room offers ``participant_id``."""
        member = self._member(participant_id)
        return {kind: len(self._offered(member, kind)) for kind in KINDS}

    def _offered(self, member: _Member, kind: str) -> list[TrackSource]:
        return [
            source
            for other in self._rooms.get(member.room_id, {}).values()
            if other is not member
            for source in other.sources
            if source.kind == kind and source.live
        ]

    def offered_codecs(self, participant_id: str, kind: str) -> list[str]:
        """The codecs of the live sources the room offers ``participant_id``, most used first
        (what its transceivers should negotiate to avoid a transcode)."""
        member = self._member(participant_id)
        counts: dict[str, int] = {}
        for source in self._offered(member, kind):
            if source.codec is not None:
                counts[source.codec] = counts.get(source.codec, 0) + 1
        return sorted(counts, key=lambda codec: -counts[codec])

    def route(self, room_id: str) -> dict[str, dict[str, int]]:
        """Attach sources to idle subscriber tracks in ``room_id``, keeping existing pairs.

        Returns, for each participant with fewer subscriber tracks of some kind than the room
        offers it, the number of tracks of each kind the room offers (what it should be able to
        receive after renegotiating).
        """
        short: dict[str, dict[str, int]] = {}
        for member in self._rooms.get(room_id, {}).values():
            counts: dict[str, int] = {}
            lacking = False
            for kind in KINDS:
                offered = self._offered(member, kind)
                outlets = [o for o in member.outlets if o.kind == kind and o.readyState == "live"]
                counts[kind] = len(offered)
                lacking |= len(offered) > len(outlets)
                for outlet in outlets:
                    fed_by = outlet.source
                    if fed_by is not None and (not fed_by.live or fed_by.origin not in offered):
                        fed_by.detach(outlet)
                taken = {outlet.source.origin for outlet in outlets if outlet.source is not None}
                free = [source for source in offered if source not in taken]
                for outlet in outlets:
                    if outlet.source is None and free:
                        # Prefer a source in the outlet's own codec: no transcode.
                        match = next((s for s in free if s.codec == outlet.codec), free[0])
                        free.remove(match)
                        match.attach(outlet)
            if lacking:
                short[member.participant_id] = counts
        return short

    # -- stats and shutdown -------------------------------------------------------------------

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    @property
    def published_tracks(self) -> int:
        return sum(
            1 for member in self._members.values() for source in member.sources if source.live
        )

    def sources(self, room_id: str) -> list[TrackSource]:
        """Live published tracks in a room, in publishing order per participant."""
        return [
            source
            for member in self._rooms.get(room_id, {}).values()
            for source in member.sources
            if source.live
        ]

    def all_sources(self) -> list[TrackSource]:
        """Every live published track, in every room."""
        return [s for m in self._members.values() for s in m.sources if s.live]

    def outlets(self, participant_id: str) -> list[SubscriberTrack]:
        """The subscriber tracks of a participant."""
        member = self._members.get(participant_id)
        return list(member.outlets) if member else []

    def _member(self, participant_id: str) -> _Member:
        member = self._members.get(participant_id)
        if member is None:
            raise KeyError(f"participant {participant_id!r} has not joined a room")
        return member

    async def aclose(self) -> None:
        """Stop every source and subscriber track. Idempotent."""
        for participant_id in list(self._members):
            await self.leave(participant_id)
