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


async def test_receiver_decoder_queue_and_pli_are_where_the_tap_expects_them() -> None:
    import inspect
    import queue

    from aiortc import RTCRtpReceiver
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from media._aiortc import tap_encoded_frames

    pc = RTCPeerConnection(MediaConfig().rtc_configuration())
    receiver = pc.addTransceiver("video").receiver
    decoder_queue = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
    assert isinstance(decoder_queue, queue.Queue), (
        "aiortc changed RTCRtpReceiver: no __decoder_queue (queue.Queue); the recorder's "
        "encoded-frame tap in media/_aiortc.py must be rewritten"
    )
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source, (
        "aiortc changed how RTCRtpReceiver hands encoded frames to its decoder"
    )
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtp_packet), (
        "the tap relies on _handle_rtp_packet running on the event-loop thread"
    )
    assert inspect.iscoroutinefunction(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)), (
        "aiortc removed RTCRtpReceiver._send_rtcp_pli(media_ssrc): keyframe requests break"
    )
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]

    seen: list[tuple[str, int, bytes, int]] = []
    tap_encoded_frames(receiver, lambda *args: seen.append(args))
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    frame = JitterFrame(data=b"\x10\x02\x00", timestamp=3000)
    decoder_queue.put((codec, frame))
    decoder_queue.put(None)
    # The decoder still gets exactly what it got before; the tap saw the frame once.
    assert decoder_queue.get_nowait() == (codec, frame)
    assert decoder_queue.get_nowait() is None
    assert seen == [("video/VP8", 90000, b"\x10\x02\x00", 3000)]
    await pc.close()
