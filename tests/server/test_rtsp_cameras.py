"""RTSP cameras through the whole service: an admin adds an IP camera (Debian's GStreamer RTSP
server in a subprocess, tests/fakes/rtsp_server.py) with credentials over the REST API; the
server pulls it, staff watch it in the site's room, it comes back by itself after a reboot,
follows new credentials, stops when switched off, and a B-frame camera is shown as transcoded.
Staff are told only that a camera could not be reached (admins get the reason); an internal
address is refused when it is saved and, resolved, before each connection, which goes to the
address that was checked. Real sockets, real aiortc peers, real RTSP over TCP, on 127.0.0.1
only (allowed through INSPECT_OUTBOUND_ALLOW); names are answered by a stub resolver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media import Backoff, MediaConfig, MediaEngine
from server.app import open_state, running_service
from server.outbound import OutboundGuard
from server.settings import Settings
from server.sites import CameraKind, CameraPresence, NewCamera, SiteService
from server.storage.sqlite import Database, SqliteSiteStore
from server.wiring.rtsp import NOT_ALLOWED, UNREACHABLE, RtspCameras
from signaling import Role
from signaling.ports import camera_room
from tests.conftest import LiveService
from tests.fakes.rtsp_server import RtspCamera
from tests.fakes.signal_client import Participant
from tests.fakes.site_viewer import Watch
from tests.waits import until

PASSWORD = "pa55@Secret:w0rd/%"
WRONG = "Wr0ng-Secret-99"
WAIT = 15.0


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    # Reconnect within a second: the test waits for a camera to come back by itself.
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        rtsp_retry_max_s=1.0,
        outbound_allow=("127.0.0.1",),
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    live: LiveService, http: aiohttp.ClientSession, method: str, path: str, **kw: Any
) -> Any:
    async with http.request(method, f"{live.base_url}{path}", headers=live.headers(), **kw) as r:
        body = await r.json() if r.content_type == "application/json" else None
        assert r.status < 300, (method, path, r.status, body)
        return body


async def camera_status(live: LiveService, http: aiohttp.ClientSession, camera_id: str) -> Any:
    return (await call(live, http, "GET", f"/api/cameras/{camera_id}"))["camera"]["status"]


async def _agent_token(live: LiveService) -> str:
    token, _ = await live.state.accounts.create_api_token("agent view", role=Role.AGENT)
    return token


async def until_status(
    live: LiveService,
    http: aiohttp.ClientSession,
    camera_id: str,
    check: Callable[[dict[str, Any]], bool],
    within: float = WAIT,
) -> dict[str, Any]:
    """Poll the camera's status (as the admin page does) until ``check`` holds."""
    async with asyncio.timeout(within):
        while True:
            status: dict[str, Any] = await camera_status(live, http, camera_id)
            if check(status):
                return status
            await asyncio.sleep(0.1)  # noqa: ASYNC110 - polling the API, as a page does


def rtsp_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: (status["rtsp"] or {}).get("state") == state


async def test_an_rtsp_camera_is_pulled_watched_comes_back_and_stops_when_switched_off(
    live_service: LiveService, http: aiohttp.ClientSession
) -> None:
    live = live_service
    site = (await call(live, http, "POST", "/api/sites", json={"name": "Lisbon DC"}))["site"]
    agent_http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(agent_http, "agent", live.agent_password)
    agent = Participant(agent_http, live.base_url)
    camera = RtspCamera(user="cam", password=PASSWORD)
    await camera.start()
    watch: Watch | None = None
    try:
        created = await call(
            live, http, "POST", f"/api/sites/{site['id']}/cameras",
            json={
                "name": "Gate", "kind": "rtsp", "rtsp_url": f"rtsp://127.0.0.1:{camera.port}/cam",
                "rtsp_username": "cam", "rtsp_password": PASSWORD,
            },
        )  # fmt: skip
        camera_id = created["camera"]["id"]
        public_url = f"rtsp://127.0.0.1:{camera.port}/cam"
        status = await until_status(live, http, camera_id, lambda s: bool(s["live"]))
        assert status["online"] is True and status["source"] == "rtsp"
        assert (status["codec"], status["width"], status["height"]) == ("h264", 320, 240)
        assert status["transcoding"] is None
        rtsp = status["rtsp"]
        assert rtsp["state"] == "online" and rtsp["profile"] == "Constrained Baseline"
        assert rtsp["error"] is None and rtsp["retries"] == 0 and rtsp["connects"] == 1

        # Staff watch it in the site's room.
        joined = await agent.join(site_id=site["id"])
        [listed] = joined["site"]["cameras"]
        assert listed["status"]["online"] is True
        watch = Watch(agent, camera_id)
        await watch.start()
        async with asyncio.timeout(WAIT):
            first = await watch.frames(10)
        assert first == sorted(first)

        # The camera loses power: offline, retrying with a clear error; back by itself.
        await camera.stop()
        await agent.expect(
            "camera",
            where=lambda m: m["camera_id"] == camera_id and not m["status"]["online"],
        )
        # First "the camera ended the stream", then refused while it reboots. Staff see that
        # it cannot be reached; why (which port answers how) is for admins.
        refused = f"{public_url}: connection refused (nothing listens at that host and port)"
        status = await until_status(
            live,
            http,
            camera_id,
            lambda s: (s["rtsp"] or {}).get("detail") == refused,
        )
        assert status["online"] is False and status["rtsp"]["retries"] >= 2
        assert status["rtsp"]["state"] in ("retrying", "connecting")
        assert status["rtsp"]["error"] == UNREACHABLE
        # The admin is told why; an agent sees "unreachable" only (M4: no port-scan oracle).
        assert status["rtsp"]["detail"] == refused
        as_agent = {"Authorization": f"Bearer {await _agent_token(live)}"}
        async with http.get(f"{live.base_url}/api/cameras/{camera_id}", headers=as_agent) as r:
            seen = (await r.json())["camera"]["status"]["rtsp"]
        assert seen["error"] == UNREACHABLE and seen.get("detail") is None
        camera = RtspCamera(user="cam", password=PASSWORD, port=camera.port)
        await camera.start()
        status = await until_status(live, http, camera_id, lambda s: bool(s["live"]))
        assert status["rtsp"]["connects"] == 2 and status["rtsp"]["error"] is None
        assert live.state.rtsp.error_detail(camera_id) is None
        async with asyncio.timeout(WAIT):
            again = await watch.frames(10)
        assert min(again) < 100, "the rebooted camera's new frames (numbered from 0 again)"

        # New credentials restart the pull: the wrong ones are refused, the right ones work.
        await call(live, http, "PATCH", f"/api/cameras/{camera_id}", json={"rtsp_password": WRONG})
        unauthorized = f"{public_url}: the camera refused the credentials (401 Unauthorized)"
        status = await until_status(
            live,
            http,
            camera_id,
            lambda s: (s["rtsp"] or {}).get("detail") == unauthorized,
        )
        assert status["online"] is False and status["rtsp"]["error"] == UNREACHABLE
        await call(
            live, http, "PATCH", f"/api/cameras/{camera_id}", json={"rtsp_password": PASSWORD}
        )
        await until_status(live, http, camera_id, lambda s: bool(s["live"]))
        body = await call(live, http, "GET", f"/api/sites/{site['id']}")
        for secret in (PASSWORD, WRONG, "cam:"):
            assert secret not in str(body), secret

        # Switched off: the pull stops, the camera is offline, nothing is published any more.
        await call(live, http, "PATCH", f"/api/cameras/{camera_id}", json={"enabled": False})
        status = await camera_status(live, http, camera_id)
        assert status["online"] is False and status["rtsp"] is None
        assert live.state.rtsp.camera_ids == []
        assert live.state.media.source_stats(camera_room(camera_id)) == []
        await call(live, http, "PATCH", f"/api/cameras/{camera_id}", json={"enabled": True})
        await until_status(live, http, camera_id, lambda s: bool(s["live"]))
        await call(live, http, "DELETE", f"/api/cameras/{camera_id}")
        assert live.state.rtsp.camera_ids == []
    finally:
        if watch is not None:
            await watch.aclose()
        await agent.aclose()
        await agent_http.close()
        await camera.stop()


async def test_cameras_are_pulled_from_the_start_and_b_frames_are_shown_as_transcoded(
    service_settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with RtspCamera(video="h264-bframes") as camera:
        async with open_state(service_settings) as services:
            site = await services.sites.create_site("Porto", actor="test")
            stored = await services.sites.create_camera(
                site.id,
                NewCamera(
                    name="Dock", kind=CameraKind.RTSP, rtsp_url=camera.url(), station_stage=None
                ),
                actor="test",
            )
        # The service starts with the camera already configured: it is pulled at once.
        async with running_service(service_settings) as running:
            state = running.state
            token, _ = await state.accounts.create_api_token("t", role=Role.ADMIN)
            live = LiveService(running.base_url, state, token)
            status = await until_status(live, http, stored.id, lambda s: bool(s["live"]))
    assert (status["codec"], status["width"], status["height"]) == ("h264", 320, 240)
    assert status["transcoding"] is not None
    assert status["transcoding"].startswith("transcoding h264 -> h264: H.264 High profile")
    assert status["rtsp"]["profile"] == "High" and status["rtsp"]["codec"] == "h264"
    assert status["rtsp"]["transcoding"] == status["transcoding"]


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.7:6379/",
        "rtsp://admin:pw@192.168.1.64/Streaming/101",
        "rtsp://127.0.0.2:2019/",
        "rtsp://169.254.169.254/latest",
        "rtsp://[::1]/x",
        "rtsps://[::ffff:10.1.1.1]/x",
    ],
)
async def test_an_internal_camera_address_is_refused_when_saved(
    live_service: LiveService, http: aiohttp.ClientSession, url: str
) -> None:
    live = live_service
    site = (await call(live, http, "POST", "/api/sites", json={"name": "Lab"}))["site"]
    body = {"name": "Probe", "kind": "rtsp", "rtsp_url": url}
    async with http.post(
        f"{live.base_url}/api/sites/{site['id']}/cameras", json=body, headers=live.headers()
    ) as response:
        answer = await response.json()
    assert response.status == 400, answer
    assert "the camera's address is not allowed" in answer["error"]["message"]
    assert "INSPECT_OUTBOUND_ALLOW" in answer["error"]["message"]
    assert "pw" not in answer["error"]["message"]
    assert await live.state.services.sites.list_cameras(site["id"]) == []


class StubDns:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers[host]


@pytest.fixture
async def sites(tmp_path: Path) -> AsyncIterator[SiteService]:
    db = await Database.open(tmp_path / "inspect.db")
    # Saving checks literal addresses only; the names below are checked at each connect.
    yield SiteService(SqliteSiteStore(db), b"camera-credentials-key-0123456789")
    await db.aclose()


async def _pulled(sites: SiteService, guard: OutboundGuard, url: str) -> tuple[RtspCameras, str]:
    site = await sites.create_site("Lab", actor="test")
    camera = await sites.create_camera(
        site.id, NewCamera(name="Gate", kind=CameraKind.RTSP, rtsp_url=url), actor="test"
    )
    engine = MediaEngine(MediaConfig(recording=False))
    cameras = RtspCameras(
        sites,
        engine,
        CameraPresence(engine.source_stats),
        backoff=Backoff(initial_s=0.2, max_s=0.5),
        guard=guard,
    )
    sites.add_camera_listener(cameras.camera_changed)
    await cameras.start()
    return cameras, camera.id


async def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
    sites: SiteService,
) -> None:
    # The name points at a real camera on loopback, which the guard does not allow: had the
    # pull connected, the camera would be online.
    dns = StubDns({"gate-cam.example.com": ["127.0.0.1"]})
    async with RtspCamera(user="cam", password=PASSWORD) as camera:
        url = camera.url().replace("@127.0.0.1:", "@gate-cam.example.com:")
        cameras, camera_id = await _pulled(sites, OutboundGuard(resolver=dns), url)
        try:
            await until(lambda: (cameras.status_json(camera_id) or {}).get("retries", 0) >= 2)
            status = cameras.status_json(camera_id)
            assert status is not None
            assert status["state"] == "retrying" and status["connects"] == 0
            assert status["error"] == NOT_ALLOWED
            detail = cameras.error_detail(camera_id) or ""
            assert detail.startswith(f"rtsp://gate-cam.example.com:{camera.port}/cam: ")
            assert "gate-cam.example.com (127.0.0.1) is a loopback address" in detail
            assert PASSWORD not in detail and "//cam:" not in detail
            assert set(dns.lookups) == {"gate-cam.example.com"} and len(dns.lookups) >= 2
        finally:
            await cameras.aclose()


async def test_the_pull_connects_to_the_address_that_was_checked(sites: SiteService) -> None:
    # ``.invalid`` never resolves (RFC 6761): the camera is reached only if FFmpeg is handed
    # the address the guard checked instead of looking the name up itself.
    dns = StubDns({"gate.invalid": ["127.0.0.1"]})
    async with RtspCamera(user="cam", password=PASSWORD) as camera:
        url = camera.url().replace("@127.0.0.1:", "@gate.invalid:")
        guard = OutboundGuard(("127.0.0.1",), resolver=dns)
        cameras, camera_id = await _pulled(sites, guard, url)
        try:
            await until(lambda: (cameras.status_json(camera_id) or {}).get("state") == "online")
            assert dns.lookups == ["gate.invalid"]
            assert cameras.error_detail(camera_id) is None
        finally:
            await cameras.aclose()
