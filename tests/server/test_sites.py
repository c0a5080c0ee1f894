"""Sites and cameras through the real service: REST API, roles, tokens, RTSP credentials, the
camera and walkthrough pages' answers. Media is covered in tests/signaling/test_site_rooms.py
and tests/server/test_whip.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.settings import Settings
from server.sites import CameraKind, CameraTokenError, NewCamera, SiteService
from server.storage.sqlite.sites import SqliteSiteStore
from server.wiring.services import open_services
from signaling import Role
from tests.conftest import TEST_SECRET_KEY, LiveService

SECRET = "s3cr3t-Pa55word!"


@dataclass
class Client:
    live: LiveService
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.live.base_url}{path}"

    async def call(
        self, method: str, path: str, role: str | None = "admin", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        async with self.http.request(
            method, self.url(path), headers=headers, allow_redirects=False, **kwargs
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@pytest.fixture
async def client(live_service: LiveService) -> AsyncIterator[Client]:
    auth = live_service.state.accounts
    tokens = {"admin": live_service.admin_token}
    for role in (Role.AGENT, Role.REVIEWER):
        tokens[role.value], _ = await auth.create_api_token(f"t-{role.value}", role=role)
    async with aiohttp.ClientSession() as http:
        yield Client(live_service, http, tokens)


async def _site(client: Client, name: str = "Madrid DC") -> dict[str, Any]:
    status, body = await client.call(
        "POST", "/api/sites", json={"name": name, "address": "Calle 1"}
    )
    assert status == 201, body
    site: dict[str, Any] = body["site"]
    return site


async def _camera(client: Client, site_id: str, **fields: Any) -> dict[str, Any]:
    status, body = await client.call("POST", f"/api/sites/{site_id}/cameras", json=fields)
    assert status == 201, body
    camera: dict[str, Any] = body["camera"]
    return camera


async def test_an_admin_builds_a_site_that_every_staff_member_can_see(client: Client) -> None:
    site = await _site(client)
    phone = await _camera(client, site["id"], name="Dock 3 phone", kind="phone")
    whip = await _camera(
        client, site["id"], name="Packing line", kind="whip", station_stage="packing",
        station_idle_timeout_s=30,
    )  # fmt: skip
    assert phone["status"]["online"] is False and phone["status"]["source"] is None
    assert whip["station"] == {
        "stage": "packing",
        "logistics_stage": "packing",
        "idle_timeout_s": 30.0,
    }
    assert whip["whip_url"] == f"{client.live.base_url}/whip/{whip['id']}"

    for role in ("agent", "reviewer", "admin"):
        status, body = await client.call("GET", "/api/sites", role=role)
        assert status == 200, body
        assert [(s["name"], s["camera_count"]) for s in body["sites"]] == [("Madrid DC", 2)]
        status, body = await client.call("GET", f"/api/sites/{site['id']}", role=role)
        assert status == 200 and [c["name"] for c in body["cameras"]] == [
            "Dock 3 phone",
            "Packing line",
        ]
        status, body = await client.call("GET", f"/api/cameras/{phone['id']}", role=role)
        assert status == 200 and body["camera"]["kind"] == "phone"

    status, body = await client.call(
        "PATCH", f"/api/sites/{site['id']}", json={"name": "Madrid North"}
    )
    assert status == 200 and body["site"]["name"] == "Madrid North"
    status, body = await client.call(
        "PATCH", f"/api/cameras/{whip['id']}", json={"station_stage": None}
    )
    assert status == 200 and body["camera"]["station"] is None


async def test_only_admins_change_sites_and_nobody_anonymous_sees_them(client: Client) -> None:
    site = await _site(client)
    camera = await _camera(client, site["id"], name="Door", kind="phone")
    writes = [
        ("POST", "/api/sites", {"name": "X"}),
        ("PATCH", f"/api/sites/{site['id']}", {"name": "Y"}),
        ("DELETE", f"/api/sites/{site['id']}", None),
        ("POST", f"/api/sites/{site['id']}/cameras", {"name": "Z", "kind": "phone"}),
        ("PATCH", f"/api/cameras/{camera['id']}", {"enabled": False}),
        ("DELETE", f"/api/cameras/{camera['id']}", None),
        ("POST", f"/api/cameras/{camera['id']}/tokens", {}),
        ("GET", f"/api/cameras/{camera['id']}/tokens", None),
    ]
    for method, path, body in writes:
        for role in ("agent", "reviewer"):
            status, answer = await client.call(method, path, role=role, json=body)
            assert status == 403, (method, path, role, answer)
            assert answer["error"]["code"] == "forbidden"
        status, answer = await client.call(method, path, role=None, json=body)
        assert status == 401, (method, path, answer)
    for path in ("/api/sites", f"/api/sites/{site['id']}", f"/api/cameras/{camera['id']}"):
        status, _ = await client.call("GET", path, role=None)
        assert status == 401

    # A customer's join link and a camera's own token are not staff credentials.
    created = await client.live.create_case(client.http)
    status, body = await client.call("POST", f"/api/cameras/{camera['id']}/tokens", json={})
    assert status == 201
    for credential in (str(created["join_token"]), body["token"]):
        status, answer = await client.call(
            "GET", "/api/sites", role=None, headers={"Authorization": f"Bearer {credential}"}
        )
        assert status == 401, answer
    # Capturing evidence from a camera is for agents and admins.
    status, answer = await client.call(
        "POST", f"/api/cameras/{camera['id']}/snapshots", role="reviewer", json={}
    )
    assert status == 403, answer


async def test_camera_tokens_are_shown_once_and_stop_working_when_revoked(
    client: Client,
) -> None:
    site = await _site(client)
    phone = await _camera(client, site["id"], name="Door", kind="phone")
    whip = await _camera(client, site["id"], name="Encoder", kind="whip")
    rtsp = await _camera(
        client, site["id"], name="Roof", kind="rtsp", rtsp_url="rtsp://127.0.0.1:8554/live"
    )

    status, issued = await client.call("POST", f"/api/cameras/{phone['id']}/tokens", json={})
    assert status == 201 and issued["token"].startswith("cam_")
    assert issued["camera_url"] == f"{client.live.base_url}/camera#t={issued['token']}"
    assert issued["expires_at"] is not None  # M8: 30 days unless asked
    status, whip_token = await client.call(
        "POST", f"/api/cameras/{whip['id']}/tokens", json={"ttl_s": 3600}
    )
    assert status == 201 and whip_token["whip_url"].endswith(f"/whip/{whip['id']}")
    assert whip_token["expires_at"] is not None
    status, answer = await client.call("POST", f"/api/cameras/{rtsp['id']}/tokens", json={})
    assert status == 409 and "pulled by the server" in answer["error"]["message"]

    status, listed = await client.call("GET", f"/api/cameras/{phone['id']}/tokens")
    assert status == 200
    assert [(t["id"], t["state"]) for t in listed["tokens"]] == [(issued["id"], "active")]
    assert issued["token"] not in str(listed), "a token is shown only when minted"

    # The page opens with the token; after revocation it says so.
    status, page = await _open_camera_page(client, issued["camera_url"])
    assert status == 200 and 'data-testid="camera-preview"' in page
    status, _ = await client.call("DELETE", f"/api/cameras/{phone['id']}/tokens/{issued['id']}")
    assert status == 204
    status, page = await _open_camera_page(client, issued["camera_url"])
    assert status == 410 and "revoked" in page
    status, listed = await client.call("GET", f"/api/cameras/{phone['id']}/tokens")
    assert listed["tokens"][0]["state"] == "revoked"
    status, answer = await client.call("DELETE", f"/api/cameras/{phone['id']}/tokens/ct_nope")
    assert status == 404

    # A WHIP camera's token does not open the phone page; a made-up one is not valid.
    base = client.live.base_url
    assert await _open_camera_page(client, f"{base}/camera#t={whip_token['token']}") == (
        400,
        "wrong_kind",
    )
    assert await _open_camera_page(client, f"{base}/camera#t=cam_made-up") == (404, "invalid")

    # A switched-off camera's page says so.
    status, fresh = await client.call("POST", f"/api/cameras/{phone['id']}/tokens", json={})
    await client.call("PATCH", f"/api/cameras/{phone['id']}", json={"enabled": False})
    assert await _open_camera_page(client, fresh["camera_url"]) == (403, "disabled")


async def _open_camera_page(client: Client, url: str) -> tuple[int, str]:
    """What the link page's script does with a camera link (``/camera#t=<token>``): hand the
    token to ``/camera/session``, then open the token-free page it names. The page's status
    and HTML, or the refusal's status and error code."""
    base, _, token = url.partition("#t=")
    # A browser of its own: the page's cookie is for an IP address, which only an unsafe jar
    # keeps.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(f"{base}/session", json={"token": token}) as response:
            answer = await response.json()
            if response.status != 200:
                return response.status, str(answer["error"]["code"])
        async with browser.get(f"{client.live.base_url}{answer['url']}") as page:
            return page.status, await page.text()


async def test_bad_input_gets_a_clear_error(client: Client) -> None:
    site = await _site(client)
    base = f"/api/sites/{site['id']}/cameras"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "A", "kind": "drone"}, "kind"),
        ({"name": "A", "kind": "rtsp"}, "rtsp_url: required for an RTSP camera"),
        ({"name": "A", "kind": "rtsp", "rtsp_url": "http://cam/x"}, "rtsp_url: must be rtsp"),
        ({"name": "A", "kind": "phone", "rtsp_url": "rtsp://h/x"}, "only RTSP cameras"),
        ({"name": "A", "kind": "phone", "station_idle_timeout_s": 30}, "station camera"),
        ({"name": "A", "kind": "phone", "station_stage": "bakery"}, "station_stage"),
        ({"name": "", "kind": "phone"}, "name"),
        ({"name": "A", "kind": "phone", "secret": 1}, "secret"),
    ]
    for body, expected in cases:
        status, answer = await client.call("POST", base, json=body)
        assert status == 400, (body, answer)
        assert expected in answer["error"]["message"], (body, answer)
    status, answer = await client.call(
        "POST", base, data=b"name=A", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 415, answer
    status, answer = await client.call(
        "POST", "/api/sites/site_nope/cameras", json={"name": "A", "kind": "phone"}
    )
    assert status == 404 and "no site" in answer["error"]["message"]
    status, answer = await client.call("GET", "/api/cameras/cam_nope")
    assert status == 404 and "no camera" in answer["error"]["message"]
    status, answer = await client.call("POST", "/api/cameras/cam_nope/snapshots", json={})
    assert status == 404
    camera = await _camera(client, site["id"], name="Door", kind="phone")
    status, answer = await client.call("POST", f"/api/cameras/{camera['id']}/snapshots", json={})
    assert status == 409 and "not connected" in answer["error"]["message"]
    status, answer = await client.call(
        "POST", f"/api/cameras/{camera['id']}/tokens", json={"ttl_s": 5}
    )
    assert status == 400 and "ttl_s" in answer["error"]["message"]


async def test_rtsp_credentials_are_kept_but_never_shown_or_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = await _site(client)
    camera = await _camera(
        client, site["id"], name="Gate", kind="rtsp",
        rtsp_url=f"rtsp://viewer:{SECRET}@127.0.0.1:554/Streaming/101",
    )  # fmt: skip
    assert camera["rtsp_url"] == "rtsp://127.0.0.1:554/Streaming/101"
    assert camera["rtsp_credentials"] is True
    for path in (f"/api/cameras/{camera['id']}", f"/api/sites/{site['id']}"):
        _, body = await client.call("GET", path)
        assert SECRET not in str(body) and "viewer" not in str(body)
    sites = client.live.state.sites
    assert await sites.rtsp_source(camera["id"]) == (
        f"rtsp://viewer:{SECRET}@127.0.0.1:554/Streaming/101"
    )
    row = await client.live.state.services.db.fetchone(
        "SELECT rtsp_url, rtsp_password FROM cameras WHERE id = ?", (camera["id"],)
    )
    assert row is not None and SECRET not in row["rtsp_password"], "kept encrypted"

    # Changing the URL without credentials keeps the stored ones; new ones replace them.
    status, _ = await client.call(
        "PATCH", f"/api/cameras/{camera['id']}", json={"rtsp_url": "rtsp://127.0.0.1:8555/x"}
    )
    assert status == 200
    assert await sites.rtsp_source(camera["id"]) == f"rtsp://viewer:{SECRET}@127.0.0.1:8555/x"
    status, _ = await client.call(
        "PATCH", f"/api/cameras/{camera['id']}", json={"rtsp_username": None, "rtsp_password": None}
    )
    assert status == 200
    assert await sites.rtsp_source(camera["id"]) == "rtsp://127.0.0.1:8555/x"
    assert SECRET not in caplog.text


async def test_expired_tokens_are_refused_with_their_reason(tmp_path: Path) -> None:
    now = [1_000_000.0]
    settings = Settings(data_dir=tmp_path / "var", secret_key=TEST_SECRET_KEY)
    services = await open_services(settings, start_webhooks=False)
    try:
        sites = SiteService(SqliteSiteStore(services.db), b"k" * 32, clock=lambda: now[0])
        site = await sites.create_site("Lisbon", actor="u1")
        camera = await sites.create_camera(
            site.id, NewCamera(name="Bay", kind=CameraKind.PHONE), actor="u1"
        )
        issued = await sites.issue_token(camera.id, ttl_s=60, actor="u1")
        found, record = await sites.verify_token(issued.token)
        assert found.id == camera.id and record.last_used_at is None
        now[0] += 61
        with pytest.raises(CameraTokenError) as expired:
            await sites.verify_token(issued.token)
        assert expired.value.reason == "expired"
        with pytest.raises(CameraTokenError) as invalid:
            await sites.verify_token("cam_" + "x" * 40)
        assert invalid.value.reason == "invalid"
        await sites.delete_site(site.id)
        assert await sites.get_camera(camera.id) is None
    finally:
        await services.aclose()


async def test_pages_of_sites_answer_by_role(client: Client) -> None:
    site = await _site(client, "Porto hub")
    base = client.live.base_url
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as agent:
        # Not signed in: the staff pages send to the login page.
        for path in ("/walkthrough", f"/walkthrough/{site['id']}", "/admin/sites"):
            async with agent.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 302, path
                assert response.headers["Location"].startswith("/login?next=")
        await client.live.login(agent, "agent", client.live.agent_password)
        async with agent.get(f"{base}/walkthrough/{site['id']}") as response:
            assert response.status == 200
            assert 'data-testid="camera-grid"' in await response.text()
        async with agent.get(f"{base}/walkthrough/site_nope") as response:
            assert response.status == 404
            assert "There is no such site" in await response.text()
        for path in ("/admin/sites", f"/admin/sites/{site['id']}"):
            async with agent.get(f"{base}{path}") as response:
                assert response.status == 403, path
                assert "for administrators" in await response.text()


async def test_the_openapi_document_describes_the_site_routes(client: Client) -> None:
    status, document = await client.call("GET", "/api/openapi.json", role=None)
    assert status == 200
    paths = document["paths"]
    for path, methods in {
        "/api/sites": {"get", "post"},
        "/api/sites/{id}": {"get", "patch", "delete"},
        "/api/sites/{id}/cameras": {"post"},
        "/api/sites/{id}/evidence": {"get"},
        "/api/cameras/{id}": {"get", "patch", "delete"},
        "/api/cameras/{id}/tokens": {"get", "post"},
        "/api/cameras/{id}/tokens/{token}": {"delete"},
        "/api/cameras/{id}/snapshots": {"post"},
        "/api/cameras/{id}/captures": {"post"},
        "/api/cameras/{id}/captures/{capture}/stop": {"post"},
        "/api/cameras/{id}/captures/last": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
    schema = document["components"]["schemas"]["NewCameraBody"]
    assert schema["properties"]["kind"]["enum"] == ["phone", "whip", "rtsp"]
