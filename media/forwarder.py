"""The one seam through which media flows from publishers to subscribers.

A publisher's remote track becomes a :class:`TrackSource`: one reader task that pulls its frames
and fans them out. Each sending transceiver of a subscriber gets one :class:`SubscriberTrack`,
set on its ``RTCRtpSender`` once and kept for the life of the peer; routing only re-points it at
another source. That is deliberate: an aiortc sender blocked in ``recv()`` of a track that is
later replaced keeps waiting on the *old* track, and a track that ends raises
``MediaStreamError`` which stops the sender for good, so swapping tracks under a sender does
not survive a publisher leaving and another arriving.

Today frames are decoded ``av`` frames and every subscriber's sender re-encodes them. Forwarding
encoded frames later means changing what a ``TrackSource`` reads and pushes (an ``av.Packet``
goes through ``RTCRtpSender`` unencoded); engine and signaling stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame
from av.packet import Packet

__all__ = ["KINDS", "Forwarder", "SubscriberTrack", "Tap", "TrackSource"]

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("audio", "video")

#: Frames a subscriber may lag before the oldest is dropped. Video keeps only the newest couple
#: (late video is useless); audio tolerates 200 ms of jitter in 20 ms frames before it drops.
DEFAULT_QUEUE = {"audio": 10, "video": 2}

#: What flows through the seam: decoded frames today, encoded packets later.
MediaItem: TypeAlias = "Frame | Packet[Any]"


class Tap(Protocol):
    """Something that watches a source's frames without being a subscriber (never blocks)."""

    def push(self, frame: MediaItem) -> None: ...

    def close(self) -> None: ...


class SubscriberTrack(MediaStreamTrack):
    """What one subscriber's sender reads: the frames of whichever source is attached.

    With no source attached ``recv()`` simply waits, so the sender idles without sending.
    """

    def __init__(self, kind: str, subscriber_id: str, queue_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.subscriber_id = subscriber_id
        self._frames: deque[MediaItem] = deque(maxlen=queue_size)
        self._wake = asyncio.Event()
        self._source: TrackSource | None = None
        #: Frames dropped because the sender fell behind (bounded queue, oldest first).
        self.dropped = 0

    @property
    def source(self) -> TrackSource | None:
        """The published track currently feeding this subscriber, if any."""
        return self._source

    def _push(self, frame: MediaItem) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._wake.set()

    def _set_source(self, source: TrackSource | None) -> None:
        # Frames queued from a previous publisher must not leak into the next one's stream.
        self._frames.clear()
        self._source = source

    async def recv(self) -> MediaItem:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                return self._frames.popleft()
            self._wake.clear()
            await self._wake.wait()

    def stop(self) -> None:
        if self._source is not None:
            self._source.detach(self)
        super().stop()
        self._wake.set()


class TrackSource:
    """One published track, read by one task and fanned out to any number of subscribers.

    The track is read even with no subscriber: aiortc's ``RemoteStreamTrack`` queues decoded
    frames without bound until someone reads them.
    """

    def __init__(
        self,
        room_id: str,
        publisher_id: str,
        track: MediaStreamTrack,
        on_ended: Callable[[TrackSource], None],
    ) -> None:
        self.room_id = room_id
        self.publisher_id = publisher_id
        self.kind: str = track.kind
        self.track_id: str = track.id
        self._track = track
        self._on_ended = on_ended
        self._outlets: set[SubscriberTrack] = set()
        self._taps: list[Tap] = []
        self._task: asyncio.Task[None] | None = None
        self.live = True
        #: Frames read from the publisher.
        self.frames = 0

    def __repr__(self) -> str:
        return f"<TrackSource {self.kind} of {self.publisher_id} in {self.room_id}>"

    @property
    def subscribers(self) -> frozenset[SubscriberTrack]:
        return frozenset(self._outlets)

    def start(self) -> None:
        """Start the reader task (owned by this source; :meth:`aclose` ends it)."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"media-source-{self.publisher_id}-{self.kind}-{self.track_id}"
            )

    def attach(self, outlet: SubscriberTrack) -> None:
        """Feed ``outlet`` from this source, taking it away from any other."""
        if outlet.kind != self.kind:
            raise ValueError(f"cannot feed a {outlet.kind} subscriber from a {self.kind} track")
        previous = outlet.source
        if previous is self:
            return
        if previous is not None:
            previous.detach(outlet)
        outlet._set_source(self)
        self._outlets.add(outlet)

    def add_tap(self, tap: Tap) -> None:
        """Also show every frame to ``tap`` (e.g. the sampler); closed when the source ends."""
        self._taps.append(tap)

    def _close_taps(self) -> None:
        taps, self._taps = self._taps, []
        for tap in taps:
            tap.close()

    def detach(self, outlet: SubscriberTrack) -> None:
        """Stop feeding ``outlet``; it idles until attached again."""
        if outlet in self._outlets:
            self._outlets.discard(outlet)
            outlet._set_source(None)

    def _detach_all(self) -> None:
        for outlet in tuple(self._outlets):
            self.detach(outlet)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._track.recv()
                self.frames += 1
                for outlet in tuple(self._outlets):
                    outlet._push(frame)
                for tap in self._taps:
                    tap.push(frame)
        except MediaStreamError:
            logger.debug(
                "published %s track ended",
                self.kind,
                extra={"room_id": self.room_id, "participant_id": self.publisher_id},
            )
        except asyncio.CancelledError:
            self.live = False
            self._detach_all()
            self._close_taps()
            raise
        except Exception:
            logger.exception(
                "reading a published %s track failed",
                self.kind,
                extra={"room_id": self.room_id, "participant_id": self.publisher_id},
            )
        self.live = False
        self._detach_all()
        self._close_taps()
        self._on_ended(self)

    async def aclose(self) -> None:
        """Stop reading and detach every subscriber. Idempotent."""
        self.live = False
        self._detach_all()
        self._close_taps()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Only swallow the cancellation we caused, never our caller's.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise


@dataclass(slots=True)
class _Member:
    room_id: str
    participant_id: str
    sources: list[TrackSource] = field(default_factory=list)
    outlets: list[SubscriberTrack] = field(default_factory=list)


class Forwarder:
    """Routes every participant's published tracks to every *other* participant of its room.

    Participants :meth:`join` a room, :meth:`publish` remote tracks and :meth:`subscribe` one
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

    def publish(self, participant_id: str, track: MediaStreamTrack) -> TrackSource:
        """Start forwarding ``track``, published by ``participant_id``."""
        member = self._member(participant_id)
        source = TrackSource(member.room_id, participant_id, track, self._source_ended)
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
        outlet = SubscriberTrack(kind, participant_id, self._queue_sizes[kind])
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
                    if outlet.source is not None and outlet.source not in offered:
                        outlet.source.detach(outlet)
                taken = {outlet.source for outlet in outlets if outlet.source is not None}
                free = [source for source in offered if source not in taken]
                for outlet in outlets:
                    if outlet.source is None and free:
                        free.pop(0).attach(outlet)
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

    def _member(self, participant_id: str) -> _Member:
        member = self._members.get(participant_id)
        if member is None:
            raise KeyError(f"participant {participant_id!r} has not joined a room")
        return member

    async def aclose(self) -> None:
        """Stop every source and subscriber track. Idempotent."""
        for participant_id in list(self._members):
            await self.leave(participant_id)
