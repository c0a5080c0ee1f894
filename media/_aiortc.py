"""Every use of aiortc (and aioice) internals in the media package lives here.

aiortc is pinned to its minor version in pyproject.toml; ``tests/media/test_aiortc_internals.py``
fails loudly when one of these private attributes moves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioice import ice as aioice_ice
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from aiortc.utils import uint16_add, uint16_gt

__all__ = [
    "EncodedCallback",
    "HeadedFrame",
    "LossRecovery",
    "PassThroughAudioBuffer",
    "RembRelay",
    "GathererServers",
    "IceCredentials",
    "bind_udp_ports",
    "bound_retransmissions",
    "consent_from_any_packet",
    "forward_audio_as_it_arrives",
    "gatherer_servers",
    "ice_connections",
    "negotiated_codec",
    "on_keyframe_request",
    "on_remb",
    "peer_rtt",
    "prefer_codec",
    "receiver_of",
    "release_frames_on_marker",
    "request_keyframe",
    "restart_ice",
    "tap_encoded_frames",
]

logger = logging.getLogger(__name__)

#: The name-mangled decoder queue and jitter buffer of ``RTCRtpReceiver`` (aiortc 1.16).
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
#: The receiver's NACK generator, bitrate estimator, RTCP SSRC and RTX SSRC map.
_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
#: The sender's smoothed round-trip time (from RTCP receiver reports) and its RTP history.
_SENDER_RTT = "_RTCRtpSender__rtt"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
#: Seconds of the retransmission budget a subscriber may save up, the times one packet may be
#: sent again, and the bytes an RTP packet carries besides its payload (RTP, RTX, SRTP, UDP, IP).
RETRANSMIT_BURST_S = 4.0
RETRANSMITS_PER_PACKET = 2
RTP_OVERHEAD_BYTES = 12 + 2 + 10 + 8 + 20


#: Bytes of a frame's first RTP payload kept for its codec's payload descriptor (VP8's is
#: at most 6 bytes: RFC 7741 4.2).
HEAD_BYTES = 6


class HeadedFrame(JitterFrame):
    """A complete frame with the start of its first packet's RTP payload (``head``), where the
    codec's payload descriptor says which temporal layer the frame belongs to; the
    depacketizer has already stripped it from ``data``."""

    def __init__(self, data: bytes, timestamp: int, first: RtpPacket) -> None:
        super().__init__(data=data, timestamp=timestamp)
        self.head = bytes(first.payload[:HEAD_BYTES])


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, but a frame is released as soon as its last packet (RTP
    marker bit, RFC 7741 / RFC 6184) arrives with every packet before it.

    aiortc releases a frame only when the *next* frame's first packet arrives, which adds one
    frame interval (33 ms at 30 fps, 67 ms at 15 fps) at every hop. Without a marker it falls
    back to aiortc's rule.

    A hole that :class:`LossRecovery` gives up on is skipped (:meth:`give_up`): the packets up
    to it are dropped and so is every frame after it until a keyframe, since frames that
    refer to the lost one would only show a broken picture downstream. ``keyframe`` tells a
    keyframe from the bytes of a complete frame.
    """

    def __init__(self, capacity: int, keyframe: Callable[[bytes], bool] | None = None) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self._keyframe = keyframe
        #: After a hole was given up: nothing is released before the next keyframe.
        self.awaiting_keyframe = False
        #: Frames dropped while awaiting a keyframe, and holes skipped.
        self.frames_skipped = 0
        self.holes_skipped = 0

    def give_up(self, sequence_numbers: list[int]) -> None:
        """Stop waiting for these packets: drop what the buffer holds up to the newest of
        them, and release nothing before the next keyframe."""
        if self._origin is None or not sequence_numbers:
            return
        newest = sequence_numbers[0]
        for seq in sequence_numbers[1:]:
            if uint16_gt(seq, newest):
                newest = seq
        # Only holes inside the buffer's window move its origin.
        if uint16_add(newest, -self._origin) < self._capacity:
            self.remove(uint16_add(newest, -self._origin) + 1)
        self.holes_skipped += 1
        if self._keyframe is not None:
            self.awaiting_keyframe = True

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        while True:
            frame = self._next_frame()
            if frame is None or not self.awaiting_keyframe:
                return frame
            assert self._keyframe is not None
            if self._keyframe(frame.data):
                self.awaiting_keyframe = False
                return frame
            self.frames_skipped += 1

    def _next_frame(self) -> JitterFrame | None:
        assert self._origin is not None
        packets: list[Any] = []
        timestamp = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # A frame without a marker: complete once the next one starts (aiortc's rule).
                frame = HeadedFrame(b"".join(p._data for p in packets), timestamp, packets[0])
                self.remove(count)
                return frame
            packets.append(packet)
            if packet.marker:
                frame = HeadedFrame(b"".join(p._data for p in packets), timestamp, packets[0])
                self.remove(count + 1)
                return frame
        return None


def release_frames_on_marker(
    receiver: RTCRtpReceiver, keyframe: Callable[[bytes], bool] | None = None
) -> MarkerJitterBuffer | None:
    """Give a video receiver a :class:`MarkerJitterBuffer` (call before packets arrive)."""
    current = getattr(receiver, _JITTER_BUFFER)
    if isinstance(current, MarkerJitterBuffer):
        return current
    if not current._is_video:
        return None
    buffer = MarkerJitterBuffer(capacity=current.capacity, keyframe=keyframe)
    setattr(receiver, _JITTER_BUFFER, buffer)
    return buffer


class PassThroughAudioBuffer(JitterBuffer):
    """An audio "jitter buffer" that holds nothing: every Opus packet is a frame of its own,
    handed on as it arrives, so the server forwards audio without waiting for the packets
    after it and without dropping those around a loss (the subscriber's own jitter buffer,
    with its concealment and FEC, is where waiting belongs). A packet older than the last one
    handed on (reordered past it) or repeated is dropped: the forwarding sender numbers what
    it is given in order, and aiortc would read an older timestamp as a wrap."""

    def __init__(self) -> None:
        super().__init__(capacity=16)
        self._last: int | None = None
        #: Packets dropped as late or repeated.
        self.late = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        timestamp = packet.timestamp
        if self._last is not None and ((self._last - timestamp) & 0xFFFFFFFF) < 0x80000000:
            self.late += 1
            return False, None
        self._last = timestamp
        return False, JitterFrame(data=packet._data, timestamp=timestamp)  # type: ignore[attr-defined]


def forward_audio_as_it_arrives(receiver: RTCRtpReceiver) -> PassThroughAudioBuffer | None:
    """Give an audio receiver a :class:`PassThroughAudioBuffer` (call before packets arrive)."""
    current = getattr(receiver, _JITTER_BUFFER)
    if isinstance(current, PassThroughAudioBuffer):
        return current
    if current._is_video:
        return None
    buffer = PassThroughAudioBuffer()
    setattr(receiver, _JITTER_BUFFER, buffer)
    return buffer


class LossRecovery:
    """The video receiver's NACKs, by time rather than by packet count.

    Stands in for aiortc's ``NackGenerator`` (which sends each NACK once, tries again only when
    a new gap appears, and forgets a hole only 512 packets later): aiortc asks :meth:`add` of
    every packet and, when it returns True, NACKs :attr:`missing`. A missing packet is asked
    for when it is found missing and again every round trip while packets arrive; after
    ``max(3 x RTT, give_up_s)`` it is given up: ``on_give_up`` gets the holes (the jitter
    buffer skips them and waits for a keyframe, which is requested at once). A gap of more
    than ``max_gap`` packets (an outage) is given up whole, at once, without a NACK storm.
    ``rtt`` is asked for the current round trip (None: ``default_rtt_s``).
    """

    def __init__(
        self,
        on_give_up: Callable[[list[int]], None],
        *,
        rtt: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        give_up_s: float = 0.4,
        default_rtt_s: float = 0.1,
        max_gap: int = 256,
    ) -> None:
        self._on_give_up = on_give_up
        self._rtt = rtt
        self._clock = clock
        self._give_up_s = give_up_s
        self._default_rtt_s = default_rtt_s
        self._max_gap = max_gap
        self.max_seq: int | None = None
        #: seq -> (when it was found missing, when it was last asked for)
        self._pending: dict[int, tuple[float, float | None]] = {}
        #: What aiortc NACKs after an :meth:`add` that returned True.
        self.missing: set[int] = set()
        self.nacks_sent = 0
        self.given_up = 0

    def round_trip(self) -> float:
        measured = self._rtt()
        return measured if measured is not None and measured > 0 else self._default_rtt_s

    def add(self, packet: RtpPacket) -> bool:
        now = self._clock()
        seq = packet.sequence_number
        if self.max_seq is None:
            self.max_seq = seq
            return False
        gone: list[int] = []
        if uint16_gt(seq, self.max_seq):
            gap = uint16_add(seq, -self.max_seq) - 1
            if gap > self._max_gap:
                gone.extend(self._pending)
                self._pending.clear()
                gone.append(uint16_add(seq, -1))
            else:
                for step in range(1, gap + 1):
                    self._pending[uint16_add(self.max_seq, step)] = (now, None)
            self.max_seq = seq
        else:
            self._pending.pop(seq, None)  # a retransmission, or a late one
        rtt = self.round_trip()
        limit = max(3 * rtt, self._give_up_s)
        for missing, (found, _) in list(self._pending.items()):
            if now - found >= limit:
                del self._pending[missing]
                gone.append(missing)
        if gone:
            self.given_up += len(gone)
            self._on_give_up(gone)
        due = [
            missing
            for missing, (_, asked) in self._pending.items()
            if asked is None or now - asked >= rtt
        ]
        for missing in due:
            self._pending[missing] = (self._pending[missing][0], now)
        self.missing = set(due)
        self.nacks_sent += len(due)
        return bool(due)


def recover_losses_by_time(receiver: RTCRtpReceiver, recovery: LossRecovery) -> None:
    """Put ``recovery`` in place of the video receiver's NACK generator."""
    if getattr(receiver, _NACK_GENERATOR) is None:
        raise ValueError("not a video receiver")
    setattr(receiver, _NACK_GENERATOR, recovery)


def peer_rtt(pc: RTCPeerConnection) -> float | None:
    """The smallest round-trip time the peer connection's senders measured (RTCP receiver
    reports with LSR/DLSR); None before any report came back."""
    times = [
        rtt
        for transceiver in pc.getTransceivers()
        if (rtt := getattr(transceiver.sender, _SENDER_RTT, None)) is not None and rtt > 0
    ]
    return min(times) if times else None


class RembRelay:
    """What the publisher is told it may send: the lowest estimate of its subscribers
    (their REMB), never below ``floor_bps``, instead of the server's own estimate of the
    publisher's leg alone (on a good uplink that is far more than a narrow viewer can take).

    Installed on the publisher's video receiver: aiortc's own REMB (from its bitrate
    estimator, sent when packets carry abs-send-time) is capped at the relayed figure, and
    :meth:`update` sends one at once when the subscribers' estimate falls (or rises by a
    quarter, or a second has passed), so the publisher hears of a narrow viewer within a
    round trip.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        subscribers: Callable[[], int | None],
        *,
        floor_bps: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._receiver = receiver
        self._subscribers = subscribers
        self.floor_bps = floor_bps
        self._clock = clock
        self._last_sent: tuple[int, float] | None = None
        #: The figure last told to the publisher (None: its own estimate went unchanged).
        self.relayed_bps: int | None = None
        estimator = getattr(receiver, _BITRATE_ESTIMATOR)
        if estimator is not None:
            original = estimator.add

            def add(*args: Any, **kwargs: Any) -> tuple[int, list[int]] | None:
                remb: tuple[int, list[int]] | None = original(*args, **kwargs)
                if remb is None:
                    return None
                limit = self.limit()
                if limit is None:
                    return remb
                return (min(remb[0], limit), remb[1])

            estimator.add = add

    def limit(self) -> int | None:
        """The subscribers' lowest estimate, not below the floor; None without estimates."""
        lowest = self._subscribers()
        if lowest is None:
            return None
        return max(lowest, self.floor_bps)

    async def update(self) -> bool:
        """Send a REMB now if the relayed figure moved enough; whether one was sent."""
        limit = self.limit()
        if limit is None:
            return False
        now = self._clock()
        if self._last_sent is not None:
            sent, at = self._last_sent
            if sent * 0.95 <= limit <= sent * 1.25 and now - at < 1.0:
                return False
        ssrcs = [
            source.source
            for source in self._receiver.getSynchronizationSources()
            if source.source not in getattr(self._receiver, _RTX_SSRC)
        ]
        rtcp_ssrc = getattr(self._receiver, _RTCP_SSRC)
        if not ssrcs or rtcp_ssrc is None:
            return False
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(limit, ssrcs)
        )
        await self._receiver._send_rtcp(packet)
        self._last_sent = (limit, now)
        self.relayed_bps = limit
        return True


def on_remb(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """Call ``callback(bitrate)`` with every REMB the remote receiver of ``sender`` sends for
    it (RTCP PSFB APP), before aiortc handles the packet as it would."""
    original = sender._handle_rtcp_packet

    async def handle(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    try:
                        callback(bitrate)
                    except Exception:
                        logger.exception("REMB callback failed")
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def bound_retransmissions(
    sender: RTCRtpSender,
    budget_bps: Callable[[], int],
    *,
    clock: Callable[[], float] = time.monotonic,
    burst_s: float = RETRANSMIT_BURST_S,
    max_per_packet: int = RETRANSMITS_PER_PACKET,
) -> Callable[[], int]:
    """Retransmit only what ``budget_bps()`` allows: a token bucket refilled at the budget that
    holds ``burst_s`` of it, charged each packet's real size, and at most ``max_per_packet``
    times per packet. A subscriber on a narrow link that NACKs everything, again and again, gets
    some of its losses repaired rather than a flood that crowds out the media itself; one that
    comes back from a short outage gets the whole hole repaired at once, from what the bucket
    saved while nothing was lost (a receiver that asks once, as aiortc's does, would otherwise
    wait seconds for a packet never sent). A packet no longer in the sender's history costs
    nothing. Returns a callable counting the retransmissions refused."""
    original = sender._retransmit
    history: dict[int, Any] = getattr(sender, _SENDER_HISTORY)
    state = {"tokens": 0.0, "at": clock(), "refused": 0}
    counts: dict[int, int] = {}

    async def retransmit(sequence_number: int) -> None:
        packet = history.get(sequence_number % RTP_HISTORY_SIZE)
        if packet is None or packet.sequence_number != sequence_number:
            return
        now = clock()
        rate = float(max(budget_bps(), 1))
        state["tokens"] = min(rate * burst_s, state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        bits = (len(packet.payload) + RTP_OVERHEAD_BYTES) * 8
        times = counts.get(sequence_number, 0)
        if times >= max_per_packet or state["tokens"] < bits:
            state["refused"] += 1
            return
        state["tokens"] -= bits
        counts[sequence_number] = times + 1
        if len(counts) > 4 * RTP_HISTORY_SIZE:
            for old in list(counts)[: 2 * RTP_HISTORY_SIZE]:
                del counts[old]
        await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
    return lambda: int(state["refused"])


@dataclass(frozen=True, slots=True)
class GathererServers:
    """The STUN and TURN servers one ICE gatherer of a peer connection will contact."""

    stun: tuple[str, int] | None
    turn: tuple[str, int] | None


def gatherer_servers(pc: RTCPeerConnection) -> list[GathererServers]:
    """The servers each ICE transport of ``pc`` uses (aioice ``Connection`` attributes).

    aiortc substitutes Google's public STUN server when ``iceServers`` is ``None``; this is how
    the engine's tests prove it never does.
    """
    servers: list[GathererServers] = []
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        servers.append(GathererServers(stun=connection.stun_server, turn=connection.turn_server))
    return servers


#: ``(mime_type, clock_rate, data, timestamp) -> decode``: one complete encoded frame; the
#: callback returns whether aiortc's decoder thread should decode it too.
#: ``(mime type, clock rate, frame bytes, timestamp, head)``: ``head`` is the start of the
#: frame's first RTP payload (its payload descriptor) when the frame came through a
#: :class:`MarkerJitterBuffer`, else empty.
EncodedCallback = Callable[[str, int, bytes, int, bytes], bool]


def receiver_of(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver | None:
    """The receiver of a remote track (public API, kept here next to its only user)."""
    for receiver in pc.getReceivers():
        if receiver.track is track:
            return receiver
    return None


def tap_encoded_frames(receiver: RTCRtpReceiver, callback: EncodedCallback) -> None:
    """Hand every encoded frame the receiver completes to ``callback``, and to aiortc's decoder
    only when ``callback`` returns True.

    aiortc's ``RTCRtpReceiver._handle_rtp_packet`` (a coroutine, so on the event-loop thread)
    puts ``(codec, JitterFrame)`` on the private ``queue.Queue`` its decoder thread reads; the
    ``JitterFrame`` timestamp is already unwrapped and counted from the track's first frame.
    The queue object stays the same (the decoder thread may already hold it); only its ``put``
    is wrapped. The end-of-track ``None`` always goes through, so the remote track still ends.
    ``callback`` must not block; if it raises, the frame is decoded as aiortc would.
    """
    decoder_queue: queue.Queue[Any] = getattr(receiver, _DECODER_QUEUE)
    if getattr(decoder_queue, "_media_tapped", False):
        raise RuntimeError("this receiver is already tapped")
    original_put = decoder_queue.put

    def put(item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping its decoder
            original_put(item, block, timeout)
            return
        codec, frame = item
        head = getattr(frame, "head", b"")
        try:
            decode = callback(codec.mimeType, codec.clockRate, frame.data, frame.timestamp, head)
        except Exception:
            logger.exception("encoded-frame tap failed")
            decode = True
        if decode:
            original_put(item, block, timeout)

    decoder_queue.put = put  # type: ignore[method-assign]
    decoder_queue._media_tapped = True  # type: ignore[attr-defined]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote receiver of ``sender`` asks for a keyframe (RTCP PLI
    or FIR), instead of only flagging aiortc's encoder, which forwarded packets never reach.

    ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()`` for both.
    """
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        try:
            callback()
        except Exception:
            logger.exception("keyframe request callback failed")

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def negotiated_codec(transceiver: RTCRtpTransceiver) -> str | None:
    """The codec the transceiver's sender uses (``vp8``, ``h264``, ``opus``...), once an offer
    was applied: aiortc sends with the first of the codecs it negotiated."""
    codecs = getattr(transceiver, "_codecs", None) or []
    for codec in codecs:
        name = codec.mimeType.split("/", 1)[-1].lower()
        if name != "rtx":
            return str(name)
    return None


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> bool:
    """Put ``codec`` first among the transceiver's negotiated codecs (its RTX kept after it), so
    the answer and the sender use it; returns False when the offer did not include it.

    Call between ``setRemoteDescription`` and ``createAnswer``. Used so that a subscriber
    receives the codec its publisher sends (forwarding then needs no transcode).
    """
    codecs = list(getattr(transceiver, "_codecs", None) or [])
    first = next((c for c in codecs if c.mimeType.split("/", 1)[-1].lower() == codec.lower()), None)
    if first is None:
        return False
    rtx = [
        c
        for c in codecs
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == first.payloadType
    ]
    rest = [c for c in codecs if c is not first and not any(c is r for r in rtx)]
    transceiver._codecs = [first, *rtx, *rest]
    return True


#: How long a peer may stay silent before a consent-from-any-packet connection closes (what
#: aioice allows: 6 failed checks 5 s apart).
SILENCE_LIMIT_S = aioice_ice.CONSENT_INTERVAL * aioice_ice.CONSENT_FAILURES


def consent_from_any_packet(pc: RTCPeerConnection, *, silence_s: float = SILENCE_LIMIT_S) -> int:
    """Treat any packet from the peer as ICE consent (RFC 7675) on every ICE transport of ``pc``.

    FFmpeg's WHIP muxer never answers aioice's consent checks, so aioice would close the
    connection after ~30 s. aioice's ``Connection.query_consent`` is replaced on the instance
    (``connect()`` looks it up there) by a loop that closes only after ``silence_s`` without
    any packet. Call after ``setRemoteDescription`` and before ``setLocalDescription``. Returns
    the number of ICE connections changed.
    """
    changed = 0
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        if id(connection) in seen:
            continue
        seen.add(id(connection))
        _lenient_consent(connection, silence_s)
        changed += 1
    return changed


def _lenient_consent(connection: aioice_ice.Connection, silence_s: float) -> None:
    last_heard = [time.monotonic()]
    original_received = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        last_heard[0] = time.monotonic()
        original_received(data, component)

    async def query_consent() -> None:
        while True:
            await asyncio.sleep(aioice_ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
            if time.monotonic() - last_heard[0] > silence_s:
                logger.info("no packet from the peer for %.0f s: closing", silence_s)
                connection._query_consent_task = None
                await connection.close()
                return

    connection.data_received = data_received  # type: ignore[method-assign]
    connection.query_consent = query_consent  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class IceCredentials:
    """An ICE username fragment and password (RFC 8445 section 5.3)."""

    ufrag: str
    pwd: str

    @classmethod
    def new(cls) -> IceCredentials:
        # ice-char is ALPHA / DIGIT / "+" / "/": hex is a subset; 8 and 32 characters are past
        # the minimums (4 and 22).
        return cls(secrets.token_hex(4), secrets.token_hex(16))


#: How long the checks of an ICE restart run; the old path stays selected if none succeeds.
ICE_RESTART_CHECKS_S = 30.0
_RESTART_TASK = "_inspect_ice_restart"


def _ice_transports(pc: RTCPeerConnection) -> list[Any]:
    """``pc``'s ICE transports (``RTCIceTransport``), each once (one with BUNDLE)."""
    transports = [t.receiver.transport.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    unique: list[Any] = []
    for transport in transports:
        if all(transport is not seen for seen in unique):
            unique.append(transport)
    return unique


def ice_connections(pc: RTCPeerConnection) -> list[aioice_ice.Connection]:
    """The aioice connections of ``pc``'s ICE transports (one with BUNDLE)."""
    return [transport._connection for transport in _ice_transports(pc)]


def restart_ice(pc: RTCPeerConnection, local: IceCredentials, remote: IceCredentials) -> list[str]:
    """Restart ICE (RFC 8445 section 9) on a live peer, which aiortc 1.16 cannot do itself.

    Each ICE connection of ``pc`` takes the new local and remote credentials and a new check
    list, keeps its sockets (its local candidates are returned, as ``candidate:`` attribute
    values, to be signalled again), and checks the remote candidates added from now on with
    ``pc.addIceCandidate`` (incoming checks teach it the peer's new address too). The pair
    selected before goes on carrying media until a new pair is nominated, so DTLS and SRTP
    carry on untouched; checks run for up to ``ICE_RESTART_CHECKS_S``. Works for either role.
    Raises ``ConnectionError`` unless ICE has completed (nothing to restart).
    """
    transports = _ice_transports(pc)
    states = {transport.state for transport in transports}
    if states != {"completed"}:
        raise ConnectionError(f"ICE is {'/'.join(sorted(states)) or 'not started'}")
    lines: list[str] = []
    for transport in transports:
        # aiortc's own end-of-candidates flag: end-of-candidates may come again.
        transport.iceGatherer._remote_candidates_end = False
        _restart_checks(transport._connection, local, remote)
        if not lines:
            lines = ["candidate:" + c.to_sdp() for c in transport._connection.local_candidates]
    return lines


def _restart_checks(
    connection: aioice_ice.Connection, local: IceCredentials, remote: IceCredentials
) -> None:
    previous: asyncio.Task[None] | None = getattr(connection, _RESTART_TASK, None)
    if previous is not None:
        previous.cancel()
    for pair in connection._check_list:
        if pair.task is not None:
            pair.task.cancel()
    # The old remote candidates go: the peer signals its candidates again, and an address it
    # checks from is learned (peer reflexive). ``_nominated`` stays until a new nomination.
    connection._check_list = []
    connection._remote_candidates = []
    connection._remote_candidates_end = False
    connection._nominating = set()
    connection._check_list_done = False
    connection._check_list_state = asyncio.Queue()
    connection._local_username = local.ufrag
    connection._local_password = local.pwd
    connection.remote_username = remote.ufrag
    connection.remote_password = remote.pwd
    # aioice counts any nominated pair as completing the check list, and the old one is still
    # there: count only pairs of the new check list, or the checks would stop at once.
    connection._check_list_maybe_complete = lambda: _complete_if_renominated(connection)  # type: ignore[method-assign]
    task = asyncio.create_task(_run_checks(connection), name="ice-restart-checks")
    setattr(connection, _RESTART_TASK, task)


def _complete_if_renominated(connection: aioice_ice.Connection) -> bool:
    """aioice's ``_check_list_maybe_complete``, counting only pairs nominated since the
    restart (those of the current check list)."""
    fresh = [pair for pair in connection._nominated.values() if pair in connection._check_list]
    if not fresh or len(fresh) != len(connection._components):
        return False
    if not connection._check_list_done:
        connection._check_list_state.put_nowait(aioice_ice.ICE_COMPLETED)
        connection._check_list_done = True
    return True


async def _run_checks(connection: aioice_ice.Connection) -> None:
    """aioice ``Connection.connect``'s check loop, paced at 20 ms, without its completion
    wait: nominations (ours, aggressive, or the controlling peer's) update the selected pair."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ICE_RESTART_CHECKS_S
    while not connection._closing and loop.time() < deadline:
        if not connection._check_periodic():
            break
        await asyncio.sleep(0.02)


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send one PLI for each media SSRC the receiver heard recently (not for the RTX SSRC of
    its retransmissions, which carries no pictures of its own); False if it heard none yet."""
    rtx = getattr(receiver, _RTX_SSRC)
    sources = [s.source for s in receiver.getSynchronizationSources() if s.source not in rtx]
    for ssrc in sources:
        await receiver._send_rtcp_pli(ssrc)
    return bool(sources)


class PortRangeExhausted(OSError):
    """Every UDP port of the configured media range is taken."""


def bind_udp_ports(loop: asyncio.AbstractEventLoop, ports: range) -> None:
    """Make aioice bind its host candidates to ports of ``ports`` instead of ephemeral ones.

    aioice (``Connection.get_component_candidates``) binds each host candidate with
    ``loop.create_datagram_endpoint(..., local_addr=(address, 0))`` and offers no port range,
    so that call is wrapped on this loop: a request for port 0 tries the range's ports in turn
    (from where the last bind succeeded) until one binds. Several server processes on one host
    each get their own range (firewalls and container port maps need a known range). Other
    datagram endpoints (an explicit port, no local address) are untouched. Idempotent.
    """
    if not ports:
        raise ValueError("the media port range is empty")
    current = getattr(loop, "_media_port_range", None)
    if current is not None:
        if current != ports:
            raise RuntimeError(f"this loop already binds media to {current}")
        return
    original = loop.create_datagram_endpoint
    state = {"next": 0}

    async def create_datagram_endpoint(
        protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kwargs: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await original(protocol_factory, local_addr, remote_addr, **kwargs)
        last_error: OSError | None = None
        for attempt in range(len(ports)):
            port = ports[(state["next"] + attempt) % len(ports)]
            try:
                result = await original(
                    protocol_factory, (local_addr[0], port), remote_addr, **kwargs
                )
            except OSError as exc:
                last_error = exc
                continue
            state["next"] = (state["next"] + attempt + 1) % len(ports)
            return result
        raise PortRangeExhausted(
            f"no free UDP port in {ports.start}-{ports.stop - 1} for {local_addr[0]}"
        ) from last_error

    loop.create_datagram_endpoint = create_datagram_endpoint  # type: ignore[method-assign]
    loop._media_port_range = ports  # type: ignore[attr-defined]
