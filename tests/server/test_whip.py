"""WHIP ingest (RFC 9725): FFmpeg's own WHIP muxer publishes a camera for longer than ICE
consent would last and a viewer in the site's room receives its frames; the protocol's answers
(auth, content types, limits, trickle, ICE restart, DELETE, CORS, ICE server links) are checked
against the real endpoint with a stand-in media engine."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import server.http.whip as whip_module
from media import (
    IceCredentials,
    IceNotRestartable,
    PeerNotFound,
    parse_candidate,
    parse_sdpfrag,
    validate_offer,
)
from server.http.errors import error_middleware
from server.http.whip import MAX_OFFER_BYTES, WhipEndpoint, ice_links
from server.ice import IceServers
from server.settings import Settings
from server.sites import CameraKind, CameraPresence, NewCamera, SiteService
from server.storage.sqlite import SqliteSiteStore
from server.wiring.services import Services, open_services
from tests.conftest import TEST_SECRET_KEY, LiveService
from tests.fakes import client_offer, client_pc
from tests.fakes.signal_client import Participant
from tests.fakes.site_viewer import Watch
from tests.fakes.whip_publisher import make_p256_certificate

ROOT = Path(__file__).resolve().parents[2]
SDPFRAG = "application/trickle-ice-sdpfrag"


# -- FFmpeg through the whole service -----------------------------------------------------------


async def _publisher(url: str, token: str, seconds: float, tmp: Path) -> asyncio.subprocess.Process:
    cert, key = make_p256_certificate(tmp)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.whip_publisher", url, "--token", token,
        "--seconds", str(seconds), "--cert", str(cert), "--key", str(key),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def _line(process: asyncio.subprocess.Process, prefix: str) -> str:
    assert process.stdout is not None
    seen = []
    while True:
        raw = await process.stdout.readline()
        if not raw:
            raise AssertionError(f"publisher ended before {prefix!r}: {seen[-20:]}")
        line = raw.decode(errors="replace").strip()
        seen.append(line)
        if line.startswith(prefix):
            return line


async def test_ffmpeg_publishes_over_whip_past_the_ice_consent_timeout(
    live_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.http.whip")
    sites = live_service.state.sites
    site = await sites.create_site("Encoder room", actor="test")
    camera = await sites.create_camera(
        site.id, NewCamera(name="Line 2 encoder", kind=CameraKind.WHIP), actor="test"
    )
    token = (await sites.issue_token(camera.id, actor="test")).token
    base = live_service.base_url
    viewer_http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live_service.login(viewer_http, "agent", live_service.agent_password)
    viewer = Participant(viewer_http, base)
    watch: Watch | None = None
    publisher = None
    try:
        await viewer.join(site_id=site.id)
        watch = Watch(viewer, camera.id)
        await watch.start()  # watching before the encoder starts: frames arrive when it does

        seconds = 42.0
        publisher = await _publisher(f"{base}/whip/{camera.id}", token, seconds, tmp_path)
        async with asyncio.timeout(20):
            await _line(publisher, "started")
            started = time.monotonic()
            event = await viewer.expect(
                "camera", where=lambda m: m["camera_id"] == camera.id and m["status"]["online"]
            )
        assert event["status"]["source"] == "whip"
        async with asyncio.timeout(15):
            numbers = await watch.frames(15)
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers

        [session] = live_service.state.whip.sessions
        headers = live_service.headers()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/cameras/{camera.id}", headers=headers) as r:
                status = (await r.json())["camera"]["status"]
            assert status["online"] and status["source"] == "whip"
            assert status["codec"] == "h264" and (status["width"], status["height"]) == (640, 360)
            # A trickled candidate reaches the live session (FFmpeg itself sends none).
            fragment = (
                f"a=ice-ufrag:{session.ice_ufrag}\r\na=ice-pwd:{session.ice_pwd}\r\n"
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
                "a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host\r\n"
            )
            async with http.patch(
                f"{base}{session.path}",
                data=fragment,
                headers={"Authorization": f"Bearer {token}", "Content-Type": SDPFRAG},
            ) as r:
                assert r.status == 204, await r.text()

        # Past ~34 s an aiortc peer without ingest mode drops FFmpeg (no consent answers).
        await asyncio.sleep(max(0.0, 37.0 - (time.monotonic() - started)))
        async with asyncio.timeout(10):
            late = await watch.frames(15)
        assert late[0] > numbers[-1] + 300, f"frames from after 35 s: {late[:3]}"

        # The encoder closes: FFmpeg sends DELETE, the session ends, the camera goes offline.
        async with asyncio.timeout(20):
            assert (await _line(publisher, "done")).startswith("done")
            await viewer.expect(
                "camera",
                where=lambda m: m["camera_id"] == camera.id and not m["status"]["online"],
            )
        assert live_service.state.whip.sessions == []
        assert "ended by the encoder (DELETE)" in caplog.text
        assert await publisher.wait() == 0
    finally:
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        if watch is not None:
            await watch.aclose()
        await viewer.aclose()
        await viewer_http.close()


# -- the protocol, with a stand-in media engine ---------------------------------------------------

ANSWER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


@dataclass
class FakeMedia:
    """Validates offers and candidates as the engine does; remembers what it was asked."""

    answered: list[tuple[str, str, bool]] = field(default_factory=list)
    candidates: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    restarts: list[tuple[str, IceCredentials]] = field(default_factory=list)
    #: Participants whose ICE has not completed yet.
    unconnected: set[str] = field(default_factory=set)

    async def answer(
        self, room_id: str, participant_id: str, offer_sdp: str, *, ingest: bool = False
    ) -> str:
        validate_offer(offer_sdp)
        self.answered.append((room_id, participant_id, ingest))
        return ANSWER

    async def add_candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        parse_candidate(candidate, sdp_mid, sdp_mline_index)
        self.candidates.append((participant_id, candidate, sdp_mid, sdp_mline_index))

    async def restart_ice(
        self, participant_id: str, remote: IceCredentials
    ) -> tuple[IceCredentials, list[str]]:
        if participant_id in self.gone:
            raise PeerNotFound(participant_id)
        if participant_id in self.unconnected:
            raise IceNotRestartable("ICE cannot be restarted: ICE is checking")
        self.restarts.append((participant_id, remote))
        return IceCredentials("srv1", "s" * 22), [
            "candidate:9 1 udp 2130706431 127.0.0.1 40000 typ host"
        ]

    async def close_peer(self, participant_id: str) -> None:
        self.closed.append(participant_id)
        self.gone.add(participant_id)

    def remote_tracks(self, participant_id: str) -> dict[str, int]:
        if participant_id in self.gone:
            raise PeerNotFound(participant_id)
        return {"audio": 0, "video": 0}


@dataclass
class Whip:
    client: TestClient[Any, Any]
    media: FakeMedia
    sites: SiteService
    endpoint: WhipEndpoint
    presence: CameraPresence
    camera_id: str
    token: str
    phone_id: str
    phone_token: str
    other_id: str
    other_token: str
    now: list[float]

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=tmp_path / "var", secret_key=TEST_SECRET_KEY)
    opened = await open_services(settings, start_webhooks=False)
    yield opened
    await opened.aclose()


@pytest.fixture
async def whip(services: Services, aiohttp_client: Any) -> AsyncIterator[Whip]:
    now = [time.time()]
    settings = Settings(
        data_dir=services.db.path.parent,
        public_url="https://inspect.example",
        ice_servers=("stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"),
        turn_secret="turn-secret",
    )
    sites = SiteService(SqliteSiteStore(services.db), b"w" * 32, clock=lambda: now[0])
    media = FakeMedia()
    presence = CameraPresence(seen=sites.seen)
    endpoint = WhipEndpoint(
        settings=settings, sites=sites, media=media, presence=presence, ice=IceServers(settings)
    )
    # The edge's one error middleware writes every error answer, WHIP's included.
    app = web.Application(middlewares=[error_middleware])
    endpoint.setup(app)
    site = await sites.create_site("Lab", actor="t")
    camera = await sites.create_camera(site.id, NewCamera("Enc", CameraKind.WHIP), actor="t")
    other = await sites.create_camera(site.id, NewCamera("Enc 2", CameraKind.WHIP), actor="t")
    phone = await sites.create_camera(site.id, NewCamera("Phone", CameraKind.PHONE), actor="t")
    client = await aiohttp_client(app)
    yield Whip(
        client=client, media=media, sites=sites, endpoint=endpoint, presence=presence,
        camera_id=camera.id, token=(await sites.issue_token(camera.id, actor="t")).token,
        phone_id=phone.id, phone_token=(await sites.issue_token(phone.id, actor="t")).token,
        other_id=other.id, other_token=(await sites.issue_token(other.id, actor="t")).token,
        now=now,
    )  # fmt: skip
    await endpoint.aclose()


async def _offer() -> str:
    pc = client_pc()
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    try:
        return await client_offer(pc)
    finally:
        await pc.close()


async def _post(w: Whip, offer: str, **headers: str) -> aiohttp.ClientResponse:
    return await w.client.post(
        f"/whip/{w.camera_id}",
        data=offer,
        headers={"Content-Type": "application/sdp", **w.auth(), **headers},
    )


async def test_a_session_is_created_patched_and_deleted(whip: Whip) -> None:
    offer = await _offer()
    response = await _post(whip, offer)
    assert response.status == 201, await response.text()
    assert response.headers["Content-Type"] == "application/sdp"
    assert await response.text() == ANSWER
    location = response.headers["Location"]
    assert location.startswith(f"https://inspect.example/whip/{whip.camera_id}/sessions/")
    etag = response.headers["ETag"]
    assert response.headers["Accept-Patch"] == SDPFRAG
    links = response.headers.getall("Link")
    assert links[0] == '<stun:stun.example.net:3478>; rel="ice-server"'
    assert links[1].startswith('<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; ')
    assert 'username="' in links[1] and 'credential-type="password"' in links[1]
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in response.headers["Access-Control-Expose-Headers"]
    [(room, participant, ingest)] = whip.media.answered
    assert room == f"camera:{whip.camera_id}" and ingest is True, "encoders get ingest mode"
    link = whip.presence.link(whip.camera_id)
    assert link is not None and link.source == "whip" and link.participant_id == participant

    path = location.removeprefix("https://inspect.example")
    ufrag = next(line[12:] for line in offer.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line[10:] for line in offer.splitlines() if line.startswith("a=ice-pwd:"))
    mid = next(line[6:] for line in offer.splitlines() if line.startswith("a=mid:"))
    trickle = (
        f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        f"a=mid:{mid}\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    patched = await whip.client.patch(
        path, data=trickle, headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": etag}
    )
    assert patched.status == 204, await patched.text()
    assert whip.media.candidates[0] == (
        participant, "candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host", mid, 0,
    )  # fmt: skip

    # An ICE restart: new credentials in, the server's new ones and candidates out, a new ETag.
    restart = trickle.replace(ufrag, "newUfrag").replace(pwd, "n" * 24)
    answer = await whip.client.patch(
        path, data=restart, headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": "*"}
    )
    assert answer.status == 200, await answer.text()
    assert answer.headers["Content-Type"] == SDPFRAG
    assert answer.headers["ETag"] != etag
    body = await answer.text()
    assert body.startswith("a=ice-ufrag:srv1\r\na=ice-pwd:" + "s" * 22 + "\r\n")
    assert f"a=mid:{mid}\r\na=candidate:9 1 udp 2130706431 127.0.0.1 40000 typ host\r\n" in body
    assert body.endswith("a=end-of-candidates\r\n")
    assert parse_sdpfrag(body).ufrag == "srv1"
    assert whip.media.restarts == [(participant, IceCredentials("newUfrag", "n" * 24))]
    # The fragment's candidates, then its end-of-candidates, are added after the restart.
    assert [c[1] for c in whip.media.candidates[-2:]] == [
        "candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host",
        "",
    ]
    old_etag, etag = etag, answer.headers["ETag"]
    stale = await whip.client.patch(
        path, data=restart, headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": old_etag}
    )
    assert stale.status == 412
    trickle = restart
    same = await whip.client.patch(
        path, data=trickle, headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": "*"}
    )
    assert same.status == 400 and "not the session's own" in await same.text()
    for broken in (
        "a=ice-ufrag:ab\r\na=ice-pwd:" + "p" * 24 + "\r\n",  # ufrag too short
        "a=ice-ufrag:abcd\r\na=ice-pwd:p p\r\n",  # pwd too short, a space
        "a=ice-ufrag:abcd\r\n",  # no password
    ):
        refused = await whip.client.patch(
            path, data=broken, headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": "*"}
        )
        assert refused.status == 400, broken
    whip.media.unconnected.add(participant)
    early = await whip.client.patch(
        path,
        data=restart.replace("newUfrag", "thirdUfrag"),
        headers={**whip.auth(), "Content-Type": SDPFRAG, "If-Match": "*"},
    )
    assert early.status == 409 and (await early.json())["error"]["code"] == "ice_not_restartable"
    whip.media.unconnected.clear()
    wrong_type = await whip.client.patch(
        path, data=trickle, headers={**whip.auth(), "Content-Type": "application/sdp"}
    )
    assert wrong_type.status == 415 and wrong_type.headers["Accept-Patch"] == SDPFRAG
    garbage = await whip.client.patch(
        path, data="hello\r\n", headers={**whip.auth(), "Content-Type": SDPFRAG}
    )
    assert garbage.status == 400
    bad = await whip.client.patch(
        path,
        data=f"a=mid:{mid}\r\na=candidate:nonsense\r\n",
        headers={**whip.auth(), "Content-Type": SDPFRAG},
    )
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_candidate"
    foreign = await whip.client.patch(
        path, data=trickle, headers={**whip.auth(whip.other_token), "Content-Type": SDPFRAG}
    )
    assert foreign.status == 403

    deleted = await whip.client.delete(path, headers=whip.auth())
    assert deleted.status == 200
    assert participant in whip.media.closed
    assert whip.presence.link(whip.camera_id) is None
    again = await whip.client.delete(path, headers=whip.auth())
    assert again.status == 404
    gone = await whip.client.patch(
        path, data=trickle, headers={**whip.auth(), "Content-Type": SDPFRAG}
    )
    assert gone.status == 404


async def test_bad_requests_get_clear_answers(whip: Whip) -> None:
    offer = await _offer()
    url = f"/whip/{whip.camera_id}"
    missing = await whip.client.post(url, data=offer, headers={"Content-Type": "application/sdp"})
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="inspectd whip"'
    wrong = await whip.client.post(
        url, data=offer, headers={"Content-Type": "application/sdp", **whip.auth("cam_wrong")}
    )
    assert wrong.status == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = await whip.client.post(
        url, data=offer, headers={"Content-Type": "application/sdp", "Authorization": "Basic eA=="}
    )
    assert basic.status == 401
    foreign = await _post(whip, offer, Authorization=f"Bearer {whip.other_token}")
    assert foreign.status == 403 and "another camera" in await foreign.text()
    unknown = await whip.client.post(
        "/whip/cam_nope", data=offer, headers={"Content-Type": "application/sdp", **whip.auth()}
    )
    assert unknown.status == 404 and "no camera" in await unknown.text()
    phone = await whip.client.post(
        f"/whip/{whip.phone_id}",
        data=offer,
        headers={"Content-Type": "application/sdp", **whip.auth(whip.phone_token)},
    )
    assert phone.status == 409 and "phone camera" in await phone.text()
    text = await _post(whip, offer, **{"Content-Type": "text/plain"})
    assert text.status == 415 and text.headers["Accept-Post"] == "application/sdp"
    huge = await _post(whip, "v=0\r\n" + "a=x\r\n" * (MAX_OFFER_BYTES // 5))
    assert huge.status == 413
    malformed = await _post(whip, "v=0\r\ns=no media\r\n")
    assert malformed.status == 400
    body = await malformed.json()
    assert body["error"]["code"] == "bad_sdp" and "m=" in body["error"]["message"]
    not_sdp = await _post(whip, "hello")
    assert not_sdp.status == 400 and "v=0" in (await not_sdp.json())["error"]["message"]
    get = await whip.client.get(url)
    assert get.status == 405 and get.headers["Allow"] == "OPTIONS, POST"
    options = await whip.client.options(url)
    assert options.status == 204
    assert options.headers["Accept-Post"] == "application/sdp"
    assert "Authorization" in options.headers["Access-Control-Allow-Headers"]
    assert "PATCH" in options.headers["Access-Control-Allow-Methods"]
    assert whip.media.answered == [], "nothing reached the media engine"

    # Revoked and expired tokens say so.
    tokens = await whip.sites.list_tokens(whip.camera_id)
    await whip.sites.revoke_token(whip.camera_id, tokens[0].id)
    revoked = await _post(whip, offer)
    assert revoked.status == 401 and "revoked" in (await revoked.json())["error"]["message"]
    expiring = await whip.sites.issue_token(whip.camera_id, ttl_s=60, actor="t")
    whip.now[0] += 120
    expired = await _post(whip, offer, Authorization=f"Bearer {expiring.token}")
    assert expired.status == 401 and (await expired.json())["error"]["code"] == "token_expired"


async def test_a_new_session_replaces_the_old_and_dead_sessions_end(
    whip: Whip, monkeypatch: pytest.MonkeyPatch
) -> None:
    offer = await _offer()
    first = await _post(whip, offer)
    second = await _post(whip, offer)
    assert first.status == second.status == 201
    first_participant = whip.media.answered[0][1]
    assert whip.media.closed == [first_participant], (
        "an encoder that restarted replaces its session"
    )
    [session] = whip.endpoint.sessions
    assert first.headers["Location"] != second.headers["Location"]

    # The encoder stops sending: the engine drops its peer, the watchdog ends the session.
    monkeypatch.setattr(whip_module, "WATCHDOG_S", 0.05)
    offline = asyncio.Event()

    async def changed(site_id: str, camera_id: str) -> None:
        if whip.presence.link(camera_id) is None:
            offline.set()

    whip.presence.add_listener(changed)
    whip.endpoint.start()
    whip.media.gone.add(session.participant_id)
    async with asyncio.timeout(5):
        await offline.wait()
    assert whip.endpoint.sessions == []


def test_helpers() -> None:
    assert ice_links([]) == []
    assert ice_links([{"urls": "stun:a"}]) == ['<stun:a>; rel="ice-server"']
    fragment = parse_sdpfrag(
        "a=ice-ufrag:u\r\na=ice-pwd:p\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\na=end-of-candidates\r\n"
    )
    assert (fragment.ufrag, fragment.pwd, fragment.end_of_candidates) == ("u", "p", True)
    assert fragment.candidates == (("candidate:1 1 udp 1 10.0.0.1 5 typ host", "0"),)
