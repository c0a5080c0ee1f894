"""WHIP ICE restart (RFC 9725 section 4.3.2) through the whole service: an encoder whose network
dies comes back on another (a new UDP socket) and restarts ICE with a PATCH; its camera goes on
in the same session: the viewer gets its frames again, and the server sends to the new address.

The encoder is an aiortc peer whose ICE connection is restarted with the same helper the server
uses (``media._aiortc.restart_ice``); moving it to a new socket touches aioice internals, which
only this test does."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aioice import ice as aioice_ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from media import IceCredentials, parse_sdpfrag
from media._aiortc import ice_connections, restart_ice
from server.sites import CameraKind, NewCamera
from tests.conftest import LiveService
from tests.fakes import NumberedVideoTrack, client_offer, client_pc
from tests.fakes.camera import client_accept
from tests.fakes.signal_client import Participant
from tests.fakes.site_viewer import Watch
from tests.waits import until

SDPFRAG = "application/trickle-ice-sdpfrag"


class NewNetwork:
    """The network an encoder moves to: a second UDP socket for its aioice connection, which
    counts the datagrams arriving on it. The old network dies: its sockets drop every datagram
    both ways (closing them would make aioice end the connection at once)."""

    def __init__(self, connection: aioice_ice.Connection) -> None:
        self.connection = connection
        self.received = 0
        self.protocol: Any = None
        self.old: list[Any] = []

    def lose_old(self) -> None:
        self.old = list(self.connection._protocols)
        for protocol in self.old:
            protocol.datagram_received = lambda data, addr: None
            protocol.transport.sendto = lambda data, addr=None: None

    async def open(self) -> Candidate:
        """Bind the new socket; it alone is paired and signalled from now on."""
        self.connection._protocols = []
        host = next(p.local_candidate.host for p in self.old if ":" not in p.local_candidate.host)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: aioice_ice.StunProtocol(self.connection), local_addr=(host, 0)
        )
        address, port = protocol.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", f"{address}-{port}"),
            component=1,
            transport="udp",
            priority=candidate_priority(1, "host"),
            host=address,
            port=port,
            type="host",
        )
        original = protocol.datagram_received

        def counted(data: bytes, addr: tuple[Any, ...]) -> None:
            self.received += 1
            original(data, addr)

        protocol.datagram_received = counted
        self.protocol = protocol
        self.connection._protocols.append(protocol)
        self.connection._local_candidates = [protocol.local_candidate]
        return protocol.local_candidate

    async def close_old(self) -> None:
        """aioice no longer knows the old sockets: close them here."""
        for protocol in self.old:
            await protocol.close()
        self.old = []

    def selected(self) -> bool:
        pair = self.connection._nominated.get(1)
        return pair is not None and pair.protocol is self.protocol


async def test_an_encoder_that_moves_network_restarts_ice_and_its_camera_goes_on(
    live_service: LiveService,
) -> None:
    sites = live_service.state.sites
    site = await sites.create_site("Encoder room", actor="test")
    camera = await sites.create_camera(
        site.id, NewCamera(name="Dock encoder", kind=CameraKind.WHIP), actor="test"
    )
    token = (await sites.issue_token(camera.id, actor="test")).token
    base = live_service.base_url
    viewer_http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    http = aiohttp.ClientSession()
    await live_service.login(viewer_http, "agent", live_service.agent_password)
    viewer = Participant(viewer_http, base)
    watch: Watch | None = None
    encoder: RTCPeerConnection = client_pc()
    network: NewNetwork | None = None
    try:
        await viewer.join(site_id=site.id)
        watch = Watch(viewer, camera.id)
        await watch.start()

        encoder.addTransceiver(NumberedVideoTrack(320, 240, fps=15), direction="sendonly")
        offer = await client_offer(encoder)
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(
            f"{base}/whip/{camera.id}",
            data=offer,
            headers={**auth, "Content-Type": "application/sdp"},
        ) as r:
            assert r.status == 201, await r.text()
            answer, location, etag = await r.text(), r.headers["Location"], r.headers["ETag"]
        await client_accept(encoder, answer)
        async with asyncio.timeout(15):
            before = await watch.frames(10)

        [session] = live_service.state.whip.sessions
        server_pc = live_service.state.media.peer(session.participant_id).pc
        [server_ice] = ice_connections(server_pc)
        [encoder_ice] = ice_connections(encoder)
        old_pair = server_ice._nominated[1]

        # The encoder's network dies; frames stop.
        network = NewNetwork(encoder_ice)
        network.lose_old()
        await asyncio.sleep(0.5)
        stalled = len(watch.readers["video"].numbers)
        await asyncio.sleep(0.5)
        assert len(watch.readers["video"].numbers) == stalled, "frames over a dead network?"

        # It comes back on another network: a new socket, new credentials, a PATCH with
        # If-Match: "*".
        candidate = await network.open()
        mine = IceCredentials.new()
        mid = encoder.getTransceivers()[0].mid
        fragment = (
            f"a=ice-ufrag:{mine.ufrag}\r\na=ice-pwd:{mine.pwd}\r\n"
            f"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\n"
            f"a=candidate:{candidate.to_sdp()}\r\na=end-of-candidates\r\n"
        )
        async with http.patch(
            location, data=fragment, headers={**auth, "Content-Type": SDPFRAG, "If-Match": "*"}
        ) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == SDPFRAG
            assert r.headers["ETag"] != etag
            theirs = parse_sdpfrag(await r.text())
        assert theirs.ufrag and theirs.pwd and theirs.end_of_candidates
        assert f"a=ice-ufrag:{theirs.ufrag}" not in answer, "the server's credentials are new"
        assert server_ice.local_username == theirs.ufrag
        assert server_ice.remote_username == mine.ufrag

        restart_ice(encoder, mine, IceCredentials(theirs.ufrag, theirs.pwd))
        for line, _ in theirs.candidates:
            parsed = candidate_from_sdp(line.removeprefix("candidate:"))
            parsed.sdpMid = mid
            await encoder.addIceCandidate(parsed)
        await encoder.addIceCandidate(None)

        # Both ends select the new path, then the old network goes away.
        new_address = (candidate.host, candidate.port)
        await until(network.selected, 10, "the encoder never selected its new socket")
        await until(
            lambda: server_ice._nominated[1].remote_addr == new_address,
            10,
            "the server never selected the encoder's new address",
        )
        assert server_ice._nominated[1] is not old_pair
        heard = network.received

        # The camera goes on: frames from after the move reach the viewer, and the server's
        # packets (RTCP, consent) reach the encoder on its new socket.
        async with asyncio.timeout(15):
            after = await watch.frames(20)
        assert after[0] > before[-1], (before[-3:], after[:3])
        await until(lambda: network.received > heard, 10, "nothing from the server")
        assert encoder.connectionState == "connected"
        assert [s.id for s in live_service.state.whip.sessions] == [session.id]
        assert session.ice_ufrag == mine.ufrag
    finally:
        if network is not None:
            await network.close_old()
        await encoder.close()
        if watch is not None:
            await watch.aclose()
        await viewer.aclose()
        await viewer_http.close()
        await http.close()
