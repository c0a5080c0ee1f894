"""Redacted copies of evidence for sharing: the faces (and, on request, the text) of an item's
photos, snapshots and clips hidden in a derived copy, filed as a new evidence item that names
its original; the original is never touched and still verifies.

What a copy holds: every picture of the item (JPEG or PNG) decoded, redacted and encoded again
in its own format (without the original's metadata); every video (WebM, Matroska, MP4) decoded,
redacted frame by frame and encoded again: VP8 in WebM (WebM takes nothing else), H.264
(libx264) in Matroska and MP4 when PyAV has it, VP9 otherwise, with the sound copied as it is;
any other file (a sound-only recording, the strokes of a marked-up frame) copied unchanged.
The files keep their names, so a copy reads like its original.

In a clip the detector looks at every frame ``detect_every_s`` apart (and the last one). A frame
between two looks hides what both found, the box spanning each face's move between them, and
what the looks before and after those found: a face that moves, or that one look misses, stays
covered.

The copy's record is the original's (case, order, tracking number, unit, stage, grading,
retention class), with a note saying it is a redacted copy and, instead of the original's
details (its location, its transcript), ``details["derived_from"]`` (the original's item id,
files with their SHA-256 and log leaf) and ``details["redaction"]`` (method, detectors, how
many faces and text regions, frames checked, per file). Its "item.added" log entry is the link
in the log; the original's log gets the "item.viewed" of the read, with the reason given.

Refused before any work, with nothing logged: a clip longer than ``max_clip_s`` (the message
names the limit and its setting), an item with no picture or video, a video file that cannot be
read. Stopped with nothing filed: a picture that cannot be decoded, a file whose bytes no longer
match its recorded SHA-256 (a copy is only ever made of the evidence as filed), and work that
runs past ``max_seconds`` (abandoned at the next frame).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import shutil
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import av
import cv2
import numpy as np

from evidence import EvidenceArchive, EvidenceFile, EvidenceItem
from inference import REDACT_METHODS, RedactMethod, Region, redact_image
from server.errors import DomainError, DomainErrorCode, InvalidRequest

__all__ = [
    "MAX_CLIP_SETTING",
    "MAX_SECONDS_SETTING",
    "ClipTooLong",
    "FileRedaction",
    "NotRedactable",
    "RedactionService",
    "RedactionTimedOut",
    "RegionDetector",
]

logger = logging.getLogger(__name__)

#: The settings the limits come from, named in the refusals so an operator knows what to change.
MAX_CLIP_SETTING = "INSPECT_REDACT_MAX_CLIP_S"
MAX_SECONDS_SETTING = "INSPECT_REDACT_MAX_SECONDS"

Image = np.ndarray[Any, Any]
_PICTURES = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}
_VIDEOS = {".webm": "webm", ".mkv": "matroska", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4"}
_JPEG_QUALITY = 92
#: Seconds of slack on top of ``max_seconds`` before the loop stops waiting for a worker that
#: does not reach its next deadline check (one detection of a huge frame).
_GRACE_S = 5.0


class RegionDetector(Protocol):
    """Finds what to hide in an RGB picture (``inference.FaceDetector``, ``TextDetector``)."""

    @property
    def name(self) -> str: ...

    @property
    def min_confidence(self) -> float: ...

    def detect(self, image: Image) -> Sequence[Region]: ...


class ClipTooLong(InvalidRequest):
    """A clip longer than redaction may take on (refused before any work)."""


class NotRedactable(DomainError):
    """The item holds nothing that can be redacted, or a file that cannot be decoded."""

    code = DomainErrorCode.UNSUPPORTED_MEDIA_TYPE


class RedactionTimedOut(DomainError, TimeoutError):
    """The work ran past its time limit and was abandoned; nothing was filed."""

    code = DomainErrorCode.UNAVAILABLE


class _Abandoned(Exception):
    """Raised inside the worker at its next check once the deadline passed or the caller left."""


@dataclass(frozen=True, slots=True)
class FileRedaction:
    """What was done to one file of the original."""

    name: str
    source_sha256: str
    action: Literal["redacted", "copied"]
    #: Most faces / text regions found in one picture or checked frame.
    faces: int = 0
    text_regions: int = 0
    #: Clips: frames in the file, frames the detectors looked at, frames with something hidden.
    frames: int = 0
    frames_checked: int = 0
    frames_redacted: int = 0
    #: Clips: the encoder of the copy's video (``libx264``, ``libvpx``...).
    codec: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "action": self.action,
            "source_sha256": self.source_sha256,
        }
        if self.action == "redacted":
            body.update(faces=self.faces, text_regions=self.text_regions)
        if self.codec is not None:
            body.update(
                frames=self.frames,
                frames_checked=self.frames_checked,
                frames_redacted=self.frames_redacted,
                codec=self.codec,
            )
        return body


@dataclass(frozen=True, slots=True)
class _Source:
    file: EvidenceFile
    path: Path
    kind: Literal["picture", "video", "copy"]
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Job:
    sources: tuple[_Source, ...]
    out_dir: Path
    faces: RegionDetector | None
    text: RegionDetector | None
    method: RedactMethod
    detect_every_s: float
    threads: int


class _Deadline:
    """The worker's check, called between frames: past the deadline, or told to stop, it raises."""

    def __init__(self, clock: Callable[[], float], seconds: float) -> None:
        self._clock = clock
        self._until = clock() + seconds
        self.stop = threading.Event()

    def check(self) -> None:
        if self.stop.is_set() or self._clock() > self._until:
            raise _Abandoned


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _probe(path: Path) -> tuple[bool, float]:
    """Whether the file has a video stream, and how long it lasts (seconds; from the header,
    else from the packets: a recording cut off by a crash has no duration written)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False, 0.0
            if container.duration is not None and container.duration > 0:
                return True, container.duration / 1_000_000
            end = 0.0
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                span = packet.pts + (packet.duration or 0)
                end = max(end, float(span * packet.time_base))
            return True, end
    except av.FFmpegError as exc:
        raise NotRedactable(f"file {path.name} is not a readable video: {exc}") from exc


def _find(job: _Job, image: Image) -> tuple[list[Region], int, int]:
    """What to hide in one RGB picture: the regions, and how many faces and text lines."""
    faces = list(job.faces.detect(image)) if job.faces is not None else []
    lines = list(job.text.detect(image)) if job.text is not None else []
    return faces + lines, len(faces), len(lines)


def _redact_picture(job: _Job, source: _Source, deadline: _Deadline) -> FileRedaction:
    data = source.path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    _check_hash(source, sha)
    # IMREAD_COLOR applies the EXIF orientation: the copy is stored upright, without EXIF.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise NotRedactable(f"file {source.file.name} is not a readable picture")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    deadline.check()
    regions, faces, lines = _find(job, rgb)
    deadline.check()
    out = redact_image(rgb, regions, job.method)
    suffix = _PICTURES[source.path.suffix.lower()]
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(out[:, :, ::-1]), params)
    if not ok:
        raise NotRedactable(f"file {source.file.name} could not be encoded again")
    (job.out_dir / source.file.name).write_bytes(encoded.tobytes())
    return FileRedaction(source.file.name, sha, "redacted", faces=faces, text_regions=lines)


def _check_hash(source: _Source, sha: str) -> None:
    if sha != source.file.sha256:
        # Never derive a shareable copy from bytes that are not the evidence that was filed.
        raise NotRedactable(
            f"file {source.file.name} does not match its recorded SHA-256: verify the item;"
            " no copy was made"
        )


def _matched(a: Region, b: Region) -> bool:
    """Two detections of one face (at two looks): their centres are within a face's size."""
    (ax, ay), (bx, by) = a.center, b.center
    reach = 1.5 * max(a.w, a.h, b.w, b.h)
    return math.hypot(ax - bx, ay - by) <= reach


class _Coverage:
    """Which regions to hide in each frame of a clip, from the detections at the looks."""

    def __init__(self, looks: dict[int, list[Region]]) -> None:
        self._keys = sorted(looks)
        self._looks = looks
        self._cache: dict[int, list[Region]] = {}

    def at(self, frame: int) -> list[Region]:
        if not self._keys:
            return []
        j = max(0, bisect_right(self._keys, frame) - 1)
        cached = self._cache.get(j)
        if cached is not None:
            return cached
        window = self._keys[max(0, j - 1) : j + 3]
        regions = [region for key in window for region in self._looks[key]]
        for i, early in enumerate(window):
            for late in window[i + 1 :]:
                for a in self._looks[early]:
                    regions.extend(
                        a.hull(b) for b in self._looks[late] if a.kind == b.kind and _matched(a, b)
                    )
        merged = _merged(regions)
        self._cache[j] = merged
        return merged


def _merged(regions: Sequence[Region]) -> list[Region]:
    """Overlapping boxes as one box holding them: the same pixels hidden (and more), with one
    blur instead of many."""
    boxes = list(regions)
    changed = True
    while changed:
        changed = False
        for i in range(len(boxes)):
            for k in range(i + 1, len(boxes)):
                if boxes[i].iou(boxes[k]) > 0:
                    boxes[i] = boxes[i].hull(boxes.pop(k))
                    changed = True
                    break
            if changed:
                break
    return boxes


def _video_encoder(container: str) -> str:
    available = av.codecs_available
    if container == "webm":
        return "libvpx" if "libvpx" in available else "libvpx-vp9"
    return "libx264" if "libx264" in available else "libvpx-vp9"


def _encoder_settings(
    stream: Any, encoder: str, width: int, height: int, rate: Fraction, threads: int
) -> None:
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = threads
    stream.codec_context.gop_size = max(1, round(float(rate) * 2))
    if encoder == "libx264":
        stream.options = {"preset": "veryfast", "crf": "21"}
    else:
        # libvpx: a constant-quality target under a ceiling that scales with the picture.
        ceiling = width * height * float(rate) * 0.15
        stream.bit_rate = int(min(8_000_000, max(400_000, ceiling)))
        stream.options = {"deadline": "good", "cpu-used": "5", "crf": "10"}


def _frame_rate(stream: Any) -> Fraction:
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if candidate:
            value = Fraction(candidate)
            if 0 < value <= 240:
                return value
    return Fraction(15)


@dataclass(slots=True)
class _Looks:
    """What the detectors found in a clip: the regions at each frame looked at, and the most
    faces and text lines seen in one of them."""

    regions: dict[int, list[Region]]
    faces: int = 0
    lines: int = 0

    def add(self, job: _Job, index: int, frame: av.VideoFrame) -> None:
        regions, faces, lines = _find(job, frame.to_ndarray(format="rgb24"))
        self.regions[index] = regions
        self.faces, self.lines = max(self.faces, faces), max(self.lines, lines)


def _look(job: _Job, path: Path, deadline: _Deadline) -> tuple[_Looks, int]:
    """The first pass: detect in every frame ``detect_every_s`` apart and in the last one;
    returns the looks and the number of frames."""
    looks = _Looks({})
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        every = max(1, round(float(_frame_rate(stream)) * job.detect_every_s))
        last: tuple[int, av.VideoFrame] | None = None
        for index, frame in enumerate(src.decode(stream)):
            deadline.check()
            last = (index, frame)
            if index % every == 0:
                looks.add(job, index, frame)
        if last is not None and last[0] not in looks.regions:
            looks.add(job, *last)
    return looks, 0 if last is None else last[0] + 1


def _hide(
    job: _Job, source: Path, target: Path, container: str, coverage: _Coverage, deadline: _Deadline
) -> tuple[str, int, int]:
    """The second pass: every frame with its regions hidden, encoded again, the sound copied;
    returns the encoder, the frames written and how many had something hidden."""
    encoder = _video_encoder(container)
    index = redacted = 0
    with av.open(str(source)) as src, av.open(str(target), "w", format=container) as out:
        in_video = src.streams.video[0]
        in_video.thread_type = "AUTO"
        rate = _frame_rate(in_video)
        # 4:2:0 wants even sides (a camera's always are; a stray odd pixel is cut).
        width = in_video.codec_context.width // 2 * 2
        height = in_video.codec_context.height // 2 * 2
        out_video: Any = out.add_stream(encoder, rate=rate)
        _encoder_settings(out_video, encoder, width, height, rate, job.threads)
        time_base = in_video.time_base or Fraction(1, 1000)
        out_video.codec_context.time_base = time_base
        sound = {s.index: out.add_stream_from_template(s) for s in src.streams.audio}
        last_pts: int | None = None
        for packet in src.demux(in_video, *src.streams.audio):
            deadline.check()
            if packet.stream.index in sound:
                if packet.dts is not None:  # not the demuxer's empty flush packet
                    packet.stream = sound[packet.stream.index]
                    out.mux(packet)
                continue
            for decoded in packet.decode():
                if not isinstance(decoded, av.VideoFrame):
                    continue
                regions = coverage.at(index)
                pixels: Image = decoded.to_ndarray(format="rgb24")[:height, :width]
                if regions:
                    pixels = redact_image(pixels, regions, job.method)
                    redacted += 1
                copy = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(pixels, dtype=np.uint8), format="rgb24"
                )
                # The original's timing, kept strictly increasing for the encoder.
                pts = decoded.pts if decoded.pts is not None else index
                if decoded.time_base is not None and decoded.time_base != time_base:
                    pts = round(pts * decoded.time_base / time_base)
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1
                copy.pts, copy.time_base, last_pts = pts, time_base, pts
                out.mux(out_video.encode(copy))
                index += 1
        out.mux(out_video.encode(None))
    return encoder, index, redacted


def _redact_clip(job: _Job, source: _Source, deadline: _Deadline) -> FileRedaction:
    sha = _sha256(source.path)
    _check_hash(source, sha)
    name = source.file.name
    container = _VIDEOS[source.path.suffix.lower()]
    try:
        looks, count = _look(job, source.path, deadline)
        if count == 0:
            raise NotRedactable(f"file {name} holds no video frames")
        coverage = _Coverage(looks.regions)
        encoder, frames, redacted = _hide(
            job, source.path, job.out_dir / name, container, coverage, deadline
        )
    except av.FFmpegError as exc:
        raise NotRedactable(f"file {name} could not be redacted: {exc}") from exc
    return FileRedaction(
        name,
        sha,
        "redacted",
        faces=looks.faces,
        text_regions=looks.lines,
        frames=frames,
        frames_checked=len(looks.regions),
        frames_redacted=redacted,
        codec=encoder,
    )


def _copy(job: _Job, source: _Source) -> FileRedaction:
    target = job.out_dir / source.file.name
    shutil.copyfile(source.path, target)
    sha = _sha256(target)
    _check_hash(source, sha)
    return FileRedaction(source.file.name, sha, "copied")


def _run(job: _Job, deadline: _Deadline) -> list[FileRedaction]:
    """The worker: every file of the original into ``job.out_dir``."""
    done = []
    for source in job.sources:
        deadline.check()
        if source.kind == "picture":
            done.append(_redact_picture(job, source, deadline))
        elif source.kind == "video":
            done.append(_redact_clip(job, source, deadline))
        else:
            done.append(_copy(job, source))
    return done


class RedactionService:
    """Makes redacted copies of evidence items (see the module's docstring).

    ``detector`` finds faces (``inference.FaceDetector``), ``text_detector`` text lines
    (``inference.TextDetector``; without it, text redaction is refused). ``max_clip_s``: the
    longest clip taken on; ``max_seconds``: how long one redaction may work, measured with
    ``clock`` (monotonic seconds). ``workers`` redactions run at once, each on its own thread,
    their encoders using ``threads`` threads; more wait their turn (the time limit counts from
    when the work starts). ``spool_dir``: where copies are written before they are filed
    (default: beside the archive's files, so filing is a rename)."""

    def __init__(
        self,
        archive: EvidenceArchive,
        detector: RegionDetector,
        *,
        max_clip_s: float,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        text_detector: RegionDetector | None = None,
        method: RedactMethod = "blur",
        detect_every_s: float = 0.2,
        workers: int = 1,
        threads: int = 2,
        spool_dir: Path | None = None,
    ) -> None:
        if method not in REDACT_METHODS:
            raise ValueError(f"redaction method {method!r} is not one of {REDACT_METHODS}")
        if max_clip_s <= 0 or max_seconds <= 0 or detect_every_s <= 0:
            raise ValueError("max_clip_s, max_seconds and detect_every_s must be positive")
        self._archive = archive
        self._faces = detector
        self._text = text_detector
        self._max_clip_s = max_clip_s
        self._max_seconds = max_seconds
        self._clock = clock
        self._method: RedactMethod = method
        self._detect_every_s = detect_every_s
        self._threads = max(1, threads)
        self._spool = spool_dir if spool_dir is not None else archive.data_dir / "redaction-spool"
        self._slots = asyncio.Semaphore(max(1, workers))
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="redact")
        self._running: set[_Deadline] = set()
        self._closed = False

    @property
    def text_available(self) -> bool:
        return self._text is not None

    async def redact(
        self,
        item_id: str,
        *,
        actor: str,
        reason: str,
        faces: bool = True,
        text: bool = False,
        method: RedactMethod | None = None,
    ) -> EvidenceItem:
        """File a redacted copy of item ``item_id`` and return the new item.

        ``method`` overrides the service's default. Raises, with nothing filed:
        ``InvalidRequest`` for a request that asks for nothing, for text without a text
        detector, or without an actor and a reason; :class:`ClipTooLong` and
        :class:`NotRedactable` (no picture or video, an unreadable video) before any work and
        before anything is logged; :class:`NotRedactable` during the work for a picture that
        cannot be decoded or a file that fails its hash; :class:`RedactionTimedOut` when the
        work ran past ``max_seconds``; the archive's ``NotFound`` for an unknown item."""
        if self._closed:
            raise DomainError("redaction is shutting down", code=DomainErrorCode.UNAVAILABLE)
        how: RedactMethod = method or self._method
        if how not in REDACT_METHODS:
            raise InvalidRequest(
                f"method must be one of: {', '.join(REDACT_METHODS)}", fields=("method",)
            )
        if not faces and not text:
            raise InvalidRequest("nothing to redact: ask for faces, text or both")
        if text and self._text is None:
            raise InvalidRequest("text redaction is not available on this server", fields=("text",))
        if not actor or not reason.strip():
            raise InvalidRequest(
                "a redacted copy needs who asks for it and why", fields=("reason",)
            )
        original = await self._archive.peek(item_id)
        sources = await self._sources(original)
        # Logged only now, when the copy is really being made: the read is the view.
        await self._archive.get(item_id, actor=actor, reason=f"redacted copy: {reason.strip()}")
        job_dir = self._spool / uuid.uuid4().hex
        job = _Job(
            sources=sources,
            out_dir=job_dir,
            faces=self._faces if faces else None,
            text=self._text if text else None,
            method=how,
            detect_every_s=self._detect_every_s,
            threads=self._threads,
        )
        try:
            async with self._slots:
                started = self._clock()
                done = await self._work(job, item_id)
                elapsed = self._clock() - started
            record = replace(
                original.record,
                note=" · ".join(
                    part for part in (f"redacted copy of {item_id}", original.record.note) if part
                ),
                details=self._details(original, job, done, actor, reason.strip()),
            )
            named = [(f.name, job_dir / f.name) for f in done]
            derived = await self._archive.add_item(named, record, actor=actor)
        finally:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
        logger.info(
            "redacted copy %s of %s filed (%.1f s)",
            derived.item_id,
            item_id,
            elapsed,
            extra={"item_id": item_id, "case_id": original.record.case_id},
        )
        return derived

    async def _sources(self, item: EvidenceItem) -> tuple[_Source, ...]:
        sources = []
        for file in item.files:
            path = await self._archive.stored_path(item.item_id, file.name)
            suffix = path.suffix.lower()
            if suffix in _PICTURES:
                sources.append(_Source(file, path, "picture"))
            elif suffix in _VIDEOS:
                has_video, duration = await asyncio.to_thread(_probe, path)
                if has_video:
                    sources.append(_Source(file, path, "video", duration))
                else:
                    sources.append(_Source(file, path, "copy"))
            else:
                sources.append(_Source(file, path, "copy"))
        if not any(s.kind != "copy" for s in sources):
            raise NotRedactable(f"item {item.item_id} holds no picture or video to redact")
        longest = max((s.duration_s for s in sources), default=0.0)
        if longest > self._max_clip_s:
            length = _seconds(longest, above=self._max_clip_s)
            raise ClipTooLong(
                f"this clip is {length} s long; redaction is limited to"
                f" {_seconds(self._max_clip_s)} s ({MAX_CLIP_SETTING})",
                fields=("item_id",),
            )
        return tuple(sources)

    async def _work(self, job: _Job, item_id: str) -> list[FileRedaction]:
        deadline = _Deadline(self._clock, self._max_seconds)
        self._running.add(deadline)

        def work() -> list[FileRedaction]:
            job.out_dir.mkdir(parents=True, exist_ok=True)
            try:
                return _run(job, deadline)
            except BaseException:
                # Whatever stopped the work (the deadline, the caller leaving, a bad file),
                # the worker leaves nothing behind: it may end after its caller has gone.
                shutil.rmtree(job.out_dir, ignore_errors=True)
                raise

        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[FileRedaction]] = loop.run_in_executor(self._pool, work)
        try:
            async with asyncio.timeout(self._max_seconds + _GRACE_S):
                return await asyncio.shield(future)
        except (_Abandoned, TimeoutError):
            deadline.stop.set()
            if self._closed:
                raise DomainError(
                    f"redaction of item {item_id} was stopped: the server is shutting down;"
                    " nothing was filed",
                    code=DomainErrorCode.UNAVAILABLE,
                ) from None
            raise RedactionTimedOut(
                f"redacting item {item_id} took longer than {_seconds(self._max_seconds)} s"
                f" ({MAX_SECONDS_SETTING}) and was abandoned; nothing was filed"
            ) from None
        finally:
            self._running.discard(deadline)
            if not future.done():
                # The caller left (or the grace ran out): stop the worker at its next check
                # and let the job's directory go once it has.
                deadline.stop.set()
                future.add_done_callback(_abandoned(job.out_dir))

    def _details(
        self,
        original: EvidenceItem,
        job: _Job,
        done: Sequence[FileRedaction],
        actor: str,
        reason: str,
    ) -> dict[str, Any]:
        redaction: dict[str, Any] = {
            "method": job.method,
            "detector": job.faces.name if job.faces is not None else None,
            "confidence": job.faces.min_confidence if job.faces is not None else None,
            "faces": max((f.faces for f in done), default=0),
            "text_regions": max((f.text_regions for f in done), default=0),
            "frames_checked": sum(f.frames_checked for f in done),
            "files": [f.to_json() for f in done],
            "requested_by": actor,
            "reason": reason,
        }
        if job.text is not None:
            redaction["text_detector"] = job.text.name
        if any(f.codec is not None for f in done):
            redaction["detect_every_s"] = job.detect_every_s
        return {
            "derived_from": {
                "item_id": original.item_id,
                "files": [{"name": f.name, "sha256": f.sha256} for f in original.files],
                "leaf_index": original.leaf_index,
            },
            "redaction": redaction,
        }

    async def aclose(self) -> None:
        """Stop running redactions at their next check (nothing of theirs is filed) and the
        worker threads; idempotent."""
        if self._closed:
            return
        self._closed = True
        for deadline in list(self._running):
            deadline.stop.set()
        await asyncio.to_thread(self._pool.shutdown, wait=True)


def _seconds(value: float, *, above: float | None = None) -> str:
    """Seconds as a person reads them: whole from 10 on, else to a tenth. A length ``above`` a
    limit gets the decimals it needs not to read as the limit itself (120.3 s, not 120 s)."""
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
    if above is not None and float(text) <= above:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text


def _abandoned(directory: Path) -> Callable[[asyncio.Future[Any]], None]:
    """For a worker its caller left: take its outcome (so an error is not reported as never
    retrieved) and remove what it wrote, should it have finished before seeing the stop."""

    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()
        shutil.rmtree(directory, ignore_errors=True)

    return done
