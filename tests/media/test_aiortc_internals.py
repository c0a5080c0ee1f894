"""Fails loudly when the aiortc/aioice internals used by media/_aiortc.py move."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection

from media import MediaConfig
from media._aiortc import GathererServers, gatherer_servers


async def test_gatherer_servers_reads_aiortc_default_and_configured_servers() -> None:
    # iceServers=None is aiortc's trap: Google's public STUN server.
    default = RTCPeerConnection(RTCConfiguration())
    default.addTransceiver("audio")
    assert gatherer_servers(default) == [GathererServers(("stun.l.google.com", 19302), None)]
    await default.close()

    configured = RTCPeerConnection(
        MediaConfig(
            ice_servers=("stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"),
            turn_username="u",
            turn_credential="p",
        ).rtc_configuration()
    )
    configured.addTransceiver("video")
    assert gatherer_servers(configured) == [
        GathererServers(("stun.example.net", 3478), ("turn.example.net", 3478))
    ]
    await configured.close()

    empty = RTCPeerConnection(MediaConfig().rtc_configuration())
    empty.addTransceiver("video")
    assert gatherer_servers(empty) == [GathererServers(None, None)]
    await empty.close()
