"""Every use of aiortc (and aioice) internals in the media package lives here.

aiortc is pinned to its minor version in pyproject.toml; ``tests/media/test_aiortc_internals.py``
fails loudly when one of these private attributes moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection

__all__ = ["GathererServers", "gatherer_servers"]


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
