"""Encoded frames copied into a Matroska/WebM file: no decode, no re-encode.

One :class:`Recorder` writes one file holding one participant's tracks (camera and microphone).
The live path only appends to a bounded queue (:meth:`Recorder.write` never blocks and counts
what it drops); a dedicated thread muxes with PyAV. Clusters are closed at least every second
and every packet is flushed to the OS, so a process killed mid-recording leaves a file that
plays up to its last second or so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .keyframes import EncodedFrame, h264_parameter_sets, vp8_size

__all__ = [
    "AUDIO_GAP_S",
    "MUXER_OPTIONS",
    "VIDEO_GAP_S",
    "Gap",
    "GapReason",
    "RecordedFile",
    "Recorder",
    "container_for",
]

logger = logging.getLogger(__name__)

#: Matroska muxer options for crash safety: a new cluster at least every second (or 1 MiB),
#: and every packet flushed to the OS (SIGKILL loses nothing the kernel has).
MUXER_OPTIONS = {
    "cluster_time_limit": "1000",
    "cluster_size_limit": str(1024 * 1024),
    "flush_packets": "1",
}
#: Frames the writer thread may lag (about 10 s of 30 fps video plus audio) before drops.
DEFAULT_QUEUE = 1000
#: A track with no frame in the file for longer than this (seconds) has a gap there: a frozen
#: picture past what a viewer takes for a slow frame, or an audible dropout.
VIDEO_GAP_S = 0.5
AUDIO_GAP_S = 0.2
_WEBM_CODECS = frozenset({"vp8", "vp9", "opus"})
_STOP = object()


def container_for(codecs: Sequence[str | None]) -> tuple[str, str]:
    """``(format, extension)``: WebM when every codec is allowed there, else Matroska."""
    if codecs and all(codec in _WEBM_CODECS for codec in codecs):
        return "webm", ".webm"
    return "matroska", ".mkv"


class GapReason(StrEnum):
    """Why a track has nothing to show or play in a stretch of the file."""

    #: No frame came (an outage, holes the live path gave up on, a publisher's timestamp jump).
    NO_FRAMES = "no frames"
    #: Frames came but could not be written: video waits for a keyframe after a drop (or at
    #: the start of the file).
    WAITED_FOR_KEYFRAME = "waited for keyframe"


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of one track with nothing in the file, in the file's own timeline (seconds
    from the file's 0, as a player shows it)."""

    #: The track's kind: ``"video"`` or ``"audio"``.
    kind: str
    start_s: float
    end_s: float
    #: A :class:`GapReason` value.
    reason: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "reason": str(self.reason),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gap:
        return cls(
            kind=str(data["kind"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            reason=str(data["reason"]),
        )


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """A finished recording of one participant's tracks."""

    path: Path
    participant_id: str
    #: ``"webm"`` or ``"matroska"``.
    container: str
    #: Codec of each track in the file, video first (``("vp8", "opus")``).
    codecs: tuple[str, ...]
    #: Wall-clock seconds (``time.time()``) of the first and last frame in the file.
    started_at: float
    ended_at: float
    #: Frames / keyframes written (all tracks), and the file's size in bytes.
    frames: int
    keyframes: int
    bytes: int
    duration_s: float
    #: How far the file reaches back before the capture was asked for (0 without pre-roll).
    preroll_s: float
    #: Frames the live path dropped because the writer fell behind (video then skips to the
    #: next keyframe).
    dropped: int
    #: Where a track has nothing in the file (see :class:`Gap`), in time order; ``()`` for a
    #: clip without gaps.
    gaps: tuple[Gap, ...] = ()
    #: Why the file is incomplete or missing, if it is.
    error: str | None = None


@dataclass(slots=True)
class _Track:
    key: str
    kind: str
    codec: str | None = None
    clock_rate: int = 90_000
    offset: int | None = None
    last_pts: int = -1
    needs_keyframe: bool = True
    live: bool = True
    #: Ticks with no frame after which the next frame marks a gap (0 right after a drop, so
    #: that the keyframe that ends the wait marks it whatever its length).
    gap_ticks: int = 0
    gap_s: float = 0.0
    #: Where video's wait for a keyframe after a drop began (the dropped frame's ticks).
    waiting_from: int | None = None
    #: Video frames came before the track's first frame in the file (it waited for a keyframe).
    skipped: bool = False
    gaps: list[Gap] = field(default_factory=list)
    # Writer-thread side.
    stream: Any = None
    size: tuple[int, int] | None = None
    extradata: bytes | None = None
    first_pts: int | None = None
    end_pts: int = 0


@dataclass(slots=True)
class _Stats:
    frames: int = 0
    keyframes: int = 0
    payload: int = 0
    first_arrival: float | None = None
    last_arrival: float | None = None
    tracks: list[str] = field(default_factory=list)


class Recorder:
    """Writes encoded frames of several tracks into one file, off the event loop.

    ``origin`` is the loop-clock (arrival) time that becomes 0 in the file: each track's first
    frame is placed at its arrival relative to ``origin``, later frames by their RTP timestamps,
    which keeps audio and video in step. ``requested_at`` is when the capture was asked for.
    """

    def __init__(
        self,
        path: Path,
        participant_id: str,
        container: str,
        *,
        origin: float,
        requested_at: float,
        queue_size: int = DEFAULT_QUEUE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.participant_id = participant_id
        self.container = container
        self._origin = origin
        self._requested_at = requested_at
        self._clock = clock
        self._wall_offset = wall_clock() - clock()
        self._tracks: dict[str, _Track] = {}
        self._queue: queue.Queue[Any] = queue.Queue()
        self._max_queue = queue_size
        self._stats = _Stats()
        self.dropped = 0
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[RecordedFile] | None = None
        self._stopping = False
        self._error: str | None = None
        self._output: Any = None

    def __repr__(self) -> str:
        return f"<Recorder {self.path.name}>"

    # -- loop side ----------------------------------------------------------------------------

    def add_track(self, key: str, kind: str) -> None:
        """Declare a track before :meth:`start` (its codec comes with its first frame)."""
        if self._thread is not None:
            raise RuntimeError("tracks must be added before start()")
        self._tracks[key] = _Track(key, kind)
        self._stats.tracks.append(key)

    def start(self) -> None:
        """Start the writer thread (owned by this recorder; :meth:`aclose` ends it)."""
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name=f"recorder-{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def backlog(self) -> int:
        """Frames queued for the writer thread: how far it lags (at ``queue_size`` it drops)."""
        return self._queue.qsize()

    def write(self, key: str, frame: EncodedFrame) -> None:
        """Queue one frame of track ``key``; never blocks. Video starts at a keyframe."""
        track = self._tracks.get(key)
        if track is None or self._stopping or not track.live:
            return
        if track.needs_keyframe:
            if not frame.keyframe:
                track.skipped = True
                return
            track.needs_keyframe = False
        if self._queue.qsize() >= self._max_queue:
            self.dropped += 1
            if track.kind == "video":
                _dropped_video(track, frame)
            return
        if track.offset is None:
            track.codec = frame.codec
            track.clock_rate = frame.clock_rate
            lead = max(0, round((frame.arrival - self._origin) * frame.clock_rate))
            track.offset = lead - frame.timestamp
            track.gap_s = VIDEO_GAP_S if track.kind == "video" else AUDIO_GAP_S
            track.gap_ticks = round(track.gap_s * frame.clock_rate)
        pts = frame.timestamp + track.offset
        if pts <= track.last_pts:
            pts = track.last_pts + 1
        elif pts - track.last_pts > track.gap_ticks:
            # The one comparison a frame costs (the first compares with the file's 0).
            _note_gap(track, pts)
        track.last_pts = pts
        stats = self._stats
        stats.frames += 1
        stats.keyframes += frame.keyframe
        stats.payload += len(frame.data)
        if stats.first_arrival is None:
            stats.first_arrival = frame.arrival
        stats.last_arrival = frame.arrival
        self._queue.put_nowait((track, frame, pts))

    def end_track(self, key: str) -> bool:
        """The track's publisher is gone; True when no live track is left."""
        track = self._tracks.get(key)
        if track is not None:
            track.live = False
        return not any(t.live for t in self._tracks.values())

    async def aclose(self) -> RecordedFile:
        """Finish the file (writes the index) and describe it. Idempotent."""
        if self._done is None:
            self.start()
        assert self._done is not None
        if not self._stopping:
            self._stopping = True
            self._queue.put_nowait(_STOP)
        return await asyncio.shield(self._done)

    # -- writer thread ------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        output: Any = None
        pending: list[tuple[_Track, EncodedFrame, int]] = []
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if output is None:
                    pending.append(item)
                    if self._ready(pending) or len(pending) > self._max_queue:
                        output = self._open(pending)
                        pending = []
                    continue
                self._mux(item)
            if output is None and pending:
                output = self._open(pending)
        except Exception as exc:
            logger.exception("recording %s failed", self.path)
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            if output is not None:
                try:
                    output.close()
                except Exception as exc:
                    logger.exception("finishing %s failed", self.path)
                    self._error = self._error or f"{type(exc).__name__}: {exc}"
        result = self._result()
        try:
            loop.call_soon_threadsafe(self._finish, result)
        except RuntimeError:  # the loop is already closed
            pass

    def _finish(self, result: RecordedFile) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(result)

    def _ready(self, pending: list[tuple[_Track, EncodedFrame, int]]) -> bool:
        """Every declared track has shown its first frame (video: its picture size)."""
        seen = {track.key for track, _, _ in pending}
        return seen >= set(self._tracks)

    def _open(self, pending: list[tuple[_Track, EncodedFrame, int]]) -> Any:
        output = av.open(str(self.path), "w", format=self.container, options=MUXER_OPTIONS)
        self._output = output
        firsts: dict[str, tuple[_Track, EncodedFrame]] = {}
        for track, frame, _ in pending:
            firsts.setdefault(track.key, (track, frame))
        # Video first, so players pick it as the main track.
        for track, frame in sorted(firsts.values(), key=lambda tf: tf[0].kind != "video"):
            self._add_stream(output, track, frame)
        for item in pending:
            self._mux(item)
        return output

    def _add_stream(self, output: Any, track: _Track, frame: EncodedFrame) -> None:
        codec = frame.codec
        if track.kind == "audio":
            if codec != "opus":
                logger.warning("not recording %s audio in %s", codec, self.path)
                return
            stream = output.add_stream("libopus" if _has("libopus") else "opus", rate=48_000)
            stream.codec_context.layout = "stereo"
        else:
            size = _probe_size(codec, frame.data)
            if size is None:
                logger.warning("cannot read the picture size of %s in %s", codec, self.path)
                return
            stream = output.add_stream(codec, rate=90_000)
            stream.width, stream.height = size
            if codec == "h264":
                stream.codec_context.extradata = h264_parameter_sets(frame.data)
        stream.time_base = Fraction(1, frame.clock_rate)
        track.stream = stream

    def _mux(self, item: tuple[_Track, EncodedFrame, int]) -> None:
        track, frame, pts = item
        if track.stream is None:
            return
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, frame.clock_rate)
        packet.is_keyframe = frame.keyframe
        packet.stream = track.stream
        self._output.mux(packet)
        if track.first_pts is None:
            track.first_pts = pts
        track.end_pts = pts

    def _result(self) -> RecordedFile:
        stats = self._stats
        first = stats.first_arrival if stats.first_arrival is not None else self._origin
        last = stats.last_arrival if stats.last_arrival is not None else first
        durations = [
            (t.end_pts - t.first_pts) / t.clock_rate
            for t in self._tracks.values()
            if t.first_pts is not None
        ]
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        return RecordedFile(
            path=self.path,
            participant_id=self.participant_id,
            container=self.container,
            codecs=tuple(
                t.codec
                for t in sorted(self._tracks.values(), key=lambda t: t.kind != "video")
                if t.codec is not None and t.stream is not None
            ),
            started_at=first + self._wall_offset,
            ended_at=last + self._wall_offset,
            frames=stats.frames,
            keyframes=stats.keyframes,
            bytes=size,
            duration_s=max(durations, default=0.0),
            preroll_s=max(0.0, self._requested_at - first),
            dropped=self.dropped,
            gaps=self._gaps(),
            error=self._error if size else (self._error or "no frame was recorded"),
        )

    def _gaps(self) -> tuple[Gap, ...]:
        """Every track's gaps in the file, with the stretch from a track's last frame to the
        file's end when that is one (a track that ended or stalled before the others)."""
        written = [t for t in self._tracks.values() if t.first_pts is not None]
        end = max((t.end_pts / t.clock_rate for t in written), default=0.0)
        gaps: list[Gap] = []
        for track in written:
            gaps.extend(track.gaps)
            last = track.end_pts / track.clock_rate
            if track.waiting_from is not None and end > track.waiting_from / track.clock_rate:
                start, reason = track.waiting_from, GapReason.WAITED_FOR_KEYFRAME
            elif end - last > track.gap_s:
                start, reason = track.end_pts, GapReason.NO_FRAMES
            else:
                continue
            gaps.append(Gap(track.kind, _seconds(start, track.clock_rate), round(end, 3), reason))
        return tuple(sorted(gaps, key=lambda g: (g.start_s, g.kind != "video")))


def _dropped_video(track: _Track, frame: EncodedFrame) -> None:
    # The frames after a lost one do not decode until the next keyframe.
    track.needs_keyframe = True
    if track.offset is None:
        track.skipped = True  # nothing is in the file yet: it starts at a later keyframe
    elif track.waiting_from is None:
        track.waiting_from = frame.timestamp + track.offset
        # Whatever the wait's length, the keyframe that ends it marks a gap.
        track.gap_ticks = 0


def _note_gap(track: _Track, pts: int) -> None:
    """``track`` has nothing in the file from its last frame (or the file's 0) to ``pts``."""
    waited, track.waiting_from = track.waiting_from, None
    track.gap_ticks = round(track.gap_s * track.clock_rate)
    if track.last_pts < 0:
        if pts <= track.gap_ticks:
            return
        start = 0
        reason = GapReason.WAITED_FOR_KEYFRAME if track.skipped else GapReason.NO_FRAMES
    elif waited is not None:
        start, reason = min(max(waited, track.last_pts), pts), GapReason.WAITED_FOR_KEYFRAME
    else:
        start, reason = track.last_pts, GapReason.NO_FRAMES
    rate = track.clock_rate
    track.gaps.append(Gap(track.kind, _seconds(start, rate), _seconds(pts, rate), reason))


def _seconds(ticks: int, clock_rate: int) -> float:
    return round(ticks / clock_rate, 3)


def _has(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True


def _probe_size(codec: str, data: bytes) -> tuple[int, int] | None:
    if codec == "vp8":
        return vp8_size(data)
    # Anything else: decode the first keyframe once (a capture's only decode).
    try:
        decoder: Any = av.CodecContext.create(codec, "r")
        for frame in decoder.decode(av.Packet(data)):
            return int(frame.width), int(frame.height)
        for frame in decoder.decode(None):
            return int(frame.width), int(frame.height)
    except Exception:
        logger.exception("probing a %s keyframe failed", codec)
    return None
