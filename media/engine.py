"""The media engine: one server-side aiortc peer per participant, forwarding within rooms.

It fits ``signaling.ports.MediaGateway`` (without importing signaling): the client always
offers, the server always answers, and re-offers on the same peer renegotiate it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from . import _aiortc
from .capture import CaptureHandle, Publication, decode_newest
from .errors import (
    BadCandidate,
    BadSdp,
    CaptureNotFound,
    IceNotRestartable,
    MediaError,
    NothingToRecord,
    PeerNotFound,
)
from .forwarder import Forwarder, ForwardingTotals, SourceStats, TrackSource
from .keyframes import EncodedFrame, codec_of, is_keyframe
from .peer import ServerPeer
from .preroll import PrerollBuffer
from .recorder import RecordedFile, Recorder, container_for
from .sampler import FrameSampler, FrameSink, StreamKey
from .sdp import BitrateHints, OfferedMedia, munge_answer, parse_candidate, validate_offer

__all__ = ["MediaConfig", "MediaEngine", "MediaListener"]

logger = logging.getLogger(__name__)

_ICE_URL = re.compile(r"^(stun|turn|turns):[^\s]+$")
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


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How the engine's peers reach clients and how fast browsers should start sending."""

    #: STUN/TURN URLs (``stun:host:port``, ``turn:host:port?transport=udp``). Empty on loopback
    #: or a host with a public address: then only host candidates are gathered.
    ice_servers: tuple[str, ...] = ()
    turn_username: str | None = None
    turn_credential: str | None = None
    #: ``x-google-start-bitrate`` put in every answer's video fmtp lines.
    start_bitrate_kbps: int = 1500
    min_bitrate_kbps: int | None = None
    max_bitrate_kbps: int | None = None
    #: How long closing one peer (or all of them in :meth:`MediaEngine.aclose`) may take.
    close_timeout_s: float = 5.0
    #: Decoded frames per second handed to the frame sink (the grading model) per video track.
    sample_fps: float = 2.0
    #: Seconds of encoded frames kept per published track so a capture can start before it
    #: was asked for (from the newest keyframe at least this far back). 0 disables pre-roll.
    preroll_s: float = 10.0
    #: Whether captures are possible at all (no pre-roll buffers, no keyframe requests if not).
    recording: bool = True
    #: While pre-roll is armed, ask each video publisher for a keyframe this often (Chromium
    #: sends almost none on its own, and a pre-roll can only start at one).
    keyframe_interval_s: float = 2.0
    #: UDP ports the server's ICE host candidates bind to (``None``: ephemeral ports). Each
    #: process of a host needs its own range.
    udp_ports: range | None = None
    #: Video codecs to answer with, in order, when the room has no publisher to match yet
    #: (a subscriber then receives its publisher's codec and frames are forwarded as they are).
    video_codecs: tuple[str, ...] = ("vp8", "h264")

    def __post_init__(self) -> None:
        for url in self.ice_servers:
            if not _ICE_URL.match(url):
                raise ValueError(f"ICE server URL must be stun:, turn: or turns:, got {url!r}")
        if self.start_bitrate_kbps <= 0:
            raise ValueError("start_bitrate_kbps must be positive")
        low = self.min_bitrate_kbps or 0
        high = self.max_bitrate_kbps or self.start_bitrate_kbps
        if not low <= self.start_bitrate_kbps <= high:
            raise ValueError("bitrates must satisfy min <= start <= max")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")
        if self.sample_fps <= 0:
            raise ValueError("sample_fps must be positive")
        if self.preroll_s < 0:
            raise ValueError("preroll_s must not be negative")
        if self.keyframe_interval_s <= 0:
            raise ValueError("keyframe_interval_s must be positive")
        if self.udp_ports is not None and (
            not self.udp_ports or self.udp_ports.start < 1024 or self.udp_ports.stop > 65536
        ):
            raise ValueError("udp_ports must be a non-empty range within 1024-65535")
        unknown = set(self.video_codecs) - {"vp8", "h264"}
        if unknown or not self.video_codecs:
            raise ValueError(f"video_codecs must be some of vp8, h264; got {self.video_codecs}")

    @property
    def preroll_armed(self) -> bool:
        return self.recording and self.preroll_s > 0

    def rtc_configuration(self) -> RTCConfiguration:
        """The aiortc configuration for one peer.

        Always a list, possibly empty: ``iceServers=None`` makes aiortc fall back to Google's
        public STUN server.
        """
        stun = [url for url in self.ice_servers if url.startswith("stun:")]
        turn = [url for url in self.ice_servers if not url.startswith("stun:")]
        servers: list[RTCIceServer] = []
        if stun:
            servers.append(RTCIceServer(urls=stun))
        if turn:
            servers.append(
                RTCIceServer(
                    urls=turn, username=self.turn_username, credential=self.turn_credential
                )
            )
        return RTCConfiguration(iceServers=servers)

    def bitrate_hints(self) -> BitrateHints:
        return BitrateHints(self.start_bitrate_kbps, self.min_bitrate_kbps, self.max_bitrate_kbps)


class MediaEngine:
    """Server-side peers for every participant, forwarding each one's tracks to its room.

    Implements ``signaling.ports.MediaGateway``. Bad offers raise :class:`~media.BadSdp`, bad
    candidates :class:`~media.BadCandidate` (both ``ValueError``).
    """

    def __init__(
        self, config: MediaConfig | None = None, *, frame_sink: FrameSink | None = None
    ) -> None:
        self._config = config or MediaConfig()
        self._frame_sink = frame_sink
        self._listener: MediaListener | None = None
        self._peers: dict[str, ServerPeer] = {}
        self._forwarder = Forwarder(on_source_ended=self._source_ended)
        self._tasks: set[asyncio.Future[None]] = set()
        self._closed = False
        self._publications: dict[str, list[Publication]] = {}
        #: The sampler the engine attached to each sampled video source.
        self._samplers: dict[TrackSource, FrameSampler] = {}
        #: Participants publishing through add_publisher, and their room.
        self._ingested: dict[str, str] = {}
        self._captures: dict[str, list[Recorder]] = {}
        self._snapshot_pool: ThreadPoolExecutor | None = None

    @property
    def config(self) -> MediaConfig:
        return self._config

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
                message = _no_common_codec(offered)
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
        for publication in self._publications.pop(participant_id, []):
            self._end_publication(publication)
        await self._forwarder.leave(participant_id)
        self._samplers = {src: smp for src, smp in self._samplers.items() if src.live}
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
        for publication in self._publications.pop(participant_id, []):
            self._end_publication(publication)
        await self._forwarder.leave(participant_id)
        self._samplers = {src: smp for src, smp in self._samplers.items() if src.live}
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
                self._own(closing)
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
        for capture_id in list(self._captures):
            await self._stop_recorders(self._captures.pop(capture_id))
        try:
            async with asyncio.timeout(self._config.close_timeout_s):
                await asyncio.gather(*(self.close_peer(pid) for pid in list(self._peers)))
        except TimeoutError:
            logger.warning("media peers did not close in time; dropping %d", len(self._peers))
            self._peers.clear()
        for participant_id in list(self._ingested):
            await self.remove_publisher(participant_id)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._forwarder.aclose()
        if self._snapshot_pool is not None:
            self._snapshot_pool.shutdown(wait=True)
            self._snapshot_pool = None

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
                _aiortc.release_frames_on_marker(receiver)
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

    async def _close_if_current(self, peer: ServerPeer) -> None:
        # The participant may already have a newer peer by the time this runs.
        if self._peers.get(peer.participant_id) is peer:
            await self.close_peer(peer.participant_id)

    def _source_ended(self, source: TrackSource) -> None:
        self._samplers.pop(source, None)
        publications = self._publications.get(source.publisher_id, [])
        for publication in [p for p in publications if p.source is source]:
            publications.remove(publication)
            self._end_publication(publication)
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
        self._own(asyncio.create_task(coro, name=name))

    def _own(self, task: asyncio.Future[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- recording ------------------------------------------------------------------------------

    def _published(self, source: TrackSource) -> None:
        """A new source: sample it, buffer it for captures, route it."""
        self._sample_if_wanted(source)
        self._add_publication(source)
        self._route(source.room_id)

    def _sample_if_wanted(self, source: TrackSource) -> None:
        """Attach a sampler to a live video source the frame sink wants, or take the engine's
        sampler off one it no longer wants (the sink is told the stream ended)."""
        sink = self._frame_sink
        if source.kind != "video" or sink is None or not source.live:
            return
        stream = StreamKey(source.room_id, source.publisher_id, source.track_id)
        wants = getattr(sink, "wants", None)
        wanted = wants is None or bool(wants(stream))
        sampler = self._samplers.get(source)
        if wanted and sampler is None:
            sampler = FrameSampler(stream, sink, self._config.sample_fps)
            self._samplers[source] = sampler
            source.add_frame_tap(sampler)
        elif not wanted and sampler is not None:
            del self._samplers[source]
            source.remove_frame_tap(sampler)
            sampler.close()

    def resample(self, room_id: str) -> None:
        """Ask the frame sink again whether it wants each live video track of the room (what
        it wants changed: a camera became a station, or stopped being one). Tracks no longer
        wanted stop being decoded; newly wanted ones start at their next keyframe."""
        for source in self._forwarder.sources(room_id):
            self._sample_if_wanted(source)

    def _add_publication(self, source: TrackSource) -> None:
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

    async def _ask_keyframes(self, publication: Publication) -> None:
        """Ask for a keyframe every ``keyframe_interval_s`` while the pre-roll is armed."""
        while True:
            await asyncio.sleep(self._config.keyframe_interval_s)
            publication.source.request_keyframe()

    def _end_publication(self, publication: Publication) -> None:
        """The track is gone: stop asking for keyframes; finish recordings left with no track."""
        task, publication.keyframe_task = publication.keyframe_task, None
        if task is not None:
            task.cancel()
        if publication.preroll is not None:
            publication.preroll.clear()
        sinks, publication.sinks = publication.sinks, set()
        for recorder in sinks:
            if recorder.end_track(publication.key) and not recorder.stopping:
                self._spawn(self._finish_recorder(recorder), f"media-finish-{recorder.path.name}")

    async def _finish_recorder(self, recorder: Recorder) -> None:
        result = await recorder.aclose()
        logger.info(
            "recording %s finished: %d frames, %.1f s",
            result.path,
            result.frames,
            result.duration_s,
        )

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
        leaves, at :meth:`stop_capture` or at :meth:`aclose`. ``participants`` limits it to
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

    def push(mime_type: str, clock_rate: int, data: bytes, timestamp: int) -> bool:
        codec = codec_of(mime_type)
        return source.push(
            EncodedFrame(
                kind=kind,
                codec=codec,
                data=data,
                timestamp=timestamp,
                clock_rate=clock_rate,
                keyframe=is_keyframe(codec, data),
                arrival=time.monotonic(),
            )
        )

    return push


#: What the server forwards, for the message when an offer has none of it.
_SUPPORTED = {
    "audio": "Opus, PCMU, PCMA or G722",
    "video": "VP8 or H264 (constrained baseline 42e01f/42001f, packetization-mode 1)",
}


def _no_common_codec(offered: list[OfferedMedia]) -> str:
    parts = [
        f"{media.kind} section {media.mid} offers {', '.join(media.codecs) or 'nothing'}"
        for media in offered
    ]
    kinds = sorted({media.kind for media in offered})
    wanted = "; ".join(f"{kind}: {_SUPPORTED[kind]}" for kind in kinds if kind in _SUPPORTED)
    return f"no codec in common with the server ({'; '.join(parts)}; it takes {wanted})"


def _snapshot_jpeg(frames: list[EncodedFrame]) -> bytes | None:
    frame = decode_newest(frames)
    return None if frame is None else _jpeg(frame)


def _jpeg(frame: Any) -> bytes:
    image = frame.to_ndarray(format="bgr24")
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise MediaError("JPEG encoding failed")
    return bytes(encoded.tobytes())
