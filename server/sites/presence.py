"""Which cameras are connected and what they send: the live status shown on the admin and
walkthrough pages.

The server knows when a camera connects and leaves (a phone page joins its site's room, a WHIP
session starts or ends, the RTSP puller starts or stops). The media engine knows what arrives:
its ``source_stats(room_id)``, handed in as a :data:`RoomStats` callable, gives codec, size,
frame rate, bitrate and the wall-clock time of the last frame per published track. A camera is
``online`` while connected, and ``live`` while its video frames keep arriving (``live`` is
``None`` when the engine gives no stats).
Other services add their part of the status with :meth:`CameraPresence.add_details` (the RTSP
puller's state as ``rtsp``, a station's current parcel as ``station``) and say when it changed
with :meth:`CameraPresence.changed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from server.timefmt import iso_time
from signaling import camera_room

__all__ = [
    "LIVE_WINDOW_S",
    "CameraLink",
    "CameraPresence",
    "ChangeListener",
    "DetailSource",
    "RoomStats",
    "Source",
]

logger = logging.getLogger(__name__)

#: A camera whose newest video frame is older than this is shown as stalled, not live.
LIVE_WINDOW_S = 5.0

Source = Literal["phone", "whip", "rtsp"]

#: Told the site and camera id whenever a camera connects or leaves.
ChangeListener = Callable[[str, str], Awaitable[None]]
#: One more part of a camera's status (the RTSP puller's state, a station's current parcel):
#: given the camera id, its JSON, or ``None`` when it has nothing to say about that camera.
DetailSource = Callable[[str], dict[str, Any] | None]
#: The media engine's per-track stats of a room (``media.SourceStats`` items: ``kind``,
#: ``publisher_id``, ``codec``, ``width``, ``fps``, ``last_frame_at``...), read by attribute so
#: that any engine's stats fit.
RoomStats = Callable[[str], Iterable[Any]]


@dataclass(frozen=True, slots=True)
class CameraLink:
    """One connected camera: how it publishes and as which media participant."""

    camera_id: str
    site_id: str
    source: Source
    participant_id: str
    since: float


class CameraPresence:
    """Connected cameras (this node) and their status. ``on_change`` is awaited after every
    connect and leave, with the site and camera id (the app pushes the new status to the site's
    room)."""

    def __init__(
        self,
        source_stats: RoomStats | None = None,
        *,
        seen: Callable[[str, float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source_stats = source_stats
        self._seen = seen
        self._clock = clock
        self._links: dict[str, CameraLink] = {}
        self._listeners: list[ChangeListener] = []
        self._details: dict[str, DetailSource] = {}

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_details(self, name: str, source: DetailSource) -> None:
        """Show ``source(camera_id)`` as ``status[name]`` (``None`` when it returns nothing)."""
        self._details[name] = source

    async def changed(self, site_id: str, camera_id: str) -> None:
        """The camera's status changed otherwise than by connecting or leaving (an RTSP camera
        retrying, a station starting a clip): tell the listeners, as on a connect."""
        await self._changed(site_id, camera_id)

    @property
    def stats_available(self) -> bool:
        """Whether the media engine reports per-track stats (``source_stats``)."""
        return self._source_stats is not None

    def link(self, camera_id: str) -> CameraLink | None:
        return self._links.get(camera_id)

    async def connected(
        self, camera_id: str, site_id: str, source: Source, participant_id: str
    ) -> None:
        """A camera started publishing as ``participant_id`` (replacing any older link)."""
        now = self._clock()
        self._links[camera_id] = CameraLink(camera_id, site_id, source, participant_id, now)
        logger.info(
            "camera connected (%s)", source, extra={"camera_id": camera_id, "site_id": site_id}
        )
        await self._remember(camera_id, now)
        await self._changed(site_id, camera_id)

    async def disconnected(self, camera_id: str, participant_id: str) -> None:
        """The connection ``participant_id`` ended; ignored if a newer one replaced it."""
        link = self._links.get(camera_id)
        if link is None or link.participant_id != participant_id:
            return
        del self._links[camera_id]
        logger.info("camera disconnected", extra={"camera_id": camera_id})
        await self._remember(camera_id, self._clock())
        await self._changed(link.site_id, camera_id)

    async def _remember(self, camera_id: str, at: float) -> None:
        if self._seen is None:
            return
        try:
            await self._seen(camera_id, at)
        except Exception:
            logger.exception("could not store when camera %s was seen", camera_id)

    async def _changed(self, site_id: str, camera_id: str) -> None:
        for listener in list(self._listeners):
            try:
                await listener(site_id, camera_id)
            except Exception:
                logger.exception("camera status listener failed")

    def _stats(self, camera_id: str, publisher_id: str | None) -> list[Any] | None:
        if self._source_stats is None:
            return None
        try:
            stats = list(self._source_stats(camera_room(camera_id)))
        except Exception:
            logger.exception("source_stats failed for camera %s", camera_id)
            return None
        if publisher_id is not None:
            # Viewers' talk-back audio is published into the same room: keep the camera's own.
            stats = [s for s in stats if getattr(s, "publisher_id", None) == publisher_id]
        return stats

    def status(self, camera_id: str, last_seen_at: float | None) -> dict[str, Any]:
        """The camera's live status as JSON (see docs/protocol.md, "Camera status")."""
        link = self._links.get(camera_id)
        now = self._clock()
        stats = self._stats(camera_id, link.participant_id if link is not None else None)
        video = _first(stats, "video")
        audio = _first(stats, "audio")
        last_frame = _number(video, "last_frame_at")
        live: bool | None = None
        if stats is not None:
            live = link is not None and last_frame is not None and now - last_frame < LIVE_WINDOW_S
        body: dict[str, Any] = {
            "online": link is not None,
            "live": live,
            "source": link.source if link is not None else None,
            "connected_since": iso_time(link.since) if link is not None else None,
            "last_seen_at": iso_time(now if link is not None else last_seen_at),
            "codec": _attr(video, "codec"),
            "width": _integer(video, "width"),
            "height": _integer(video, "height"),
            "fps": _rounded(_number(video, "fps"), 1),
            "bitrate_kbps": _rounded(_number(video, "bitrate_kbps"), 0),
            "audio_codec": _attr(audio, "codec"),
            "last_frame_at": iso_time(last_frame),
            "transcoding": _attr(video, "transcoding"),
            "stats_available": stats is not None,
        }
        for name, source in self._details.items():
            try:
                body[name] = source(camera_id)
            except Exception:
                logger.exception("camera status detail %r failed for %s", name, camera_id)
                body[name] = None
        rtsp = body.get("rtsp")
        if body["transcoding"] is None and isinstance(rtsp, dict) and link is not None:
            # An RTSP camera is transcoded by its puller, before the engine sees it.
            body["transcoding"] = rtsp.get("transcoding")
        return body


def _first(stats: list[Any] | None, kind: str) -> Any:
    return next((s for s in stats or () if getattr(s, "kind", None) == kind), None)


def _attr(stat: Any, name: str) -> Any:
    value = getattr(stat, name, None) if stat is not None else None
    return value if isinstance(value, str | int | float) or value is None else str(value)


def _number(stat: Any, name: str) -> float | None:
    value = getattr(stat, name, None) if stat is not None else None
    return float(value) if isinstance(value, int | float) else None


def _integer(stat: Any, name: str) -> int | None:
    value = _number(stat, name)
    return int(value) if value is not None else None


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None
