"""MediaEngine over loopback with real aiortc client peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection

from media import BadCandidate, BadSdp, MediaConfig, MediaEngine, PeerNotFound
from media._aiortc import gatherer_servers
from tests.fakes.camera import (
    NumberedVideoTrack,
    ToneAudioTrack,
    TrackReader,
    client_accept,
    client_offer,
    client_pc,
    wait_connected,
)

ROOM = "case-1"
WAIT = 10.0


class RecordingListener:
    """A MediaListener that remembers who was asked to renegotiate."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._changed = asyncio.Event()

    async def renegotiation_needed(self, participant_id: str) -> None:
        self.calls.append(participant_id)
        self._changed.set()

    async def wait_for(self, participant_id: str) -> None:
        async with asyncio.timeout(WAIT):
            while participant_id not in self.calls:
                self._changed.clear()
                await self._changed.wait()


class Client:
    """One participant's browser, played by an aiortc peer."""

    def __init__(self, engine: MediaEngine, participant_id: str, room_id: str = ROOM) -> None:
        self.engine = engine
        self.participant_id = participant_id
        self.room_id = room_id
        self.pc: RTCPeerConnection = client_pc()
        self.readers: list[TrackReader] = []
        self._track_arrived = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.readers.append(TrackReader(track))
        self._track_arrived.set()

    async def negotiate(self) -> str:
        answer = await self.engine.answer(
            self.room_id, self.participant_id, await client_offer(self.pc)
        )
        await client_accept(self.pc, answer)
        return answer

    async def reader(self, kind: str) -> TrackReader:
        async with asyncio.timeout(WAIT):
            while True:
                for reader in self.readers:
                    if reader.kind == kind:
                        return reader
                self._track_arrived.clear()
                await self._track_arrived.wait()

    async def aclose(self) -> None:
        for reader in self.readers:
            await reader.aclose()
        await self.pc.close()


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(MediaConfig())
    yield engine
    await engine.aclose()


@pytest.fixture
async def clients(engine: MediaEngine) -> AsyncIterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(participant_id: str, room_id: str = ROOM) -> Client:
        client = Client(engine, participant_id, room_id)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def customer(make: Callable[..., Client], participant_id: str = "customer") -> Client:
    """Camera and microphone, both sendrecv as a browser's addTrack makes them."""
    client: Client = make(participant_id)
    client.pc.addTrack(ToneAudioTrack(440))
    client.pc.addTrack(NumberedVideoTrack(320, 240, fps=15))
    return client


def agent(make: Callable[..., Client], *, with_video: bool = True) -> Client:
    """Microphone sendrecv plus (optionally) a recvonly video transceiver, as the agent page."""
    client: Client = make("agent")
    client.pc.addTrack(ToneAudioTrack(660))
    if with_video:
        client.pc.addTransceiver("video", direction="recvonly")
    return client


def increasing(numbers: list[int]) -> bool:
    return all(b > a for a, b in zip(numbers, numbers[1:], strict=False))


async def test_agent_sees_numbered_video_and_audio_flows_both_ways(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    cust = customer(clients)
    await cust.negotiate()
    ag = agent(clients)
    await ag.negotiate()
    async with asyncio.timeout(WAIT):
        await wait_connected(ag.pc)

    video = await ag.reader("video")
    async with asyncio.timeout(WAIT):
        await video.wait_until(lambda r: len(r.numbers) >= 8)
    assert increasing(video.numbers), video.numbers

    heard_by_agent = await ag.reader("audio")
    async with asyncio.timeout(WAIT):
        await heard_by_agent.wait_until(lambda r: r.audible >= 10)
    heard_by_customer = await cust.reader("audio")
    async with asyncio.timeout(WAIT):
        await heard_by_customer.wait_until(lambda r: r.audible >= 10)

    assert engine.peer_count == 2
    assert engine.room_count == 1
    assert engine.published_tracks == 3  # customer audio + video, agent audio


async def test_subscriber_joining_before_publisher_gets_video_when_it_arrives(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    listener = RecordingListener()
    engine.set_listener(listener)
    ag = agent(clients)
    await ag.negotiate()
    async with asyncio.timeout(WAIT):
        await wait_connected(ag.pc)
    assert engine.published_tracks == 1

    cust = customer(clients)
    await cust.negotiate()
    video = await ag.reader("video")
    async with asyncio.timeout(WAIT):
        await video.wait_until(lambda r: len(r.numbers) >= 5)
    assert increasing(video.numbers), video.numbers
    # The agent had a receiving transceiver of each kind: no renegotiation was necessary.
    assert "agent" not in listener.calls


async def test_missing_transceiver_asks_for_renegotiation_and_reoffer_delivers_video(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    listener = RecordingListener()
    engine.set_listener(listener)
    ag = agent(clients, with_video=False)
    await ag.negotiate()
    cust = customer(clients)
    await cust.negotiate()

    await listener.wait_for("agent")
    assert engine.remote_tracks("agent") == {"audio": 1, "video": 1}
    assert listener.calls.count("agent") == 1
    assert "customer" not in listener.calls

    ag.pc.addTransceiver("video", direction="recvonly")
    await ag.negotiate()
    assert engine.peer_count == 2
    video = await ag.reader("video")
    async with asyncio.timeout(WAIT):
        await video.wait_until(lambda r: len(r.numbers) >= 5)
    assert increasing(video.numbers), video.numbers


async def test_answer_has_start_bitrate_and_only_host_candidates_without_ice_servers(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    cust = customer(clients)
    answer = await cust.negotiate()

    video = answer.split("m=video", 1)[1]
    assert "x-google-start-bitrate=1500" in video
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert candidates
    assert all(" typ host" in line for line in candidates), candidates
    # Not just "no srflx came back": the gatherers were never given a STUN or TURN server.
    servers = gatherer_servers(engine.peer("customer").pc)
    assert servers
    assert all(s.stun is None and s.turn is None for s in servers), servers


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("", "empty"),
        ("hello world", "v=0"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\x00", "NUL"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "ice-ufrag"),
    ],
)
async def test_garbage_offer_is_rejected_with_a_clear_message(
    engine: MediaEngine, offer: str, message: str
) -> None:
    with pytest.raises(BadSdp, match=message) as caught:
        await engine.answer(ROOM, "mallory", offer)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "bad_sdp"
    assert engine.peer_count == 0


async def test_offer_without_common_codec_is_bad_sdp_and_engine_keeps_serving(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    probe = client_pc()
    probe.addTransceiver("video", direction="sendonly")
    offer = await client_offer(probe)
    await probe.close()
    # Rename every video codec to one the server does not know.
    unknown = offer.replace("VP8/90000", "XYZ1/90000").replace("H264/90000", "XYZ2/90000")
    unknown = unknown.replace("rtx/90000", "XYZ3/90000")
    with pytest.raises(BadSdp, match="codec"):
        await engine.answer(ROOM, "mallory", unknown)
    assert engine.peer_count == 0  # the half-applied peer was discarded

    cust = customer(clients)
    await cust.negotiate()
    async with asyncio.timeout(WAIT):
        await wait_connected(cust.pc)
    assert engine.peer_count == 1


async def test_candidates(engine: MediaEngine, clients: Callable[..., Client]) -> None:
    good = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    with pytest.raises(BadCandidate) as caught:
        await engine.add_candidate("nobody", "candidate:garbage", "0", 0)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(PeerNotFound):
        await engine.add_candidate("nobody", good, "0", 0)

    cust = customer(clients)
    await cust.negotiate()
    await engine.add_candidate("customer", good, "0", 0)
    await engine.add_candidate("customer", good, None, None)
    await engine.add_candidate("customer", "", None, None)  # end of candidates
    for garbage in ("candidate:1 1 udp x 127.0.0.1 5 typ host", "candidate:1 1 udp 1 h 5 typ nope"):
        with pytest.raises(BadCandidate):
            await engine.add_candidate("customer", garbage, "0", 0)
    async with asyncio.timeout(WAIT):
        await wait_connected(cust.pc)


async def test_publisher_leaving_detaches_and_next_publisher_is_attached(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    ag = agent(clients)
    await ag.negotiate()
    first = customer(clients, "customer-1")
    await first.negotiate()
    video = await ag.reader("video")
    async with asyncio.timeout(WAIT):
        await video.wait_until(lambda r: len(r.numbers) >= 3)

    await engine.close_peer("customer-1")
    await engine.close_peer("customer-1")  # idempotent
    assert engine.peer_count == 1
    assert engine.published_tracks == 1  # the agent's microphone
    with pytest.raises(PeerNotFound):
        engine.peer("customer-1")
    outlets = engine.peer("agent").outlets.values()
    assert outlets and all(outlet.source is None for outlet in outlets)

    # The same sender is fed again by whoever publishes next: frame numbers restart low.
    seen = len(video.numbers)
    second = customer(clients, "customer-2")
    await second.negotiate()
    async with asyncio.timeout(WAIT):
        await video.wait_until(lambda r: len(r.numbers) >= seen + 5)
    fresh = video.numbers[seen:]
    # The client's jitter buffer holds the old publisher's last frame until the next packet
    # arrives, so at most one stale number precedes the new stream.
    if fresh[0] > fresh[1]:
        fresh = fresh[1:]
    assert increasing(fresh) and fresh[0] < 40, video.numbers


async def test_peer_closed_by_client_is_freed(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    cust = customer(clients)
    await cust.negotiate()
    async with asyncio.timeout(WAIT):
        await wait_connected(cust.pc)
    server_side = engine.peer("customer")
    await cust.pc.close()  # DTLS close_notify: the server's peer goes "closed"
    async with asyncio.timeout(WAIT):
        await server_side.done.wait()
    assert engine.peer_count == 0
    assert engine.published_tracks == 0


async def test_aclose_closes_every_peer_and_is_idempotent(
    engine: MediaEngine, clients: Callable[..., Client]
) -> None:
    cust = customer(clients)
    await cust.negotiate()
    ag = agent(clients)
    await ag.negotiate()
    await engine.aclose()
    await engine.aclose()
    assert engine.peer_count == 0
    assert engine.published_tracks == 0
    with pytest.raises(Exception, match="shutting down"):
        await engine.answer(ROOM, "late", await client_offer(client_pc()))
