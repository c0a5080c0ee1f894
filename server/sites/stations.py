"""Station cameras: a fixed camera at a receiving, packing or returns QC station reads the
tracking barcodes held up to it and records one evidence clip per parcel, with no one pressing
a button.

:class:`StationService` is a ``media.FrameSink`` that wants only station cameras' video (any
other camera is never decoded for it). Each sampled frame is read for codes off the event loop,
in a small executor, by the :data:`CodeReader` it is given (zxing-cpp's ``inference.read_codes``
in the service); a frame that arrives while the camera's previous frame is still being read is
dropped. What the reads drive, per camera:

- a tracking number (:func:`tracking_number`: a Code128, Code39, QR or DataMatrix text of 8 to
  40 letters and digits, at least 4 of them digits) that is not the current parcel's becomes
  the new parcel once it was read in :attr:`StationConfig.confirm_reads` reads within
  :attr:`StationConfig.confirm_window_s` (one misread frame starts nothing);
- a new parcel ends the current clip and starts the next: a clip of that camera only, from a
  few seconds before the scan (:attr:`StationConfig.preroll_s`), filed under ``site:<site id>``
  with the tracking number, the station's logistics stage (``receiving`` -> return receipt,
  ``packing`` -> packing, ``returns_qc`` -> refurbishment QC) and ``use`` ``packing`` or
  ``return``;
- no tracking number read for the station's idle timeout (``station_idle_timeout_s``, else
  :attr:`StationConfig.idle_timeout_s`) ends the clip, as does the camera leaving or the camera
  being switched off or changed;
- a returns QC station's video is graded too: each parcel's clip carries the model's view of
  that parcel alone (the room's grading restarts at each scan, with the tracking number as the
  reference a read code matches).

Station changes (a camera made a station, its stage changed, switched off, deleted) take
effect at once through :meth:`StationService.camera_changed` (a ``SiteService`` listener).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aioutil import OwnedTasks, cancel_and_wait
from evidence import EvidenceItem
from media import MediaError, StreamKey
from server.capture import CaptureInfo, CaptureTarget
from server.errors import DomainError
from server.sites.model import Camera, Site, StationStage
from server.timefmt import iso_time
from signaling import Identity, Role, RoomId, SubjectId, camera_room

__all__ = [
    "TRACKING_FORMATS",
    "CodeReader",
    "ScannedCode",
    "SegmentGrading",
    "StationCaptures",
    "StationConfig",
    "StationService",
    "StationSites",
    "station_operator",
    "tracking_number",
]

logger = logging.getLogger(__name__)

#: Symbologies a parcel's tracking number is printed in (EAN/UPC are product codes, not parcels).
TRACKING_FORMATS = frozenset({"Code128", "Code39", "QRCode", "DataMatrix"})
_TRACKING = re.compile(r"[A-Z0-9]{8,40}")
_SPACING = re.compile(r"[\s\-]+")
#: GS1-128 labels (a USPS IMpb: routing ZIP, FNC1, then the tracking number) separate their
#: element strings with the group separator.
_GROUP_SEPARATOR = "\x1d"
_ROOM_PREFIX = camera_room("")

#: Told the site and camera id when a station's state changes (the app pushes its status).
ChangeHook = Callable[[str, str], Awaitable[None]]


class ScannedCode(Protocol):
    """A code read in a frame (``inference.ReadCode``): its symbology and its text."""

    @property
    def format(self) -> str: ...

    @property
    def text(self) -> str: ...


#: Reads the codes in an RGB frame; blocking, so it runs in the stations' executor.
CodeReader = Callable[[np.ndarray[Any, Any]], Sequence[ScannedCode]]


class StationSites(Protocol):
    """What the stations read of the sites (``SiteService``)."""

    async def list_sites(self) -> list[Site]: ...

    async def list_cameras(self, site_id: str) -> list[Camera]: ...

    async def get_site(self, site_id: str) -> Site | None: ...


class StationCaptures(Protocol):
    """How the stations record clips (``CaptureService``, or its multi-node form)."""

    async def start_target(
        self,
        target: CaptureTarget,
        operator: Identity,
        *,
        stage: str | None,
        note: str,
        preroll_seconds: float | None = None,
    ) -> CaptureInfo: ...

    async def stop_target(
        self, target: CaptureTarget, capture_id: str, operator: Identity
    ) -> EvidenceItem: ...


def tracking_number(code: ScannedCode) -> str | None:
    """The tracking number a read code carries, upper-case without spaces or hyphens, or
    ``None`` when it does not look like one (a product EAN, a URL in a QR code, a short label).
    """
    if code.format not in TRACKING_FORMATS:
        return None
    for part in reversed(code.text.split(_GROUP_SEPARATOR)):
        text = _SPACING.sub("", part).upper()
        if _TRACKING.fullmatch(text) and sum(c.isdigit() for c in text) >= 4:
            return text
    return None


def station_operator(camera: Camera) -> Identity:
    """Who a station's clips are recorded by: the station camera itself."""
    return Identity(
        subject=SubjectId.station(camera.id),
        name=SubjectId.station(camera.id),
        role=Role.CAMERA,
        site_id=camera.site_id,
        camera_id=camera.id,
    )


@dataclass(frozen=True, slots=True)
class StationConfig:
    """How stations read and record (the idle timeout is each station's own when it has one)."""

    #: Seconds a clip reaches back before the scan that started it.
    preroll_s: float = 3.0
    #: Seconds without a tracking number read after which a clip ends.
    idle_timeout_s: float = 30.0
    #: Reads a new tracking number needs, within ``confirm_window_s``, to start a clip.
    confirm_reads: int = 2
    confirm_window_s: float = 5.0
    #: Threads reading codes, for every station camera of this process.
    read_threads: int = 1
    #: How often idle clips are looked for.
    tick_s: float = 0.5
    #: How long shutdown waits for a clip being started or filed.
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.preroll_s < 0 or self.idle_timeout_s <= 0 or self.tick_s <= 0:
            raise ValueError("preroll_s >= 0, idle_timeout_s > 0 and tick_s > 0")
        if self.confirm_reads < 1 or self.read_threads < 1:
            raise ValueError("confirm_reads and read_threads must be at least 1")


class SegmentGrading(Protocol):
    """The grading service, for returns QC stations (``inference.GradingService``)."""

    async def begin_segment(self, room_id: str, refs: Mapping[str, str | None]) -> None: ...


@dataclass(slots=True)
class _Clip:
    tracking_number: str
    capture_id: str
    target: CaptureTarget
    started_at: float


@dataclass(slots=True)
class _Lane:
    """One station camera's reading and recording state."""

    camera: Camera
    #: The camera's video being read (None while it is not publishing).
    stream: StreamKey | None = None
    reading: bool = False
    #: The parcel the camera shows now, as decided by the reads (its clip follows it).
    current: str | None = None
    candidate: str | None = None
    candidate_reads: int = 0
    candidate_at: float = 0.0
    last_read_at: float = 0.0
    last_read_wall: float | None = None
    clip: _Clip | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Frames read / dropped because a read was running / clips filed.
    reads: int = 0
    dropped: int = 0
    filed: int = 0
    last_tracking_number: str | None = None
    last_item_id: str | None = None


def _camera_id(stream: StreamKey) -> str | None:
    if not stream.room_id.startswith(_ROOM_PREFIX):
        return None
    return stream.room_id[len(_ROOM_PREFIX) :] or None


class StationService:
    """Reads station cameras' barcodes and records a clip per parcel (see the module
    docstring). ``start()`` loads the stations; ``aclose()`` stops reading (running clips are
    filed by the capture service's own shutdown)."""

    def __init__(
        self,
        sites: StationSites,
        captures: StationCaptures,
        *,
        reader: CodeReader,
        grading: SegmentGrading | None = None,
        on_change: ChangeHook | None = None,
        refresh: Callable[[str], None] | None = None,
        config: StationConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sites = sites
        self._captures = captures
        self._grading = grading
        self._on_change = on_change
        self._refresh = refresh
        self._config = config or StationConfig()
        self._reader = reader
        self._clock = clock
        self._cameras: dict[str, Camera] = {}
        self._lanes: dict[str, _Lane] = {}
        self._executor = ThreadPoolExecutor(
            self._config.read_threads, thread_name_prefix="station-codes"
        )
        self._tasks = OwnedTasks()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def config(self) -> StationConfig:
        return self._config

    def set_refresh(self, refresh: Callable[[str], None]) -> None:
        """What to call with a camera's room when it becomes a station or stops being one."""
        self._refresh = refresh

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the enabled station cameras and start watching for idle clips."""
        for site in await self._sites.list_sites():
            for camera in await self._sites.list_cameras(site.id):
                if camera.enabled and camera.station is not None:
                    self._cameras[camera.id] = camera
        if self._watcher is None and not self._closed:
            self._watcher = asyncio.create_task(self._watch(), name="stations-idle")
        if self._cameras:
            logger.info("%d station cameras", len(self._cameras))

    async def aclose(self) -> None:
        """Stop reading and deciding; wait a little for clips being started or filed. Clips
        still running are left to the capture service, which files them at its shutdown."""
        if self._closed:
            return
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await cancel_and_wait(watcher)
        await self._tasks.aclose(self._config.close_timeout_s)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- what changes the stations ---------------------------------------------------------------

    async def camera_changed(self, camera_id: str, camera: Camera | None) -> None:
        """A ``SiteService`` camera listener: a camera became a station, changed or stopped
        being one (switched off, deleted, its station cleared)."""
        before = self._cameras.get(camera_id)
        is_station = camera is not None and camera.enabled and camera.station is not None
        if camera is not None and is_station:
            self._cameras[camera_id] = camera
        else:
            self._cameras.pop(camera_id, None)
        lane = self._lanes.get(camera_id)
        if lane is not None:
            if camera is None or not is_station:
                del self._lanes[camera_id]
                self._end(lane, "the camera is no longer a station")
            else:
                lane.camera = camera
                if before is None or before.station != camera.station:
                    self._end(lane, "the station was changed")
        if (before is not None) != is_station and self._refresh is not None:
            self._refresh(camera_room(camera_id))

    # -- media.FrameSink -------------------------------------------------------------------------

    def wants(self, stream: StreamKey) -> bool:
        """Only station cameras' video is decoded for the stations."""
        camera_id = _camera_id(stream)
        return camera_id is not None and camera_id in self._cameras

    def graded(self, stream: StreamKey) -> bool:
        """Whether the stream is a returns QC station's video, which the grading model sees."""
        camera_id = _camera_id(stream)
        camera = self._cameras.get(camera_id) if camera_id is not None else None
        return (
            camera is not None
            and camera.station is not None
            and camera.station.stage is StationStage.RETURNS_QC
        )

    def stream_started(self, stream: StreamKey) -> None:
        lane = self._lane(stream)
        if lane is not None:
            lane.stream = stream
            logger.info("reading codes from %s", stream.id, extra={"camera_id": lane.camera.id})

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        if self._closed:
            return
        lane = self._lane(stream)
        if lane is None:
            return
        lane.stream = stream
        if lane.reading:
            lane.dropped += 1
            return
        lane.reading = True
        self._tasks.spawn(self._read(lane, stream, image), f"station-read-{lane.camera.id}")

    def stream_ended(self, stream: StreamKey) -> None:
        camera_id = _camera_id(stream)
        lane = self._lanes.get(camera_id) if camera_id is not None else None
        if lane is None or lane.stream != stream:
            return
        lane.stream = None
        self._end(lane, "the camera left")

    # -- status ----------------------------------------------------------------------------------

    def status_json(self, camera_id: str) -> dict[str, Any] | None:
        """What the station does now (``CameraPresence`` detail ``station``)."""
        camera = self._cameras.get(camera_id)
        if camera is None or camera.station is None:
            return None
        lane = self._lanes.get(camera_id)
        clip = lane.clip if lane is not None else None
        return {
            "stage": camera.station.stage.value,
            "logistics_stage": camera.station.stage.logistics_stage,
            "reading": lane is not None and lane.stream is not None,
            "tracking_number": clip.tracking_number if clip is not None else None,
            "recording_since": iso_time(clip.started_at) if clip is not None else None,
            "idle_timeout_s": self._idle_timeout(camera),
            "last_read_at": iso_time(lane.last_read_wall) if lane is not None else None,
            "last_tracking_number": lane.last_tracking_number if lane is not None else None,
            "last_item_id": lane.last_item_id if lane is not None else None,
            "clips": lane.filed if lane is not None else 0,
        }

    # -- reading ---------------------------------------------------------------------------------

    def _lane(self, stream: StreamKey) -> _Lane | None:
        camera_id = _camera_id(stream)
        camera = self._cameras.get(camera_id) if camera_id is not None else None
        if camera is None:
            return None
        lane = self._lanes.get(camera.id)
        if lane is None:
            lane = self._lanes[camera.id] = _Lane(camera)
        return lane

    async def _read(self, lane: _Lane, stream: StreamKey, image: np.ndarray[Any, Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            codes = await loop.run_in_executor(self._executor, self._reader, image)
        except RuntimeError:
            if self._closed:
                return  # the executor was shut down with the service
            raise
        finally:
            lane.reading = False
        lane.reads += 1
        if not self._closed and self._lanes.get(lane.camera.id) is lane:
            self._on_codes(lane, codes)

    def _on_codes(self, lane: _Lane, codes: Sequence[ScannedCode]) -> None:
        numbers = list(dict.fromkeys(n for n in map(tracking_number, codes) if n is not None))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "station read %s", numbers or "nothing", extra={"camera_id": lane.camera.id}
            )
        if not numbers:
            return
        now = self._clock()
        lane.last_read_at = now
        lane.last_read_wall = time.time()
        if lane.current in numbers:
            lane.candidate = None  # the current parcel is still there
            return
        pick = lane.candidate if lane.candidate in numbers else numbers[0]
        if pick == lane.candidate and now - lane.candidate_at <= self._config.confirm_window_s:
            lane.candidate_reads += 1
        else:
            lane.candidate, lane.candidate_reads, lane.candidate_at = pick, 1, now
        if lane.candidate_reads < self._config.confirm_reads:
            return
        lane.candidate = None
        logger.info(
            "station scanned %s (was %s)",
            pick,
            lane.current,
            extra={"camera_id": lane.camera.id},
        )
        lane.current = pick
        self._tasks.spawn(self._reconcile(lane), f"station-clip-{lane.camera.id}")

    def _end(self, lane: _Lane, why: str) -> None:
        """The current parcel is over (idle, camera gone, station changed): end its clip."""
        if self._closed:
            return  # running clips are filed by the capture service's shutdown
        if lane.current is not None or lane.clip is not None:
            logger.info(
                "station clip of %s ends: %s",
                lane.current,
                why,
                extra={"camera_id": lane.camera.id},
            )
        lane.current = None
        lane.candidate = None
        self._tasks.spawn(self._reconcile(lane), f"station-clip-{lane.camera.id}")

    def _idle_timeout(self, camera: Camera) -> float:
        own = camera.station.idle_timeout_s if camera.station is not None else None
        return own if own else self._config.idle_timeout_s

    async def _watch(self) -> None:
        """End the clips of stations that read no tracking number for their idle timeout."""
        while True:
            await asyncio.sleep(self._config.tick_s)
            try:
                self._end_idle()
            except Exception:
                logger.exception("looking for idle station clips failed")

    def _end_idle(self) -> None:
        now = self._clock()
        for lane in list(self._lanes.values()):
            timeout = self._idle_timeout(lane.camera)
            if lane.current is not None and now - lane.last_read_at >= timeout:
                self._end(lane, f"no tracking number read for {timeout:g} s")

    # -- recording -------------------------------------------------------------------------------

    async def _reconcile(self, lane: _Lane) -> None:
        """Make the lane's clip follow its current parcel: stop a clip of another parcel (or of
        a camera that left), then start one for the current parcel. Serialised per camera;
        each run looks at the state as it is then, so runs queued behind it are cheap."""
        async with lane.lock:
            if self._closed:
                return
            live = lane.stream is not None and self._lanes.get(lane.camera.id) is lane
            wanted = lane.current if live else None
            clip = lane.clip
            if clip is not None and (
                clip.tracking_number != wanted
                or lane.stream is None
                or clip.target.publishers != (lane.stream.publisher_id,)
            ):
                await self._stop(lane, clip)
            if wanted is not None and lane.clip is None and lane.stream is not None:
                await self._start(lane, lane.stream, wanted)

    async def _start(self, lane: _Lane, stream: StreamKey, number: str) -> None:
        camera = lane.camera
        station = camera.station
        if station is None:
            return
        site = await self._sites.get_site(camera.site_id)
        site_name = site.name if site is not None else camera.site_id
        stage = station.stage
        target = CaptureTarget(
            room_id=camera_room(camera.id),
            case_id=RoomId.site(camera.site_id),
            use=stage.evidence_use,
            tracking_number=number,
            default_stage=stage.logistics_stage,
            label=(
                f"Site {site_name} ({camera.site_id}) · camera {camera.name} ({camera.id})"
                f" · {stage.value} station"
            ),
            site_id=camera.site_id,
            camera_id=camera.id,
            publishers=(stream.publisher_id,),
            graded=stage is StationStage.RETURNS_QC and self._grading is not None,
        )
        if target.graded and self._grading is not None:
            try:
                await self._grading.begin_segment(target.room_id, {"tracking_number": number})
            except Exception:
                # The clip matters more than its grade: record it anyway.
                logger.exception("grading of %s not restarted", number)
        try:
            info = await self._captures.start_target(
                target,
                station_operator(camera),
                stage=None,
                note=f"tracking number {number} read at the {stage.value} station",
                preroll_seconds=self._config.preroll_s,
            )
        except (MediaError, DomainError) as exc:
            logger.warning(
                "station clip of %s not started: %s", number, exc, extra={"camera_id": camera.id}
            )
            return
        lane.clip = _Clip(number, info.id, target, time.time())
        logger.info("station clip of %s started", number, extra={"camera_id": camera.id})
        await self._changed(camera)

    async def _stop(self, lane: _Lane, clip: _Clip) -> None:
        """File the clip. It shows as the station's clip until it is filed, so that the status
        never shows the parcel gone without its clip counted."""
        camera = lane.camera
        try:
            item = await self._captures.stop_target(
                clip.target, clip.capture_id, station_operator(camera)
            )
        except (MediaError, DomainError) as exc:
            # Already filed by a shutdown, or nothing arrived: nothing to file.
            logger.warning(
                "station clip of %s not filed: %s",
                clip.tracking_number,
                exc,
                extra={"camera_id": camera.id},
            )
        else:
            lane.filed += 1
            lane.last_tracking_number = clip.tracking_number
            lane.last_item_id = item.item_id
            logger.info(
                "station clip of %s filed as %s",
                clip.tracking_number,
                item.item_id,
                extra={"camera_id": camera.id},
            )
        finally:
            lane.clip = None
        await self._changed(camera)

    async def _changed(self, camera: Camera) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(camera.site_id, camera.id)
        except Exception:
            logger.exception("station status listener failed", extra={"camera_id": camera.id})
