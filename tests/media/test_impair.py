"""The test network of ``tests/fakes/impair.py``: loss, delay, a rate cap and blackouts do what
they say, over real sockets on loopback and between real aiortc peers. Bounds are generous:
these check behaviour, not timings."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import cast

from aiortc import RTCPeerConnection

from tests.fakes import NumberedVideoTrack, TrackReader, client_pc, wait_connected
from tests.fakes.impair import (
    Conditions,
    Direction,
    Leg,
    UdpRelay,
    check_internals,
    relay_candidates,
)

_HEADER = struct.Struct("!Id")


class _Collector(asyncio.DatagramProtocol):
    """Keeps (arrival time, index, send time) of each numbered datagram."""

    def __init__(self) -> None:
        self.got: list[tuple[float, int, float]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        index, sent = _HEADER.unpack_from(data)
        self.got.append((asyncio.get_running_loop().time(), index, sent))

    def indices(self) -> list[int]:
        return [index for _, index, _ in self.got]


class _Quiet(asyncio.DatagramProtocol):
    """A sending socket's protocol (``asyncio.DatagramProtocol`` itself has slots)."""


class _Link:
    """A sender whose socket is impaired by ``leg`` and a plain receiver, on 127.0.0.1."""

    def __init__(
        self,
        leg: Leg,
        send: asyncio.DatagramTransport,
        receiver: _Collector,
        address: tuple[str, int],
    ):
        self.leg, self.send_transport, self.receiver, self.address = leg, send, receiver, address
        self.sent = 0

    def send(self, size: int = 200) -> None:
        now = asyncio.get_running_loop().time()
        payload = _HEADER.pack(self.sent, now).ljust(size, b"\0")
        self.send_transport.sendto(payload, self.address)
        self.sent += 1

    async def stream(self, seconds: float, rate_pps: float, size: int = 200) -> None:
        """Packets at a steady rate for ``seconds``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < seconds:
            self.send(size)
            await asyncio.sleep(1 / rate_pps)

    async def settle(self, seconds: float = 0.3) -> None:
        """Wait until nothing is in flight, then a little more for the socket."""
        async with asyncio.timeout(10):
            while self.leg.up.in_flight:  # noqa: ASYNC110 - packets leave on their own timers
                await asyncio.sleep(0.02)
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def _link(leg: Leg) -> AsyncIterator[_Link]:
    loop = asyncio.get_running_loop()
    receiver = _Collector()
    receive_transport, _ = await loop.create_datagram_endpoint(
        lambda: receiver, local_addr=("127.0.0.1", 0)
    )
    send_transport, send_protocol = await loop.create_datagram_endpoint(
        _Quiet, local_addr=("127.0.0.1", 0)
    )
    address = receive_transport.get_extra_info("sockname")[:2]
    try:
        yield _Link(leg, leg.wrap(send_transport, send_protocol), receiver, address)
    finally:
        leg.close()
        send_transport.close()
        receive_transport.close()


def test_the_aiortc_and_aioice_internals_the_hooks_use_are_there() -> None:
    check_internals()


async def test_loss_drops_about_its_share_and_the_same_seed_drops_the_same_packets() -> None:
    patterns: list[list[int]] = []
    for _ in range(2):
        async with _link(Leg(Conditions(loss=0.1), seed=7)) as link:
            for batch in range(20):
                for _ in range(100):
                    link.send()
                await asyncio.sleep(0.005 if batch < 19 else 0.3)
            stats = link.leg.up.stats
            assert stats.offered == 2000
            assert 140 <= stats.lost <= 260, stats
            # What the direction let through is what reached the other socket.
            assert len(link.receiver.got) == stats.delivered == 2000 - stats.lost
            patterns.append(link.receiver.indices())
    assert patterns[0] == patterns[1]
    other = Direction("other", Conditions(loss=0.1), seed=8)
    kept: list[int] = []
    for index in range(2000):
        other.send(b"x", None, lambda data, addr, index=index: kept.append(index))
    assert kept != patterns[0]


async def test_delay_delays_every_packet_and_jitter_keeps_order_unless_told() -> None:
    async with _link(Leg(Conditions(delay_s=0.1, jitter_s=0.03))) as link:
        await link.stream(0.6, rate_pps=200)
        await link.settle()
        got = link.receiver.got
        assert len(got) == link.sent
        latencies = sorted(arrived - sent for arrived, _, sent in got)
        assert latencies[0] >= 0.065, latencies[:3]
        assert 0.08 <= latencies[len(latencies) // 2] <= 0.3
        assert link.receiver.indices() == sorted(link.receiver.indices())
    async with _link(Leg(Conditions(delay_s=0.1, jitter_s=0.03, reorder=True))) as link:
        await link.stream(0.6, rate_pps=200)
        await link.settle()
        indices = link.receiver.indices()
        assert sorted(indices) == list(range(link.sent))
        assert indices != sorted(indices), "a 30 ms jitter over 5 ms gaps reorders"


async def test_the_down_direction_impairs_what_a_socket_receives() -> None:
    loop = asyncio.get_running_loop()
    receiver = _Collector()
    leg = Leg(down=Conditions(delay_s=0.15))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: receiver, local_addr=("127.0.0.1", 0)
    )
    leg.wrap(transport, receiver)
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=transport.get_extra_info("sockname")[:2]
    )
    try:
        for index in range(20):
            sender.sendto(_HEADER.pack(index, loop.time()))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.4)
        assert len(receiver.got) == 20
        assert min(arrived - sent for arrived, _, sent in receiver.got) >= 0.12
        assert leg.down.stats.delivered == 20 and leg.up.stats.offered == 0
    finally:
        leg.close()
        sender.close()
        transport.close()


async def test_a_rate_cap_limits_throughput_and_drops_the_tail_of_a_full_queue() -> None:
    rate = 400_000
    async with _link(Leg(Conditions(rate_bps=rate, queue_bytes=20_000))) as link:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # 2 Mbit/s offered for 1.5 s: five times the cap.
        await link.stream(1.5, rate_pps=200, size=1250)
        await link.settle(0.2)
        got = link.receiver.got
        stats = link.leg.up.stats
        assert stats.overflowed > 0.5 * stats.offered, stats
        assert len(got) == stats.delivered
        span = got[-1][0] - start
        throughput = len(got) * 1250 * 8 / span
        assert 0.6 * rate <= throughput <= 1.25 * rate, (throughput, span)
        # Whatever got through waited in a queue of at most 20 kB at the rate (0.4 s).
        assert max(arrived - sent for arrived, _, sent in got) <= 0.4 + 0.2


async def test_a_blackout_drops_everything_for_its_window_then_traffic_flows_again() -> None:
    async with _link(Leg(Conditions(delay_s=0.02))) as link:
        start, end = link.leg.black_out(0.5, start_in_s=0.3)
        await link.stream(1.3, rate_pps=100)
        await link.settle()
        sent_in_window = [sent for _, _, sent in link.receiver.got if start <= sent < end]
        assert sent_in_window == []
        arrived_in_window = [t for t, _, _ in link.receiver.got if start + 0.01 < t < end]
        assert arrived_in_window == []
        assert any(sent < start for _, _, sent in link.receiver.got)
        assert sum(1 for _, _, sent in link.receiver.got if sent >= end) >= 20
        assert link.leg.up.stats.blacked_out >= 40
        assert link.leg.blackouts == [(start, end)]


async def test_conditions_change_while_packets_flow() -> None:
    async with _link(Leg()) as link:
        await link.stream(0.2, rate_pps=100)
        link.leg.up.update(loss=1.0)
        before = link.sent
        await link.stream(0.2, rate_pps=100)
        link.leg.set(Conditions())
        after = link.sent
        await link.stream(0.2, rate_pps=100)
        await link.settle()
        indices = set(link.receiver.indices())
        assert not indices & set(range(before, after))
        assert set(range(after, link.sent)) <= indices


async def _offer_answer(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def _frames_between(reader: TrackReader, seconds: float) -> int:
    before = reader.frames
    await asyncio.sleep(seconds)
    return reader.frames - before


async def test_aiortc_peers_are_impaired_both_ways_and_come_back_after_a_blackout() -> None:
    sender, receiver = client_pc(), client_pc()
    camera = NumberedVideoTrack(320, 240, 15)
    sender.addTrack(camera)
    customer, agent = Leg(name="customer"), Leg(Conditions(delay_s=0.05), name="agent")
    customer.attach(sender)
    agent.attach(receiver)
    readers: list[TrackReader] = []
    receiver.on("track", lambda track: readers.append(TrackReader(track)))
    try:
        async with asyncio.timeout(20):
            await _offer_answer(sender, receiver)
            await wait_connected(receiver)
            while not readers or len(readers[0].numbers) < 10:  # noqa: ASYNC110 - frames pace themselves
                await asyncio.sleep(0.05)
        reader = readers[0]
        assert customer.sockets >= 1 and agent.sockets >= 1
        # Media one way, RTCP and ICE consent the other: every direction carried packets.
        for leg in (customer, agent):
            for direction in leg.directions:
                assert direction.stats.delivered > 0, direction.name
        start, end = agent.black_out(2.0)
        await asyncio.sleep(0.4)  # frames already decoded or in the decoder come out
        assert await _frames_between(reader, 1.4) == 0
        await asyncio.sleep(end - asyncio.get_running_loop().time())
        resumed = len(reader.numbers)
        async with asyncio.timeout(15):
            while len(reader.numbers) < resumed + 10:  # noqa: ASYNC110 - frames pace themselves
                await asyncio.sleep(0.05)
        assert agent.down.stats.blacked_out > 10
        assert max(reader.numbers) > camera.frames_sent - 60
    finally:
        for r in readers:
            await r.aclose()
        camera.stop()
        await sender.close()
        await receiver.close()
        customer.close()
        agent.close()


async def test_a_relay_with_rewritten_candidates_carries_a_call_and_impairs_it() -> None:
    # How bench/network.py puts a browser behind an impaired link: each side is given the
    # relay's address as the other's only candidate.
    sender, receiver = client_pc(), client_pc()
    camera = NumberedVideoTrack(320, 240, 15)
    sender.addTrack(camera)
    # Seed 3 drops the 4th packet up: a loss is seen however few packets the call takes.
    relay = await UdpRelay.start(Leg(Conditions(loss=0.1), seed=3))
    readers: list[TrackReader] = []
    receiver.on("track", lambda track: readers.append(TrackReader(track)))
    try:
        async with asyncio.timeout(20):
            await sender.setLocalDescription(await sender.createOffer())
            offer = sender.localDescription
            offer.sdp, relay.a_addr = relay_candidates(offer.sdp, relay.b_facing)
            assert relay.a_addr is not None and f" {relay.b_facing[1]} typ host" in offer.sdp
            await receiver.setRemoteDescription(offer)
            await receiver.setLocalDescription(await receiver.createAnswer())
            answer = receiver.localDescription
            answer.sdp, relay.b_addr = relay_candidates(answer.sdp, relay.a_facing)
            await sender.setRemoteDescription(answer)
            await wait_connected(receiver)
            while not readers or len(readers[0].numbers) < 15:  # noqa: ASYNC110 - frames pace themselves
                await asyncio.sleep(0.05)
        up, down = relay.leg.up.stats, relay.leg.down.stats
        assert up.delivered >= 15 and down.delivered > 0
        assert up.lost > 0 and up.offered == up.delivered + up.lost
        relay.leg.set(Conditions(loss=1.0))
        await asyncio.sleep(0.4)
        assert await _frames_between(readers[0], 1.0) == 0
    finally:
        for r in readers:
            await r.aclose()
        camera.stop()
        await sender.close()
        await receiver.close()
        relay.close()


def test_relay_candidates_keeps_one_ipv4_host_candidate_per_section() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host generation 0",
            "a=candidate:2 1 udp 2122262783 fd00::2 50001 typ host generation 0",
            "a=candidate:3 1 tcp 1518280447 192.0.2.2 9 typ host tcptype active",
            "a=candidate:4 1 udp 2122260223 abcd.local 50002 typ host",
            "a=end-of-candidates",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host generation 0",
        ]
    )
    rewritten, original = relay_candidates(sdp, ("127.0.0.1", 4000))
    assert original == ("192.0.2.2", 50000)
    candidates = [line for line in rewritten.splitlines() if line.startswith("a=candidate")]
    assert candidates == ["a=candidate:1 1 udp 2122260223 127.0.0.1 4000 typ host"] * 2
    assert "a=end-of-candidates" in rewritten
