"""The media engine: one server-side aiortc peer per participant, forwarding within rooms.

It fits ``signaling.ports.MediaGateway`` (without importing signaling): the client always
offers, the server always answers, and re-offers on the same peer renegotiate it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from pathlib import Path
from typing import Any, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from aioutil import OwnedTasks

from . import _aiortc
from .audio import AudioSampler, AudioSink
from .config import MediaConfig
from .errors import (
    BadCandidate,
    BadSdp,
    IceNotRestartable,
    MediaError,
    PeerNotFound,
)
from .forwarder import Forwarder
from .keyframes import is_keyframe, received_frame
from .peer import ServerPeer
from .recorder import RecordedFile
from .recording import CaptureHandle, Publication, Recordings
from .sampler import FrameSampler, FrameSink, StreamKey
from .sdp import OfferedMedia, munge_answer, no_common_codec, parse_candidate, validate_offer
from .source import SourceStats, TrackSource
from .subscriber import ForwardingTotals, SubscriberTrack

__all__ = ["MediaEngine", "MediaListener"]

logger = logging.getLogger(__name__)

#: What aiortc raises from setRemoteDescription for an offer it cannot apply.
_AIORTC_OFFER_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)


class MediaListener(Protocol):
    """Who the engine tells that a participant must offer again (signaling)."""

    async def renegotiation_needed(self, participant_id: str) -> None: ...


class MediaEngine:
    """Server-side peers for every participant, forwarding each one's tracks to its room.

    Implements ``signaling.ports.MediaGateway``. Bad offers raise :class:`~media.BadSdp`, bad
    candidates :class:`~media.BadCandidate` (both ``ValueError``).
    """

    def __init__(
        self,
        config: MediaConfig | None = None,
        *,
        frame_sink: FrameSink | None = None,
        audio_sink: AudioSink | None = None,
    ) -> None:
        self._config = config or MediaConfig()
        self._frame_sink = frame_sink
        self._audio_sink = audio_sink
        self._listener: MediaListener | None = None
        self._peers: dict[str, ServerPeer] = {}
        self._forwarder = Forwarder(on_source_ended=self._source_ended)
        self._tasks = OwnedTasks()
        self._closed = False
        self._recordings = Recordings(self._config)
        #: The sampler the engine attached to each sampled video source.
        self._samplers: dict[TrackSource, FrameSampler] = {}
        #: Each video publisher's REMB relay (its subscribers' estimates, with a floor).
        self._remb: dict[TrackSource, _aiortc.RembRelay] = {}
        #: The audio sampler attached to each audio source whose speech is transcribed.
        self._listeners: dict[TrackSource, AudioSampler] = {}
        #: Participants publishing through add_publisher, and their room.
        self._ingested: dict[str, str] = {}

    @property
    def config(self) -> MediaConfig:
        return self._config

    def set_audio_sink(self, sink: AudioSink | None) -> None:
        """Where decoded speech goes (captions); audio published from now on is offered to it,
        and :meth:`resample` offers the tracks already live."""
        self._audio_sink = sink

    def set_listener(self, listener: MediaListener) -> None:
        """Who to ask for renegotiation when a participant lacks receiving transceivers."""
        self._listener = listener

    # -- stats --------------------------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def room_count(self) -> int:
        return len({peer.room_id for peer in self._peers.values()})

    @property
    def published_tracks(self) -> int:
        return self._forwarder.published_tracks

    def peer(self, participant_id: str) -> ServerPeer:
        """The server-side peer of a participant (raises :class:`PeerNotFound`)."""
        peer = self._peers.get(participant_id)
        if peer is None:
            raise PeerNotFound(participant_id)
        return peer

    def remote_tracks(self, participant_id: str) -> dict[str, int]:
        """How many tracks of each kind the room has for this participant (``renegotiate``)."""
        self.peer(participant_id)
        return self._forwarder.available(participant_id)

    # -- MediaGateway ---------------------------------------------------------------------------

    async def answer(
        self, room_id: str, participant_id: str, offer_sdp: str, *, ingest: bool = False
    ) -> str:
        """Apply the client's offer (creating its peer on first use) and return the answer.

        ``ingest``: the client is an encoder (WHIP) that may never answer ICE consent checks;
        any packet from it counts as consent instead.
        """
        if self._closed:
            raise MediaError("the media engine is shutting down")
        offered = validate_offer(offer_sdp)
        peer = self._peers.get(participant_id)
        if peer is not None and peer.room_id != room_id:
            # A participant moved to another call: its old peer is of no use any more.
            await self.close_peer(participant_id)
            peer = None
        if peer is None:
            peer = self._create_peer(room_id, participant_id)

        async with peer.lock:
            if peer.closed:
                raise PeerNotFound(participant_id)
            peer.negotiating = True
            try:
                answer_sdp = await self._negotiate(peer, offer_sdp, offered, ingest=ingest)
            finally:
                peer.negotiating = False
        self._route(room_id)
        return answer_sdp

    async def _negotiate(
        self, peer: ServerPeer, offer_sdp: str, offered: list[OfferedMedia], *, ingest: bool
    ) -> str:
        pc = peer.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except _AIORTC_OFFER_ERRORS as exc:
            if peer.closed:
                raise PeerNotFound(peer.participant_id) from exc
            logger.info("rejected offer: %s", exc, extra=peer.log_extra)
            if not peer.negotiated:
                # aiortc may have half-applied it; a retry must start from a clean peer.
                await self.close_peer(peer.participant_id)
            message = str(exc) or type(exc).__name__
            if isinstance(exc, OperationError):
                message = no_common_codec(offered)
            raise BadSdp(f"the offer cannot be applied: {message}") from exc

        if ingest:
            # Encoders such as FFmpeg's WHIP muxer never answer ICE consent checks.
            _aiortc.consent_from_any_packet(pc)
        self._attach_senders(peer, offered)
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except (InvalidStateError, InternalError, ValueError) as exc:
            if peer.closed:
                raise PeerNotFound(peer.participant_id) from exc
            raise BadSdp(f"cannot answer this offer: {exc}") from exc
        for transceiver in pc.getTransceivers():
            outlet = peer.outlets.get(transceiver.mid or "")
            if outlet is not None:
                outlet.codec = _aiortc.negotiated_codec(transceiver)
        peer.negotiated = True
        logger.info(
            "answered offer with %d media sections",
            len(offered),
            extra=peer.log_extra,
        )
        return munge_answer(pc.localDescription.sdp, self._config.bitrate_hints())

    def _attach_senders(self, peer: ServerPeer, offered: list[OfferedMedia]) -> None:
        by_mid = {media.mid: media for media in offered}
        room_codecs = self._forwarder.offered_codecs(peer.participant_id, "video")
        for transceiver in peer.pc.getTransceivers():
            media = by_mid.get(transceiver.mid or "")
            if media is None:
                continue
            # aiortc answers and(direction, offer reversed): "sendrecv" here lets the server send
            # wherever the client receives and receive wherever it sends.
            transceiver.direction = "sendrecv"
            outlet = peer.outlets.get(media.mid)
            if outlet is not None and outlet.codec is not None:
                # aiortc's sender keeps the codec it started with: answer with it again.
                _aiortc.prefer_codec(transceiver, outlet.codec)
            elif transceiver.kind == "video":
                # Receive what the room's publishers send, so frames are forwarded as they are.
                for codec in (*room_codecs, *self._config.video_codecs):
                    if _aiortc.prefer_codec(transceiver, codec):
                        break
            if media.client_receives and outlet is None:
                outlet = self._forwarder.subscribe(peer.participant_id, transceiver.kind)
                transceiver.sender.replaceTrack(outlet)
                _aiortc.on_keyframe_request(transceiver.sender, outlet.request_keyframe)
                if transceiver.kind == "video":
                    self._follow_estimate(transceiver.sender, outlet)
                peer.outlets[media.mid] = outlet

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a trickled ICE candidate (empty string: end of candidates)."""
        parsed = parse_candidate(candidate, sdp_mid, sdp_mline_index)
        peer = self.peer(participant_id)
        async with peer.lock:
            if peer.closed:
                raise PeerNotFound(participant_id)
            if peer.pc.remoteDescription is None:
                raise BadCandidate("a candidate arrived before any offer")
            try:
                await peer.pc.addIceCandidate(parsed)
            except ValueError as exc:
                raise BadCandidate(f"the candidate cannot be applied: {exc}") from exc

    async def restart_ice(
        self, participant_id: str, remote: _aiortc.IceCredentials
    ) -> tuple[_aiortc.IceCredentials, list[str]]:
        """Restart ICE on a live peer with the client's new credentials (a WHIP encoder that
        moved networks). Returns the server's new credentials and its candidates; the client's
        candidates follow with :meth:`add_candidate`. Media goes on over the old path until the
        new checks nominate a pair. Raises ``PeerNotFound`` or ``IceNotRestartable``."""
        peer = self.peer(participant_id)
        async with peer.lock:
            if peer.closed:
                raise PeerNotFound(participant_id)
            local = _aiortc.IceCredentials.new()
            try:
                candidates = _aiortc.restart_ice(peer.pc, local, remote)
            except ConnectionError as exc:
                raise IceNotRestartable(f"ICE cannot be restarted: {exc}") from exc
        logger.info("ICE restarted for %s", participant_id)
        return local, candidates

    # -- publishers other than WebRTC peers (RTSP pull) -------------------------------------------

    def add_publisher(
        self,
        room_id: str,
        participant_id: str,
        kind: str,
        track_id: str,
        *,
        keyframe_requester: Callable[[], Awaitable[bool]] | None = None,
        gop_cache: bool = True,
    ) -> TrackSource:
        """A source fed by its owner (an ingest such as RTSP pull) instead of a peer.

        The owner pushes encoded frames with :meth:`TrackSource.push`; when that returns True
        (something samples the track) it decodes and passes pictures to
        :meth:`TrackSource.push_decoded`. It is sampled, buffered for captures and routed like
        a peer's track; :meth:`remove_publisher` (or :meth:`close_peer`) ends it. With
        ``gop_cache`` a new subscriber starts at once from the newest keyframe group (a camera
        may not answer keyframe requests) instead of waiting for the camera's next keyframe.
        """
        if self._closed:
            raise MediaError("the media engine is shutting down")
        if participant_id in self._peers:
            raise ValueError(f"{participant_id!r} is a WebRTC peer")
        self._forwarder.join(room_id, participant_id)
        self._ingested[participant_id] = room_id
        source = self._forwarder.publish(
            participant_id,
            kind,
            track_id,
            keyframe_requester=keyframe_requester,
            gop_cache=gop_cache,
        )
        logger.info(
            "publishing ingested %s track %s",
            kind,
            track_id,
            extra={"room_id": room_id, "participant_id": participant_id},
        )
        self._published(source)
        return source

    async def remove_publisher(self, participant_id: str) -> None:
        """End every source :meth:`add_publisher` made for ``participant_id``. Idempotent."""
        room_id = self._ingested.pop(participant_id, None)
        if room_id is None:
            return
        self._recordings.participant_left(participant_id)
        await self._forwarder.leave(participant_id)
        self._samplers = {src: smp for src, smp in self._samplers.items() if src.live}
        self._listeners = {src: smp for src, smp in self._listeners.items() if src.live}
        self._route(room_id)

    async def close_peer(self, participant_id: str) -> None:
        """Close a participant's peer and stop forwarding to and from it. Idempotent."""
        if participant_id in self._ingested:
            await self.remove_publisher(participant_id)
            return
        peer = self._peers.pop(participant_id, None)
        if peer is None:
            return
        peer.closed = True
        self._recordings.participant_left(participant_id)
        await self._forwarder.leave(participant_id)
        self._samplers = {src: smp for src, smp in self._samplers.items() if src.live}
        self._listeners = {src: smp for src, smp in self._listeners.items() if src.live}
        self._route(peer.room_id)
        # Never cancel RTCPeerConnection.close(): a close that aiortc started itself (remote
        # DTLS close) awaits a bare future, and cancelling that future makes aiortc's own close
        # task fail with InvalidStateError. On timeout the close goes on, owned by the engine.
        closing = asyncio.ensure_future(peer.pc.close())
        try:
            done, _ = await asyncio.wait({closing}, timeout=self._config.close_timeout_s)
            if done:
                closing.result()
            else:
                logger.warning("peer connection did not close in time", extra=peer.log_extra)
                self._tasks.spawn(closing, f"media-pc-close-{participant_id}")
        finally:
            peer.done.set()
        logger.info("peer closed", extra=peer.log_extra)

    async def aclose(self) -> None:
        """Close every peer within the configured timeout and end the engine's tasks.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        # Finalise every file first: a capture's index is written when its recorder closes.
        await self._recordings.stop_all()
        try:
            async with asyncio.timeout(self._config.close_timeout_s):
                await asyncio.gather(*(self.close_peer(pid) for pid in list(self._peers)))
        except TimeoutError:
            logger.warning("media peers did not close in time; dropping %d", len(self._peers))
            self._peers.clear()
        for participant_id in list(self._ingested):
            await self.remove_publisher(participant_id)
        await self._tasks.aclose()
        await self._recordings.aclose()
        await self._forwarder.aclose()

    # -- internals ----------------------------------------------------------------------------

    def _create_peer(self, room_id: str, participant_id: str) -> ServerPeer:
        if self._config.udp_ports is not None:
            _aiortc.bind_udp_ports(asyncio.get_running_loop(), self._config.udp_ports)
        pc = RTCPeerConnection(configuration=self._config.rtc_configuration())
        peer = ServerPeer(room_id=room_id, participant_id=participant_id, pc=pc)
        self._peers[participant_id] = peer
        self._forwarder.join(room_id, participant_id)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if peer.closed:
                return
            receiver = _aiortc.receiver_of(pc, track)
            if receiver is None:
                logger.warning("no receiver for track %s", track.id, extra=peer.log_extra)
                return
            source = self._forwarder.publish(
                participant_id,
                track.kind,
                track.id,
                decoded=track,
                keyframe_requester=lambda: _aiortc.request_keyframe(receiver),
            )
            _aiortc.tap_encoded_frames(receiver, _encoded_pusher(source))
            if source.kind == "video":
                self._recover_video(pc, receiver, source)
            else:
                _aiortc.forward_audio_as_it_arrives(receiver)
            logger.info(
                "publishing %s track %s", source.kind, source.track_id, extra=peer.log_extra
            )
            self._published(source)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            logger.info("connection state %s", state, extra=peer.log_extra)
            if state in ("failed", "closed") and not peer.closed:
                self._spawn(self._close_if_current(peer), f"media-close-{participant_id}")

        logger.info("peer created", extra=peer.log_extra)
        return peer

    def _recover_video(self, pc: RTCPeerConnection, receiver: Any, source: TrackSource) -> None:
        """A published video track's receive path under loss: frames released on their
        marker, NACKs by time with holes given up for a keyframe, and the REMB its publisher
        hears relayed from its subscribers (with the floor)."""
        buffer = _aiortc.release_frames_on_marker(
            receiver, keyframe=lambda data: is_keyframe(source.codec or "vp8", data)
        )

        def give_up(holes: list[int]) -> None:
            if buffer is not None:
                buffer.give_up(holes)
            source.request_keyframe()

        _aiortc.recover_losses_by_time(
            receiver,
            _aiortc.LossRecovery(
                give_up, rtt=lambda: _aiortc.peer_rtt(pc), give_up_s=self._config.loss_give_up_s
            ),
        )
        self._remb[source] = _aiortc.RembRelay(
            receiver,
            source.subscriber_estimate,
            floor_bps=self._config.publish_floor_kbps * 1000,
        )

    def _follow_estimate(self, sender: Any, outlet: SubscriberTrack) -> None:
        """A video subscriber's REMB: kept on its track, the temporal layers it is sent chosen
        from it, relayed to the publisher feeding it, and the budget of its retransmissions."""

        def estimated(bps: int) -> None:
            outlet.estimate_bps = bps
            feeding = outlet.source
            if not isinstance(feeding, TrackSource):
                return
            # A publisher sending temporal layers: this subscriber takes what its link carries.
            outlet.choose_layer(feeding.layer_bitrates())
            relay = self._remb.get(feeding)
            if relay is not None:
                self._spawn(_relay_now(relay), "media-remb")

        _aiortc.on_remb(sender, estimated)
        share = self._config.retransmit_share
        # No less than the floor the publisher is held to: a receiver's estimate can read far
        # under what its link carries (aiortc's first REMBs say a few kbit/s), and the media
        # goes at no less than the floor anyway.
        floor = self._config.publish_floor_kbps * 1000
        _aiortc.bound_retransmissions(
            sender, lambda: int(max(outlet.estimate_bps or 2_000_000, floor) * share)
        )

    async def _close_if_current(self, peer: ServerPeer) -> None:
        # The participant may already have a newer peer by the time this runs.
        if self._peers.get(peer.participant_id) is peer:
            await self.close_peer(peer.participant_id)

    def _source_ended(self, source: TrackSource) -> None:
        self._samplers.pop(source, None)
        self._remb.pop(source, None)
        self._listeners.pop(source, None)
        self._recordings.source_ended(source)
        if not self._closed:
            self._route(source.room_id)

    def _route(self, room_id: str) -> None:
        short = self._forwarder.route(room_id)
        for participant_id, peer in self._peers.items():
            if peer.room_id != room_id:
                continue
            counts = short.get(participant_id)
            if counts is None:
                peer.requested = None
            elif not peer.negotiating and counts != peer.requested:
                peer.requested = counts
                logger.info("asking for renegotiation: %s", counts, extra=peer.log_extra)
                self._spawn(self._notify(participant_id), f"media-renegotiate-{participant_id}")

    async def _notify(self, participant_id: str) -> None:
        if self._listener is None:
            return
        try:
            await self._listener.renegotiation_needed(participant_id)
        except Exception:
            logger.exception(
                "renegotiation_needed failed", extra={"participant_id": participant_id}
            )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._closed:
            coro.close()
            return
        self._tasks.spawn(coro, name)

    # -- sampling -------------------------------------------------------------------------------

    def _published(self, source: TrackSource) -> None:
        """A new source: sample it, buffer it for captures, route it."""
        self._sample_if_wanted(source)
        self._recordings.add(source)
        self._route(source.room_id)

    def _sample_if_wanted(self, source: TrackSource) -> None:
        """Attach a sampler to a live video source the frame sink wants, or take the engine's
        sampler off one it no longer wants (the sink is told the stream ended)."""
        if source.kind == "audio":
            self._listen_if_wanted(source)
            return
        sink = self._frame_sink
        if sink is None or not source.live:
            return
        stream = StreamKey(source.room_id, source.publisher_id, source.track_id)
        wanted = sink.wants(stream)
        sampler = self._samplers.get(source)
        if wanted and sampler is None:
            sampler = FrameSampler(stream, sink, self._config.sample_fps)
            self._samplers[source] = sampler
            source.add_frame_tap(sampler)
        elif not wanted and sampler is not None:
            del self._samplers[source]
            source.remove_frame_tap(sampler)
            sampler.close()

    def _listen_if_wanted(self, source: TrackSource) -> None:
        """Decode a live audio source while the audio sink wants its speech; stop decoding it
        (the sink is told the stream ended) when it no longer does."""
        sink = self._audio_sink
        if sink is None or not source.live:
            return
        stream = StreamKey(source.room_id, source.publisher_id, source.track_id)
        wanted = sink.wants_audio(stream)
        sampler = self._listeners.get(source)
        if wanted and sampler is None:
            sampler = AudioSampler(stream, sink)
            self._listeners[source] = sampler
            source.add_frame_tap(sampler)
        elif not wanted and sampler is not None:
            del self._listeners[source]
            source.remove_frame_tap(sampler)
            sampler.close()

    def resample(self, room_id: str) -> None:
        """Ask the sinks again whether they want each live track of the room (what they want
        changed: a camera became a station, captions were switched off). Tracks no longer
        wanted stop being decoded; newly wanted video starts at its next keyframe."""
        for source in self._forwarder.sources(room_id):
            self._sample_if_wanted(source)

    # -- recording (see media.recording) ----------------------------------------------------------

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
        """Record every track published in ``room_id`` until :meth:`stop_capture` (or
        :meth:`aclose`): one file per publishing participant, starting with the pre-roll
        (see :meth:`media.recording.Recordings.start_capture`)."""
        return await self._recordings.start_capture(
            room_id,
            directory,
            name=name,
            preroll=preroll,
            preroll_seconds=preroll_seconds,
            participants=participants,
        )

    async def stop_capture(self, handle: CaptureHandle) -> list[RecordedFile]:
        """Finish a capture's files and describe them (raises :class:`~media.CaptureNotFound`
        if it was already stopped)."""
        return await self._recordings.stop_capture(handle)

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
        room from the pre-roll buffers; see :meth:`media.recording.Recordings.save_last`."""
        return await self._recordings.save_last(
            room_id, seconds, directory, name=name, participants=participants
        )

    async def snapshot(
        self, room_id: str, participants: Collection[str] | None = None
    ) -> bytes | None:
        """A JPEG of the newest picture of a video published in the room (``None`` when no
        video frame has arrived), decoded on demand off the event loop."""
        return await self._recordings.snapshot(room_id, participants)

    def publications(self, participant_id: str) -> list[Publication]:
        """What is kept for recording each live track ``participant_id`` publishes (its
        pre-roll buffer and the recorders it feeds)."""
        return self._recordings.publications(participant_id)

    # -- stats ------------------------------------------------------------------------------------

    def sources(self, room_id: str) -> list[TrackSource]:
        """Every live published track of the room."""
        return self._forwarder.sources(room_id)

    def all_sources(self) -> list[TrackSource]:
        """Every live published track (metrics)."""
        return self._forwarder.all_sources()

    @property
    def forwarding_totals(self) -> ForwardingTotals:
        return self._forwarder.totals

    def source_stats(self, room_id: str) -> list[SourceStats]:
        """What every live published track of the room looks like now (codec, size, rate)."""
        return [source.stats() for source in self._forwarder.sources(room_id)]


def _encoded_pusher(source: TrackSource) -> _aiortc.EncodedCallback:
    """The receiver tap for one source: wraps each frame and says whether to decode it."""
    kind = source.kind

    def push(mime_type: str, clock_rate: int, data: bytes, timestamp: int, head: bytes) -> bool:
        frame = received_frame(kind, mime_type, clock_rate, data, timestamp, time.monotonic(), head)
        return source.push(frame)

    return push


async def _relay_now(relay: _aiortc.RembRelay) -> None:
    await relay.update()
