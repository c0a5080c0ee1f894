"""What the engine records of the tracks published in its rooms: per track a
:class:`Publication` (its pre-roll buffer and the recorders its encoded frames feed), captures
that run until stopped, the last seconds saved at once, and snapshots decoded on demand.

:class:`Recordings` sees only :class:`~media.source.TrackSource`\\ s; the engine tells it when
one is published or ends and passes the capture calls of its public API on to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
from av import VideoFrame

from aioutil import OwnedTasks

from .config import MediaConfig
from .errors import CaptureNotFound, MediaError, NothingToRecord
from .keyframes import EncodedFrame
from .preroll import PrerollBuffer
from .recorder import RecordedFile, Recorder, container_for
from .source import TrackSource

__all__ = ["CaptureHandle", "Publication", "Recordings", "decode_newest"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CaptureHandle:
    """A running capture: :meth:`MediaEngine.stop_capture` takes it back."""

    id: str
    room_id: str
    name: str
    #: One file per publishing participant, in ``directory``.
    files: tuple[Path, ...]
    #: Wall-clock seconds when the capture was asked for.
    requested_at: float


@dataclass(eq=False, slots=True)
class Publication:
    """One published track as the recorder sees it (encoded frames, on the loop thread)."""

    source: TrackSource
    preroll: PrerollBuffer | None
    sinks: set[Recorder] = field(default_factory=set)
    keyframe_task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return f"{self.source.kind}-{self.source.track_id}"

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def codec(self) -> str | None:
        return self.source.codec

    @property
    def participant_id(self) -> str:
        return self.source.publisher_id

    def on_encoded(self, frame: EncodedFrame) -> None:
        """The source's encoded tap: called on the loop thread for every complete frame."""
        if self.preroll is not None:
            self.preroll.push(frame)
        for recorder in self.sinks:
            recorder.write(self.key, frame)

    def newest_picture(self) -> list[EncodedFrame]:
        """The frames a decoder needs for the newest picture: newest keyframe to newest frame."""
        if self.kind != "video" or self.preroll is None:
            return []
        return self.preroll.last(0)


class Recordings:
    """The publications of every live track, and the captures that record them."""

    def __init__(self, config: MediaConfig) -> None:
        self._config = config
        self._publications: dict[str, list[Publication]] = {}
        self._captures: dict[str, list[Recorder]] = {}
        self._snapshot_pool: ThreadPoolExecutor | None = None
        self._tasks = OwnedTasks()
        self._closed = False

    def publications(self, participant_id: str) -> list[Publication]:
        """What is kept for recording each track ``participant_id`` publishes."""
        return list(self._publications.get(participant_id, ()))

    # -- tracks coming and going --------------------------------------------------------------

    def add(self, source: TrackSource) -> None:
        """A new published track: buffer it for captures (and keep its keyframes coming)."""
        config = self._config
        preroll = PrerollBuffer(config.preroll_s) if config.preroll_armed else None
        publication = Publication(source=source, preroll=preroll)
        if config.recording:
            source.add_encoded_tap(publication.on_encoded)
            if source.kind == "video" and config.preroll_armed:
                publication.keyframe_task = asyncio.create_task(
                    self._ask_keyframes(publication),
                    name=f"media-keyframes-{source.publisher_id}-{source.track_id}",
                )
        self._publications.setdefault(source.publisher_id, []).append(publication)

    def source_ended(self, source: TrackSource) -> None:
        """One track ended."""
        publications = self._publications.get(source.publisher_id, [])
        for publication in [p for p in publications if p.source is source]:
            publications.remove(publication)
            self._end(publication)

    def participant_left(self, participant_id: str) -> None:
        """Every track of ``participant_id`` ended."""
        for publication in self._publications.pop(participant_id, []):
            self._end(publication)

    async def _ask_keyframes(self, publication: Publication) -> None:
        """Ask for a keyframe every ``keyframe_interval_s`` while the pre-roll is armed."""
        while True:
            await asyncio.sleep(self._config.keyframe_interval_s)
            publication.source.request_keyframe()

    def _end(self, publication: Publication) -> None:
        """The track is gone: stop asking for keyframes; finish recordings left with no track."""
        task, publication.keyframe_task = publication.keyframe_task, None
        if task is not None:
            task.cancel()
        if publication.preroll is not None:
            publication.preroll.clear()
        sinks, publication.sinks = publication.sinks, set()
        for recorder in sinks:
            if recorder.end_track(publication.key) and not recorder.stopping and not self._closed:
                self._tasks.spawn(
                    self._finish_recorder(recorder), f"media-finish-{recorder.path.name}"
                )

    async def _finish_recorder(self, recorder: Recorder) -> None:
        result = await recorder.aclose()
        logger.info(
            "recording %s finished: %d frames, %.1f s",
            result.path,
            result.frames,
            result.duration_s,
        )

    # -- captures -------------------------------------------------------------------------------

    def _room_publications(self, room_id: str) -> dict[str, list[Publication]]:
        by_participant: dict[str, list[Publication]] = {}
        for participant_id, publications in self._publications.items():
            live = [p for p in publications if p.source.live and p.source.room_id == room_id]
            if live:
                by_participant[participant_id] = live
        return by_participant

    def _check_recording(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> dict[str, list[Publication]]:
        if self._closed:
            raise MediaError("the media engine is shutting down")
        if not self._config.recording:
            raise MediaError("recording is disabled on this server")
        publishers = self._room_publications(room_id)
        if participants is not None:
            publishers = {pid: p for pid, p in publishers.items() if pid in participants}
        if not publishers:
            raise NothingToRecord(room_id)
        return publishers

    def _recorder(
        self,
        directory: Path,
        name: str,
        participant_id: str,
        publications: list[Publication],
        requested_at: float,
        seconds: float | None,
    ) -> tuple[Recorder, list[tuple[Publication, list[Any]]]]:
        """A recorder for one participant and the buffered frames each track starts with
        (``seconds=None``: no pre-roll)."""
        video = [p for p in publications if p.kind == "video"]
        codecs = [p.codec for p in publications]
        if video and video[0].codec is None:
            codecs = [None]  # not known yet: Matroska takes any codec
        container, ext = container_for(codecs)
        path = directory / f"{name}-{participant_id}{ext}"
        buffered: list[tuple[Publication, list[Any]]] = []
        origin = requested_at
        if seconds is not None:
            # Video decides where the file starts (a keyframe); other tracks line up with it.
            for publication in video:
                if publication.preroll is not None:
                    frames = publication.preroll.last(seconds)
                    if frames:
                        origin = min(origin, frames[0].arrival)
                    buffered.append((publication, frames))
            for publication in publications:
                if publication.kind != "video" and publication.preroll is not None:
                    if video:
                        frames = publication.preroll.since(origin)
                    else:
                        frames = publication.preroll.last(seconds)
                        if frames:
                            origin = min(origin, frames[0].arrival)
                    buffered.append((publication, frames))
        recorder = Recorder(
            path, participant_id, container, origin=origin, requested_at=requested_at
        )
        for publication in sorted(publications, key=lambda p: p.kind != "video"):
            recorder.add_track(publication.key, publication.kind)
        return recorder, buffered

    async def start_capture(
        self,
        room_id: str,
        directory: Path,
        *,
        name: str,
        preroll: bool = True,
        preroll_seconds: float | None = None,
        participants: Collection[str] | None = None,
    ) -> CaptureHandle:
        """Record every track published in ``room_id`` until :meth:`stop_capture`.

        One file per publishing participant, ``directory/<name>-<participant>.webm`` (VP8 and
        Opus) or ``.mkv`` (H.264), holding its encoded frames as they arrived (no re-encode).
        With ``preroll`` the files start at the newest keyframe at least ``preroll_s`` seconds
        before this call (``preroll_seconds``: fewer). A file is finished when its publisher
        leaves, at :meth:`stop_capture` or at :meth:`stop_all`. ``participants`` limits it to
        those publishers (one camera of a site). Raises :class:`NothingToRecord` when nobody
        (of them) publishes in the room.
        """
        seconds = self._config.preroll_s if preroll and self._config.preroll_armed else None
        if seconds is not None and preroll_seconds is not None:
            seconds = min(seconds, max(0.0, preroll_seconds))
        recorders = await self._open_recorders(
            room_id, directory, name, seconds, live=True, participants=participants
        )
        capture_id = uuid.uuid4().hex
        self._captures[capture_id] = recorders
        logger.info("capture %s started in %s: %d files", capture_id, room_id, len(recorders))
        return CaptureHandle(
            id=capture_id,
            room_id=room_id,
            name=name,
            files=tuple(r.path for r in recorders),
            requested_at=time.time(),
        )

    async def stop_capture(self, handle: CaptureHandle) -> list[RecordedFile]:
        """Finish a capture's files and describe them (raises :class:`CaptureNotFound` if it
        was already stopped)."""
        recorders = self._captures.pop(handle.id, None)
        if recorders is None:
            raise CaptureNotFound(handle.id)
        return await self._stop_recorders(recorders)

    async def _stop_recorders(self, recorders: list[Recorder]) -> list[RecordedFile]:
        for publications in self._publications.values():
            for publication in publications:
                publication.sinks.difference_update(recorders)
        return list(await asyncio.gather(*(r.aclose() for r in recorders)))

    async def save_last(
        self,
        room_id: str,
        seconds: float,
        directory: Path,
        *,
        name: str,
        participants: Collection[str] | None = None,
    ) -> list[RecordedFile]:
        """Write the last ``seconds`` (at most ``preroll_s``) of every track published in the
        room from the pre-roll buffers: files start at the newest keyframe at least that far
        back. Same file naming as :meth:`start_capture`."""
        if not 0 < seconds <= self._config.preroll_s:
            raise ValueError(f"seconds must be in (0, {self._config.preroll_s}]")
        recorders = await self._open_recorders(
            room_id, directory, name, seconds, live=False, participants=participants
        )
        return list(await asyncio.gather(*(r.aclose() for r in recorders)))

    async def _open_recorders(
        self,
        room_id: str,
        directory: Path,
        name: str,
        seconds: float | None,
        *,
        live: bool,
        participants: Collection[str] | None = None,
    ) -> list[Recorder]:
        """One started recorder per publisher of the room, fed the last ``seconds`` of its
        pre-roll and, when ``live``, every frame that arrives after that."""
        self._check_recording(room_id, participants)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        # The room may have changed meanwhile.
        publishers = self._check_recording(room_id, participants)
        now = time.monotonic()
        recorders: list[Recorder] = []
        for participant_id, publications in publishers.items():
            recorder, buffered = self._recorder(
                directory, name, participant_id, publications, now, seconds
            )
            recorder.start()
            # No await from here on: nothing arrives between the buffer and the live frames.
            for publication, frames in buffered:
                for frame in frames:
                    recorder.write(publication.key, frame)
            if live:
                for publication in publications:
                    publication.sinks.add(recorder)
                    if publication.kind == "video":
                        publication.source.request_keyframe()
            recorders.append(recorder)
        return recorders

    # -- snapshots ------------------------------------------------------------------------------

    async def snapshot(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> bytes | None:
        """A JPEG of the newest picture of a video published in the room (``None`` when no
        video frame has arrived). The pre-roll's newest keyframe group is decoded on demand,
        off the event loop: nothing is decoded for snapshots otherwise."""
        groups = [
            p.newest_picture()
            for participant_id, publications in self._room_publications(room_id).items()
            if participants is None or participant_id in participants
            for p in publications
        ]
        frames = next((group for group in groups if group), None)
        if frames is None:
            return None
        if self._snapshot_pool is None:
            self._snapshot_pool = ThreadPoolExecutor(1, thread_name_prefix="media-snapshot")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._snapshot_pool, _snapshot_jpeg, frames)

    # -- shutdown -------------------------------------------------------------------------------

    async def stop_all(self) -> None:
        """Refuse new recordings and finish every running capture (its index is written when
        its recorder closes)."""
        self._closed = True
        for capture_id in list(self._captures):
            await self._stop_recorders(self._captures.pop(capture_id))

    async def aclose(self) -> None:
        """After :meth:`stop_all`: end the recorders still finishing and the snapshot thread."""
        self._closed = True
        await self._tasks.aclose()
        if self._snapshot_pool is not None:
            self._snapshot_pool.shutdown(wait=True)
            self._snapshot_pool = None


#: PyAV decoder names per codec.
_DECODERS = {"vp8": "vp8", "h264": "h264"}


def decode_newest(frames: list[EncodedFrame]) -> VideoFrame | None:
    """Decode a keyframe and the frames after it; the last picture (blocking: call in a thread)."""
    if not frames or frames[0].codec not in _DECODERS:
        return None
    context: Any = av.CodecContext.create(_DECODERS[frames[0].codec], "r")
    newest: VideoFrame | None = None
    for frame in frames:
        try:
            for picture in context.decode(av.Packet(frame.data)):
                newest = picture
        except av.FFmpegError as exc:
            logger.warning("snapshot decode failed at one frame: %s", exc)
    try:
        for picture in context.decode(None):
            newest = picture
    except av.FFmpegError:
        pass
    return newest


def _snapshot_jpeg(frames: list[EncodedFrame]) -> bytes | None:
    frame = decode_newest(frames)
    return None if frame is None else _jpeg(frame)


def _jpeg(frame: Any) -> bytes:
    image = frame.to_ndarray(format="bgr24")
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise MediaError("JPEG encoding failed")
    return bytes(encoded.tobytes())
