"""Encoded forwarding through the engine, over loopback with real aiortc peers: subscribers get
the publisher's own bytes, keyframes on request, one shared transcode for a codec mismatch,
decoding only while sampled, and no freeze when the publisher changes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender

from media import BadSdp, MediaConfig, MediaEngine, StreamKey
from media._aiortc import request_keyframe, tap_encoded_frames
from media.keyframes import codec_of, h264_size, is_keyframe, vp8_size
from tests.fakes.camera import (
    NumberedVideoTrack,
    PreEncodedVideoTrack,
    TrackReader,
    client_accept,
    client_offer,
    client_pc,
)
from tests.waits import until

ROOM = "case-1"
WAIT = 10.0


def prefer(pc: Any, kind: str, codec: str, *, only: bool = False) -> None:
    """Put ``codec`` first (or alone) in every ``kind`` transceiver's offer."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in capabilities if c.mimeType.lower() == f"{kind}/{codec}"]
    rest = [] if only else [c for c in capabilities if c not in wanted]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(wanted + rest)


class Peer:
    """A client peer that records the encoded frames it receives and decodes them too."""

    def __init__(self, engine: MediaEngine, participant_id: str) -> None:
        self.engine = engine
        self.participant_id = participant_id
        self.pc = client_pc()
        self.payloads: list[tuple[str, bytes]] = []
        self.reader: TrackReader | None = None
        self.receiver: RTCRtpReceiver | None = None
        self._arrived = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            return
        self.receiver = next(r for r in self.pc.getReceivers() if r.track is track)
        tap_encoded_frames(self.receiver, self._on_encoded)
        self.reader = TrackReader(track)
        self._arrived.set()

    def _on_encoded(self, mime: str, rate: int, data: bytes, timestamp: int, head: bytes) -> bool:
        self.payloads.append((codec_of(mime), data))
        return True

    async def negotiate(self) -> None:
        offer = await client_offer(self.pc)
        answer = await self.engine.answer(ROOM, self.participant_id, offer)
        await client_accept(self.pc, answer)

    async def video(self) -> TrackReader:
        async with asyncio.timeout(WAIT):
            await self._arrived.wait()
        assert self.reader is not None
        return self.reader

    async def aclose(self) -> None:
        if self.reader is not None:
            await self.reader.aclose()
        await self.pc.close()


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    # No pre-roll: its periodic keyframe requests would hide what the tests look for.
    engine = MediaEngine(MediaConfig(recording=False))
    yield engine
    await engine.aclose()


@pytest.fixture
async def peers(engine: MediaEngine) -> AsyncIterator[Callable[[str], Peer]]:
    made: list[Peer] = []

    def make(participant_id: str) -> Peer:
        peer = Peer(engine, participant_id)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.aclose()


def publisher(make: Callable[[str], Peer], track: MediaStreamTrack, codec: str = "vp8") -> Peer:
    peer = make("customer")
    peer.pc.addTransceiver(track, direction="sendonly")
    prefer(peer.pc, "video", codec)
    return peer


def viewer(make: Callable[[str], Peer], pid: str, codec: str | None = None) -> Peer:
    peer = make(pid)
    peer.pc.addTransceiver("video", direction="recvonly")
    if codec is not None:
        prefer(peer.pc, "video", codec, only=True)
    return peer


def units(codec: str, data: bytes) -> list[bytes]:
    """A frame as its codec's units: VP8 as it is; H.264 as its NAL units, whatever their
    start codes, without SEI (aiortc's packetizer, on the publisher's side, normalises both)."""
    if codec != "h264":
        return [data]
    nals = [nal.strip(b"\x00") for nal in data.split(b"\x00\x00\x01")]
    return [nal for nal in nals if nal and nal[0] & 0x1F != 6]


def consecutive(numbers: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(numbers, numbers[1:], strict=False))


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_subscriber_receives_the_publishers_own_bytes(
    engine: MediaEngine, peers: Callable[[str], Peer], codec: str
) -> None:
    camera = PreEncodedVideoTrack(codec, 320, 240, fps=15, gop=15)
    pub = publisher(peers, camera, codec)
    await pub.negotiate()
    # Publisher first: the viewer then negotiates the publisher's codec (it offers VP8 first).
    await until(lambda: any(s.codec == codec for s in engine.source_stats(ROOM)))
    agent = viewer(peers, "agent")
    await agent.negotiate()
    reader = await agent.video()
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 20)

    codecs = {name for name, _ in agent.payloads}
    assert codecs == {codec}
    received = [data for _, data in agent.payloads]
    # The subscriber starts at a keyframe and from there gets every frame, byte for byte.
    sent = [units(codec, data) for data in camera.payloads]
    got = [units(codec, data) for data in received]
    start = sent.index(got[0])
    assert is_keyframe(codec, received[0])
    assert got == sent[start : start + len(got)]
    assert consecutive(reader.numbers) and reader.numbers[0] == start
    size = vp8_size(received[0]) if codec == "vp8" else h264_size(received[0])
    assert size == (320, 240)

    (stats,) = engine.source_stats(ROOM)
    assert (stats.codec, stats.width, stats.height, stats.subscribers) == (codec, 320, 240, 1)
    assert not stats.decoding and stats.transcoding is None
    outlet = next(iter(engine.peer("agent").outlets.values()))
    # The sender may already hold the next frame (the client releases a frame one late).
    assert outlet.codec == codec and outlet.sent_bytes >= sum(len(d) for d in received)


async def test_subscriber_pli_makes_the_publisher_send_a_keyframe(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    pub = publisher(peers, NumberedVideoTrack(320, 240, fps=15))
    await pub.negotiate()
    agent = viewer(peers, "agent")
    await agent.negotiate()
    reader = await agent.video()
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 10)
    await asyncio.sleep(0.5)  # past the rate-limit window of the join's own request

    def keyframes() -> int:
        return sum(is_keyframe("vp8", data) for _, data in agent.payloads)

    before, source_before = keyframes(), engine.source_stats(ROOM)[0].keyframes
    assert agent.receiver is not None
    assert await request_keyframe(agent.receiver)  # the viewer's RTCP PLI to the server
    started = time.monotonic()
    await until(lambda: keyframes() > before, within=2.0)
    elapsed = time.monotonic() - started
    assert engine.source_stats(ROOM)[0].keyframes > source_before
    outlet = next(iter(engine.peer("agent").outlets.values()))
    assert outlet.keyframe_requests == 1
    assert elapsed < 1.0, elapsed


async def test_new_subscriber_gets_a_keyframe_at_once(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    pub = publisher(peers, NumberedVideoTrack(320, 240, fps=15))
    await pub.negotiate()
    await until(
        lambda: bool(engine.source_stats(ROOM)) and engine.source_stats(ROOM)[0].frames > 30
    )
    # aiortc's encoder makes a keyframe only when asked: the new viewer must ask for one.
    agent = viewer(peers, "agent")
    started = time.monotonic()
    await agent.negotiate()
    reader = await agent.video()
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 1)
    elapsed = time.monotonic() - started
    assert is_keyframe("vp8", agent.payloads[0][1])
    assert elapsed < 1.5, elapsed  # connect + DTLS + PLI round trip; ~0.3 s here


async def test_h264_only_viewers_share_one_transcode_of_a_vp8_publisher(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    pub = publisher(peers, NumberedVideoTrack(320, 240, fps=15))
    await pub.negotiate()
    await until(lambda: any(s.codec == "vp8" for s in engine.source_stats(ROOM)))
    direct = viewer(peers, "agent")
    first = viewer(peers, "viewer-1", "h264")
    second = viewer(peers, "viewer-2", "h264")
    for peer in (direct, first, second):
        await peer.negotiate()
    readers = [await peer.video() for peer in (direct, first, second)]
    async with asyncio.timeout(WAIT):
        for reader in readers:
            await reader.wait_until(lambda r: len(r.numbers) >= 10)

    assert {name for name, _ in direct.payloads} == {"vp8"}
    assert {name for name, _ in first.payloads} == {"h264"}
    assert {name for name, _ in second.payloads} == {"h264"}
    (stats,) = engine.source_stats(ROOM)
    assert stats.decoding and stats.subscribers == 3
    assert stats.transcoding == "vp8 -> h264 for 2 subscriber(s)"
    outlets = {
        pid: next(iter(engine.peer(pid).outlets.values())) for pid in ("viewer-1", "viewer-2")
    }
    assert outlets["viewer-1"].source is outlets["viewer-2"].source  # one encoder for both
    for reader in readers:
        assert reader.numbers == sorted(reader.numbers)


async def test_resolution_change_midcall_shows_the_new_size_within_a_second(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    class Switching(NumberedVideoTrack):
        def switch(self) -> None:
            self.width, self.height = 640, 480
            self._base = self._draw_base()

    camera = Switching(320, 240, fps=15)
    pub = publisher(peers, camera)
    await pub.negotiate()
    agent = viewer(peers, "agent")
    await agent.negotiate()
    reader = await agent.video()
    sizes: list[tuple[int, int]] = []
    original = reader.track.recv

    async def recv() -> Any:
        frame = await original()
        sizes.append((frame.width, frame.height))
        return frame

    reader.track.recv = recv  # type: ignore[method-assign]
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 10)
    camera.switch()
    switched = time.monotonic()
    await until(lambda: bool(sizes) and sizes[-1] == (640, 480), within=3.0)
    assert time.monotonic() - switched < 1.0
    count = len(reader.numbers)
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= count + 5)
    assert engine.source_stats(ROOM)[0].width == 640


async def test_publisher_rejoining_is_seen_again_within_a_second(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    agent = viewer(peers, "agent")
    pub = publisher(peers, NumberedVideoTrack(320, 240, fps=15))
    await pub.negotiate()
    await agent.negotiate()
    reader = await agent.video()
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 5)
    await engine.close_peer("customer")
    await pub.aclose()

    again = Peer(engine, "customer")
    again.pc.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
    try:
        seen = len(reader.numbers)
        started = time.monotonic()
        await again.negotiate()
        async with asyncio.timeout(WAIT):
            await reader.wait_until(lambda r: len(r.numbers) >= seen + 3)
        assert time.monotonic() - started < 1.5
        # The sender's clock ran on across the change: the viewer decodes the new stream.
        assert min(reader.numbers[seen + 1 :]) < 30
    finally:
        await again.aclose()


class CountingSink:
    def __init__(self) -> None:
        self.sampled = 0

    def wants(self, stream: StreamKey) -> bool:
        return True

    def stream_started(self, stream: StreamKey) -> None:
        pass

    def frame_sampled(self, stream: StreamKey, image: np.ndarray[Any, Any], ts: float) -> None:
        self.sampled += 1

    def stream_ended(self, stream: StreamKey) -> None:
        pass


async def test_a_track_is_decoded_once_and_only_while_sampled(
    peers: Callable[[str], Peer],
) -> None:
    sink = CountingSink()
    sampled = MediaEngine(MediaConfig(recording=False, sample_fps=5), frame_sink=sink)
    plain = MediaEngine(MediaConfig(recording=False))
    made: list[Peer] = []
    try:
        for engine in (sampled, plain):
            pub = Peer(engine, "customer")
            pub.pc.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
            made.append(pub)
            await pub.negotiate()
            for pid in ("agent", "viewer"):
                peer = Peer(engine, pid)
                peer.pc.addTransceiver("video", direction="recvonly")
                made.append(peer)
                await peer.negotiate()
        await until(lambda: sink.sampled >= 5)
        await until(lambda: plain.source_stats(ROOM)[0].frames >= 40)

        (source,) = sampled.sources(ROOM)
        assert source.decoding
        # Once per track however many watch it: decoded frames track received frames.
        assert 0 < source.decoded_frames <= source.frames
        (idle,) = plain.sources(ROOM)
        assert not idle.decoding and idle.decoded_frames == 0 and idle.frames >= 40
        assert idle.stats().subscribers == 2
    finally:
        for peer in made:
            await peer.aclose()
        await sampled.aclose()
        await plain.aclose()


async def test_h264_profile_the_server_cannot_answer_is_refused_clearly(
    engine: MediaEngine,
) -> None:
    pc = client_pc()
    pc.addTransceiver(NumberedVideoTrack(320, 240), direction="sendonly")
    prefer(pc, "video", "h264", only=True)
    try:
        offer = await client_offer(pc)
        high = re.sub(r"profile-level-id=[0-9a-fA-F]{6}", "profile-level-id=640c1f", offer)
        with pytest.raises(BadSdp) as info:
            await engine.answer(ROOM, "customer", high)
        message = str(info.value)
        assert "H264 640c1f" in message and "constrained baseline" in message
        assert engine.peer_count == 0
    finally:
        await pc.close()


async def test_media_metrics_count_forwarded_frames_and_transcodes(
    engine: MediaEngine, peers: Callable[[str], Peer]
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from media import MediaCollector

    registry = CollectorRegistry()
    registry.register(MediaCollector(engine))
    pub = publisher(peers, NumberedVideoTrack(320, 240, fps=15))
    await pub.negotiate()
    await until(lambda: any(s.codec == "vp8" for s in engine.source_stats(ROOM)))
    h264 = viewer(peers, "viewer", "h264")
    await h264.negotiate()
    reader = await h264.video()
    async with asyncio.timeout(WAIT):
        await reader.wait_until(lambda r: len(r.numbers) >= 5)
    text = generate_latest(registry).decode()
    assert 'inspect_media_published_tracks{kind="video"} 1.0' in text
    assert "inspect_media_decoding_tracks 1.0" in text
    assert "inspect_media_transcodes 1.0" in text
    forwarded = re.search(r"^inspect_media_forwarded_frames_total (\S+)$", text, re.M)
    assert forwarded is not None and float(forwarded.group(1)) >= 5


async def test_a_sink_that_does_not_want_a_track_costs_no_decoder(
    peers: Callable[[str], Peer],
) -> None:
    class Choosy(CountingSink):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[StreamKey] = []

        def wants(self, stream: StreamKey) -> bool:
            self.asked.append(stream)
            return False

    sink = Choosy()
    engine = MediaEngine(MediaConfig(recording=False), frame_sink=sink)
    pub = Peer(engine, "camera-1")
    pub.pc.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
    try:
        await pub.negotiate()
        await until(
            lambda: bool(engine.source_stats(ROOM)) and engine.source_stats(ROOM)[0].frames > 10
        )
        (source,) = engine.sources(ROOM)
        assert [s.publisher_id for s in sink.asked] == ["camera-1"]
        assert not source.decoding and source.decoded_frames == 0 and sink.sampled == 0
    finally:
        await pub.aclose()
        await engine.aclose()


async def test_media_binds_only_to_its_udp_port_range(peers: Callable[[str], Peer]) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    ports = range(base, base + 20)
    engine = MediaEngine(MediaConfig(recording=False, udp_ports=ports))
    pub = Peer(engine, "customer")
    pub.pc.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
    try:
        offer = await client_offer(pub.pc)
        answer = await engine.answer(ROOM, "customer", offer)
        await client_accept(pub.pc, answer)
        found = [
            int(line.split()[5]) for line in answer.splitlines() if line.startswith("a=candidate:")
        ]
        assert found and all(port in ports for port in found), (found, ports)
        await until(
            lambda: bool(engine.source_stats(ROOM)) and engine.source_stats(ROOM)[0].frames > 5
        )
    finally:
        await pub.aclose()
        await engine.aclose()
    with pytest.raises(ValueError, match="udp_ports"):
        MediaConfig(udp_ports=range(80, 90))


async def test_resample_follows_what_the_sink_wants_now(peers: Callable[[str], Peer]) -> None:
    class Switchable(CountingSink):
        def __init__(self) -> None:
            super().__init__()
            self.wanted = False
            self.ended = 0

        def wants(self, stream: StreamKey) -> bool:
            return self.wanted

        def stream_ended(self, stream: StreamKey) -> None:
            self.ended += 1

    sink = Switchable()
    engine = MediaEngine(MediaConfig(recording=False, sample_fps=5), frame_sink=sink)
    pub = Peer(engine, "camera-1")
    pub.pc.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
    try:
        await pub.negotiate()
        await until(lambda: bool(engine.source_stats(ROOM)))
        (source,) = engine.sources(ROOM)
        assert not source.decoding
        sink.wanted = True
        engine.resample(ROOM)
        await until(lambda: sink.sampled >= 3)
        assert source.decoding
        sink.wanted = False
        engine.resample(ROOM)
        assert not source.decoding and sink.ended == 1
    finally:
        await pub.aclose()
        await engine.aclose()
