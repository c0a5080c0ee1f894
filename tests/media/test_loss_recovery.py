"""The receive path under loss, and what a publisher is told it may send: NACKs by time, holes
given up for a keyframe, audio forwarded as it arrives, Opus FEC in the answer, subscribers'
estimates relayed to the publisher with a floor, retransmissions within a budget.

Unit tests on the pieces (fake clocks, hand-made RTP packets), then the engine over loopback
with real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCRtpReceiver
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

from media import MediaConfig, MediaEngine
from media._aiortc import (
    LossRecovery,
    MarkerJitterBuffer,
    PassThroughAudioBuffer,
    bound_retransmissions,
)
from media.sdp import BitrateHints, munge_answer
from tests.fakes.camera import (
    NumberedVideoTrack,
    ToneAudioTrack,
    TrackReader,
    client_accept,
    client_offer,
    client_pc,
)
from tests.waits import until

ROOM = "case-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rtp(seq: int, timestamp: int, data: bytes = b"x", *, marker: bool = True) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=marker)
    packet._data = data  # type: ignore[attr-defined]
    return packet


# -- NACKs by time ------------------------------------------------------------------------------


def test_a_missing_packet_is_asked_for_every_round_trip_then_given_up() -> None:
    clock, holes = Clock(), []
    recovery = LossRecovery(holes.append, rtt=lambda: 0.05, clock=clock)
    assert not recovery.add(rtp(10, 0))
    assert recovery.add(rtp(12, 0))  # 11 is missing: asked for at once
    assert recovery.missing == {11}
    clock.now += 0.02
    assert not recovery.add(rtp(13, 0))  # not yet a round trip since
    clock.now += 0.04
    assert recovery.add(rtp(14, 0)) and recovery.missing == {11}  # asked again
    # Past max(3 x RTT, 0.4 s) it is given up (and the engine asks for a keyframe).
    clock.now += 0.35
    recovery.add(rtp(15, 0))
    assert holes == [[11]] and recovery.given_up == 1
    clock.now += 0.1
    assert not recovery.add(rtp(16, 0)) and holes == [[11]]


def test_a_retransmission_ends_the_asking_and_a_long_round_trip_waits_longer() -> None:
    clock, holes = Clock(), []
    recovery = LossRecovery(holes.append, rtt=lambda: 0.3, clock=clock)
    recovery.add(rtp(1, 0))
    recovery.add(rtp(3, 0))
    recovery.add(rtp(2, 0))  # the retransmission
    clock.now += 1.0
    assert not recovery.add(rtp(4, 0)) and holes == []
    recovery.add(rtp(6, 0))
    clock.now += 0.5  # over 0.4 s but under 3 x 0.3 s
    recovery.add(rtp(7, 0))
    assert holes == []
    clock.now += 0.45
    recovery.add(rtp(8, 0))
    assert holes == [[5]]


def test_an_outage_is_given_up_whole_without_asking_for_each_packet() -> None:
    holes: list[list[int]] = []
    recovery = LossRecovery(holes.append, clock=Clock(), max_gap=256)
    recovery.add(rtp(65500, 0))
    assert not recovery.add(rtp(65500 + 400 - 65536, 0))  # 400 packets later, across the wrap
    assert len(holes) == 1 and recovery.nacks_sent == 0


def test_a_given_up_hole_is_skipped_and_frames_wait_for_a_keyframe() -> None:
    buffer = MarkerJitterBuffer(capacity=128, keyframe=lambda data: data.startswith(b"K"))
    assert buffer.add(rtp(1, 100, b"K1"))[1] is not None
    # Packet 2 (frame 200) is lost; frames 300 and 400 wait behind it.
    assert buffer.add(rtp(3, 300, b"d3"))[1] is None
    assert buffer.add(rtp(4, 400, b"d4"))[1] is None
    buffer.give_up([2])
    assert buffer.awaiting_keyframe
    # The waiting delta frames are dropped, not shown broken; the keyframe goes through.
    _, frame = buffer.add(rtp(5, 500, b"K5"))
    assert frame is not None and frame.data == b"K5" and not buffer.awaiting_keyframe
    assert buffer.frames_skipped == 2
    _, after = buffer.add(rtp(6, 600, b"d6"))
    assert after is not None and after.data == b"d6"


# -- audio --------------------------------------------------------------------------------------


def test_audio_packets_are_handed_on_as_they_arrive() -> None:
    buffer = PassThroughAudioBuffer()
    out = [buffer.add(rtp(seq, 960 * seq, bytes([seq])))[1] for seq in (1, 2, 4, 5)]
    # Nothing is held for the packets after it, and the loss of 3 holds nothing up.
    assert [f.data for f in out if f is not None] == [b"\x01", b"\x02", b"\x04", b"\x05"]
    # Packet 3 arriving late (after 5) is dropped: the sender numbers frames in order.
    assert buffer.add(rtp(3, 960 * 3, b"\x03"))[1] is None and buffer.late == 1


def test_the_answer_asks_for_opus_in_band_fec() -> None:
    answer = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n"
        "a=fmtp:97 apt=96\r\n"
    )
    out = munge_answer(answer, BitrateHints(1500)).splitlines()
    assert "a=fmtp:111 useinbandfec=1" in out
    assert not any(line.startswith("a=fmtp:0") for line in out)
    assert "a=fmtp:96 x-google-start-bitrate=1500" in out and "a=fmtp:97 apt=96" in out
    assert munge_answer("\r\n".join(out), BitrateHints(1500)).count("useinbandfec") == 1


async def test_retransmissions_stay_within_their_budget() -> None:
    sent: list[int] = []
    # 1,150 payload bytes + 52 of headers: 9,616 bits a packet, 40 a second at 384,640 bit/s.
    history = {seq: RtpPacket(sequence_number=seq, payload=b"x" * 1150) for seq in range(128)}

    class Sender:
        _RTCRtpSender__rtp_history = history

        async def _retransmit(self, seq: int) -> None:
            sent.append(seq)

    clock = Clock()
    sender: Any = Sender()
    refused = bound_retransmissions(sender, lambda: 384_640, clock=clock, burst_s=4.0)
    for seq in range(100):
        await sender._retransmit(seq)
    assert sent == [] and refused() == 100  # no budget saved up yet
    clock.now += 0.25
    for seq in range(100):
        await sender._retransmit(seq)
    assert len(sent) == 10 and refused() == 190  # a quarter second's worth
    # A packet the sender no longer holds costs nothing and is not counted.
    await sender._retransmit(128 + 5)
    assert refused() == 190
    # Quiet for a minute: four seconds' worth saved, no more; a whole outage's hole at once.
    sent.clear()
    clock.now += 60
    for seq in range(128):
        await sender._retransmit(seq)
    assert len(sent) == 128  # 0-9 a second time: twice in all
    for seq in range(40, 128):
        await sender._retransmit(seq)
    assert len(sent) == 160 and refused() == 190 + 56  # the bucket held 160 packets' worth
    # Never more than twice per packet, whatever the budget.
    clock.now += 60
    await sender._retransmit(50)
    await sender._retransmit(5)
    assert len(sent) == 160 and refused() == 190 + 56 + 2


# -- through the engine -------------------------------------------------------------------------


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(MediaConfig(recording=False, publish_floor_kbps=500))
    yield engine
    await engine.aclose()


async def _connect(engine: MediaEngine, pc: Any, participant_id: str) -> None:
    answer = await engine.answer(ROOM, participant_id, await client_offer(pc))
    await client_accept(pc, answer)


def _server_receiver(engine: MediaEngine, kind: str) -> RTCRtpReceiver:
    pc = engine.peer("customer").pc
    return next(r for r in pc.getReceivers() if r.track is not None and r.track.kind == kind)


async def test_a_narrow_viewer_lowers_the_publishers_bitrate_down_to_the_floor(
    engine: MediaEngine,
) -> None:
    customer, agent = client_pc(), client_pc()
    readers: list[TrackReader] = []
    agent_receivers: list[RTCRtpReceiver] = []

    @agent.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in agent.getReceivers() if r.track is track)
        # The test speaks for the agent's link: aiortc's own estimate stays out of it.
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        agent_receivers.append(receiver)
        readers.append(TrackReader(track))

    try:
        customer.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
        customer.addTransceiver(ToneAudioTrack(), direction="sendonly")
        await _connect(engine, customer, "customer")
        agent.addTransceiver("video", direction="recvonly")
        await _connect(engine, agent, "agent")
        await until(lambda: bool(readers), within=10)
        await readers[0].wait_until(lambda r: len(r.numbers) >= 5)

        # The server's receive path: NACKs by time, audio as it arrives.
        video, audio = _server_receiver(engine, "video"), _server_receiver(engine, "audio")
        assert isinstance(video._RTCRtpReceiver__nack_generator, LossRecovery)  # type: ignore[attr-defined]
        assert isinstance(video._RTCRtpReceiver__jitter_buffer, MarkerJitterBuffer)  # type: ignore[attr-defined]
        assert isinstance(audio._RTCRtpReceiver__jitter_buffer, PassThroughAudioBuffer)  # type: ignore[attr-defined]

        sender = next(t.sender for t in customer.getTransceivers() if t.kind == "video")
        encoder = lambda: sender._RTCRtpSender__encoder  # type: ignore[attr-defined]  # noqa: E731
        await until(lambda: encoder() is not None, within=5)
        (receiver,) = agent_receivers

        async def agent_says(bps: int) -> None:
            ssrcs = [s.source for s in receiver.getSynchronizationSources()]
            await receiver._send_rtcp(
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=receiver._RTCRtpReceiver__rtcp_ssrc,  # type: ignore[attr-defined]
                    media_ssrc=0,
                    fci=pack_remb_fci(bps, ssrcs),
                )
            )

        await agent_says(800_000)
        await until(lambda: encoder().target_bitrate == 800_000, within=5)
        # A viewer on a 200 kbit/s link: the publisher goes down, but not below the floor.
        await agent_says(200_000)
        await until(lambda: encoder().target_bitrate == 500_000, within=5)
        outlet = next(iter(engine.peer("agent").outlets.values()))
        assert outlet.estimate_bps == 200_000
        await asyncio.sleep(0.3)
        assert encoder().target_bitrate == 500_000
    finally:
        for reader in readers:
            await reader.aclose()
        await customer.close()
        await agent.close()


async def test_the_answer_to_a_publisher_carries_opus_fec(engine: MediaEngine) -> None:
    customer = client_pc()
    try:
        customer.addTransceiver(ToneAudioTrack(), direction="sendonly")
        answer = await engine.answer(ROOM, "customer", await client_offer(customer))
        opus = [line for line in answer.splitlines() if "opus/48000" in line]
        (pt,) = [line.split()[0].split(":")[1] for line in opus]
        assert any(line.startswith(f"a=fmtp:{pt} ") and "useinbandfec=1" in line
                   for line in answer.splitlines())  # fmt: skip
        await client_accept(customer, answer)
    finally:
        await customer.close()
