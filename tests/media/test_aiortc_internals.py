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

    seen: list[tuple[str, int, bytes, int, bytes]] = []
    decode = [True]

    def tap(*args: object) -> bool:
        seen.append(args)  # type: ignore[arg-type]
        return decode[0]

    tap_encoded_frames(receiver, tap)
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    frame = JitterFrame(data=b"\x10\x02\x00", timestamp=3000)
    decoder_queue.put((codec, frame))
    decode[0] = False
    skipped = JitterFrame(data=b"\x11\x02\x00", timestamp=6000)
    decoder_queue.put((codec, skipped))
    decoder_queue.put(None)
    # The decoder gets only what the tap lets through, and always the end-of-track None.
    assert decoder_queue.get_nowait() == (codec, frame)
    assert decoder_queue.get_nowait() is None
    assert decoder_queue.empty()
    assert seen == [
        ("video/VP8", 90000, b"\x10\x02\x00", 3000, b""),
        ("video/VP8", 90000, b"\x11\x02\x00", 6000, b""),
    ]
    await pc.close()


async def test_sender_keyframe_hook_and_codec_order_are_where_expected() -> None:
    import inspect

    from aiortc import RTCRtpSender

    from media._aiortc import negotiated_codec, on_keyframe_request, prefer_codec

    source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in source, (
        "aiortc's sender no longer calls _send_keyframe() on PLI/FIR: subscribers' keyframe "
        "requests would stop reaching publishers (media/_aiortc.py on_keyframe_request)"
    )
    pc = RTCPeerConnection(MediaConfig().rtc_configuration())
    transceiver = pc.addTransceiver("video")
    asked: list[int] = []
    on_keyframe_request(transceiver.sender, lambda: asked.append(1))
    transceiver.sender._send_keyframe()
    assert asked == [1]

    assert isinstance(getattr(transceiver, "_codecs", None), list), (
        "aiortc's RTCRtpTransceiver has no _codecs list: codec steering must be rewritten"
    )
    client = RTCPeerConnection(MediaConfig().rtc_configuration())
    client.addTransceiver("video", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    await pc.close()
    pc = RTCPeerConnection(MediaConfig().rtc_configuration())
    await pc.setRemoteDescription(client.localDescription)
    (server_side,) = pc.getTransceivers()
    assert negotiated_codec(server_side) == "vp8"  # aiortc offers VP8 first
    assert prefer_codec(server_side, "h264")
    assert negotiated_codec(server_side) == "h264"
    assert not prefer_codec(server_side, "av1")
    answer = await pc.createAnswer()
    video = next(line for line in answer.sdp.splitlines() if line.startswith("m=video"))
    first_pt = video.split()[3]
    assert f"a=rtpmap:{first_pt} H264/90000" in answer.sdp
    await pc.close()
    await client.close()


async def test_ice_consent_hooks_are_where_expected() -> None:
    import inspect

    from aioice import ice

    from media._aiortc import consent_from_any_packet

    connect = inspect.getsource(ice.Connection.connect)
    assert "self.query_consent()" in connect, (
        "aioice no longer starts consent checks with self.query_consent(): the WHIP "
        "consent-from-any-packet hook in media/_aiortc.py must be rewritten"
    )
    assert "self.receiver.data_received(" in inspect.getsource(ice.StunProtocol.datagram_received)
    pc = RTCPeerConnection(MediaConfig().rtc_configuration())
    pc.addTransceiver("video")
    pc.addTransceiver("audio")
    assert consent_from_any_packet(pc) == 2  # one ICE connection per transceiver without BUNDLE
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    assert "query_consent" in vars(connection) and "data_received" in vars(connection)
    await pc.close()


def test_marker_jitter_buffer_releases_a_frame_at_its_last_packet() -> None:
    import inspect

    from aiortc import RTCRtpReceiver
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtp import RtpPacket

    from media._aiortc import MarkerJitterBuffer

    assert "self.__jitter_buffer.add(packet)" in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    ), "aiortc changed how RTCRtpReceiver assembles frames (media/_aiortc.py MarkerJitterBuffer)"
    assert list(inspect.signature(JitterBuffer._remove_frame).parameters) == [
        "self",
        "sequence_number",
    ]

    def packet(seq: int, ts: int, data: bytes, marker: bool) -> RtpPacket:
        p = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
        p._data = data  # type: ignore[attr-defined]  # what the receiver's depayloader sets
        return p

    buffer = MarkerJitterBuffer(capacity=512)
    assert buffer.add(packet(10, 3000, b"a", False)) == (False, None)
    _, frame = buffer.add(packet(11, 3000, b"b", True))
    assert frame is not None and (frame.data, frame.timestamp) == (b"ab", 3000)
    # Out of order: nothing until the gap is filled, then the whole frame at once.
    assert buffer.add(packet(13, 6000, b"d", True)) == (False, None)
    _, frame = buffer.add(packet(12, 6000, b"c", False))
    assert frame is not None and frame.data == b"cd"
    # No marker: released when the next frame starts, as aiortc does.
    assert buffer.add(packet(14, 9000, b"e", False)) == (False, None)
    _, frame = buffer.add(packet(15, 12000, b"f", False))
    assert frame is not None and frame.data == b"e"


async def test_ice_restart_finds_the_aioice_state_it_resets() -> None:
    """``restart_ice`` resets an aioice ``Connection``'s check list and credentials and runs
    its check loop; the same names must still be there (the restart itself is tested end to
    end in tests/server/test_whip_restart.py)."""
    import inspect

    from aioice import ice as aioice_ice

    from media._aiortc import ice_connections

    pc = RTCPeerConnection(MediaConfig().rtc_configuration())
    transceiver = pc.addTransceiver("video")
    [connection] = ice_connections(pc)
    for name in (
        "_check_list",
        "_check_list_done",
        "_check_list_state",
        "_components",
        "_closing",
        "_local_password",
        "_local_username",
        "_nominated",
        "_nominating",
        "_remote_candidates",
        "_remote_candidates_end",
    ):
        assert hasattr(connection, name), f"aioice Connection lost {name}: restart_ice breaks"
    for name in ("_check_periodic", "_check_list_maybe_complete", "query_consent"):
        assert callable(getattr(connection, name, None)), f"aioice Connection lost {name}()"
    maybe_complete = inspect.getsource(aioice_ice.Connection.check_complete)
    assert "self._check_list_maybe_complete()" in maybe_complete, (
        "aioice no longer completes the check list through _check_list_maybe_complete: "
        "restart_ice's replacement of it has no effect"
    )
    assert hasattr(aioice_ice, "ICE_COMPLETED")
    gatherer = transceiver.receiver.transport.transport.iceGatherer
    assert hasattr(gatherer, "_remote_candidates_end")
    assert transceiver.receiver.transport.transport._connection is connection
    await pc.close()


async def test_loss_recovery_and_remb_hooks_are_where_expected() -> None:
    """What LossRecovery, PassThroughAudioBuffer, RembRelay, on_remb, bound_retransmissions
    and peer_rtt rely on: the receiver's private NACK generator (asked ``add`` and then
    ``missing``), bitrate estimator (``add`` returning ``(bitrate, ssrcs)``), RTCP and RTX SSRCs,
    and the sender's RTT, RTP history, ``_retransmit`` and ``_handle_rtcp_packet``."""
    import inspect

    from aiortc import RTCRtpReceiver, RTCRtpSender
    from aiortc.rate import RemoteBitrateEstimator
    from aiortc.rtcrtpreceiver import NackGenerator

    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video")
        audio = pc.addTransceiver("audio")
        receiver = video.receiver
        assert isinstance(receiver._RTCRtpReceiver__nack_generator, NackGenerator)  # type: ignore[attr-defined]
        assert isinstance(
            receiver._RTCRtpReceiver__remote_bitrate_estimator,  # type: ignore[attr-defined]
            RemoteBitrateEstimator,
        )
        assert audio.receiver._RTCRtpReceiver__nack_generator is None  # type: ignore[attr-defined]
        assert isinstance(receiver._RTCRtpReceiver__rtcp_ssrc, int)  # type: ignore[attr-defined]
        assert receiver._RTCRtpReceiver__rtx_ssrc == {}  # type: ignore[attr-defined]
        assert video.sender._RTCRtpSender__rtt is None  # type: ignore[attr-defined]
        # The RTP history bound_retransmissions reads packet sizes from: seq % size -> packet.
        assert video.sender._RTCRtpSender__rtp_history == {}  # type: ignore[attr-defined]
        assert "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)" in inspect.getsource(
            RTCRtpSender._retransmit
        )
        source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
        assert "self.__nack_generator.add(packet)" in source
        assert "sorted(self.__nack_generator.missing)" in source
        assert "self.__remote_bitrate_estimator.add(" in source
        assert "self.__jitter_buffer.add(packet)" in source
        assert list(inspect.signature(RTCRtpSender._retransmit).parameters) == [
            "self",
            "sequence_number",
        ]
        assert list(inspect.signature(RTCRtpSender._handle_rtcp_packet).parameters) == [
            "self",
            "packet",
        ]
        assert list(inspect.signature(RTCRtpReceiver._send_rtcp).parameters) == ["self", "packet"]
    finally:
        await pc.close()
