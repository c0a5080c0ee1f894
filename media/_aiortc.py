"""Every use of aiortc (and aioice) internals in the media package lives here.

aiortc is pinned to its minor version in pyproject.toml; ``tests/media/test_aiortc_internals.py``
fails loudly when one of these private attributes moves.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver

__all__ = [
    "EncodedCallback",
    "GathererServers",
    "gatherer_servers",
    "receiver_of",
    "request_keyframe",
    "tap_encoded_frames",
]

logger = logging.getLogger(__name__)

#: The name-mangled decoder queue of ``RTCRtpReceiver`` (aiortc 1.16).
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


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


#: ``(mime_type, clock_rate, data, timestamp)`` of one complete encoded frame.
EncodedCallback = Callable[[str, int, bytes, int], None]


def receiver_of(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver | None:
    """The receiver of a remote track (public API, kept here next to its only user)."""
    for receiver in pc.getReceivers():
        if receiver.track is track:
            return receiver
    return None


def tap_encoded_frames(receiver: RTCRtpReceiver, callback: EncodedCallback) -> None:
    """Also hand every encoded frame the receiver queues for its decoder to ``callback``.

    aiortc's ``RTCRtpReceiver._handle_rtp_packet`` (a coroutine, so on the event-loop thread)
    puts ``(codec, JitterFrame)`` on the private ``queue.Queue`` its decoder thread reads; the
    ``JitterFrame`` timestamp is already unwrapped and counted from the track's first frame.
    The queue object stays the same (the decoder thread may already hold it); only its ``put``
    is wrapped, and the decoder gets exactly what it got before. ``callback`` must not raise
    and must return at once.
    """
    decoder_queue: queue.Queue[Any] = getattr(receiver, _DECODER_QUEUE)
    if getattr(decoder_queue, "_media_tapped", False):
        raise RuntimeError("this receiver is already tapped")
    original_put = decoder_queue.put

    def put(item: Any, block: bool = True, timeout: float | None = None) -> None:
        original_put(item, block, timeout)
        if item is None:  # the receiver stopping its decoder
            return
        codec, frame = item
        try:
            callback(codec.mimeType, codec.clockRate, frame.data, frame.timestamp)
        except Exception:
            logger.exception("encoded-frame tap failed")

    decoder_queue.put = put  # type: ignore[method-assign]
    decoder_queue._media_tapped = True  # type: ignore[attr-defined]


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for every SSRC the receiver heard recently; False if it has heard none yet."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)
