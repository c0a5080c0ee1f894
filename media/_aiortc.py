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

__all__ = [
    "EncodedCallback",
    "GathererServers",
    "IceCredentials",
    "bind_udp_ports",
    "consent_from_any_packet",
    "gatherer_servers",
    "ice_connections",
    "negotiated_codec",
    "on_keyframe_request",
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


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, but a frame is released as soon as its last packet (RTP
    marker bit, RFC 7741 / RFC 6184) arrives with every packet before it.

    aiortc releases a frame only when the *next* frame's first packet arrives, which adds one
    frame interval (33 ms at 30 fps, 67 ms at 15 fps) at every hop. Without a marker it falls
    back to aiortc's rule.
    """

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
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
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count)
                return frame
            packets.append(packet)
            if packet.marker:
                frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
                self.remove(count + 1)
                return frame
        return None


def release_frames_on_marker(receiver: RTCRtpReceiver) -> None:
    """Give a video receiver a :class:`MarkerJitterBuffer` (call before packets arrive)."""
    current = getattr(receiver, _JITTER_BUFFER)
    if isinstance(current, MarkerJitterBuffer) or not current._is_video:
        return
    setattr(receiver, _JITTER_BUFFER, MarkerJitterBuffer(capacity=current.capacity, is_video=True))


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
EncodedCallback = Callable[[str, int, bytes, int], bool]


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
        try:
            decode = callback(codec.mimeType, codec.clockRate, frame.data, frame.timestamp)
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
    """Send a PLI for every SSRC the receiver heard recently; False if it has heard none yet."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
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
