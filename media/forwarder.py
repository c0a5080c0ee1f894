"""The one seam through which media flows from publishers to subscribers, encoded.

A published track becomes a :class:`~media.source.TrackSource` (``source.py``). Whoever
receives it (the engine's receiver tap for a WebRTC publisher, an ingest for RTSP)
:meth:`~media.source.TrackSource.push`-es every complete **encoded** frame; the source fans it
out to its subscribers without decoding it, and each subscriber's aiortc sender packetizes the
``av.Packet`` it gets without encoding it. Decoding happens once per published track, and
only while a frame tap (the grading sampler, a shared transcode) is attached: the push tells
the receiver whether to decode.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack

from .source import KINDS, TrackSource
from .subscriber import DEFAULT_QUEUE, ForwardingTotals, SubscriberTrack

__all__ = ["Forwarder"]


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
