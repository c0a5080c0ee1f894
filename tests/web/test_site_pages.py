"""The pages of sites and cameras rendered with a fake backend: the phone camera page and its
errors, the walkthrough, the site list and the administration pages, by role."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from web import CAMERA_COOKIE, STATIC_DIR, CameraView, JoinView, SiteView, StaffView, setup_pages

STAFF = {
    "agent": StaffView("u-1", "alex", "Alex Agent", "agent"),
    "reviewer": StaffView("u-2", "riley", "Riley Reviewer", "reviewer"),
    "admin": StaffView("u-3", "ada", "Ada <Admin>", "admin"),
}
SITE = SiteView("site_1", "Madrid <DC>")

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class FakeBackend:
    """Staff by a ``session`` cookie naming the role; camera tokens name their outcome."""

    secure_cookies = True

    def staff(self, request: web.Request) -> StaffView | None:
        return STAFF.get(request.cookies.get("session", ""))

    def join_view(self, token: str) -> JoinView:
        return JoinView(False, "invalid")

    async def camera_view(self, token: str) -> CameraView:
        if token == "cam_good":
            return CameraView(True, None, "cam_1", "Dock <3>", "Madrid DC", time.time() + 3600)
        return CameraView(False, token.removeprefix("cam_"))

    async def site_view(self, site_id: str) -> SiteView | None:
        return SITE if site_id == SITE.site_id else None


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    app = web.Application()
    setup_pages(app, FakeBackend())
    return await aiohttp_client(app)


def _testids(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


async def _get(client: TestClient[Any, Any], path: str, role: str | None = None) -> Any:
    cookies = {"session": role} if role else None
    return await client.get(path, allow_redirects=False, cookies=cookies)


async def test_a_camera_link_moves_its_token_into_a_cookie(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/camera/cam_good")
    assert response.status == 200
    header = next(
        value
        for value in response.headers.getall("Set-Cookie")
        if value.startswith(f"{CAMERA_COOKIE}=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert f"{CAMERA_COOKIE}=cam_good;" in header and "Path=/camera/c/cam_1" in header
    assert {"httponly", "secure", "max-age"} <= attributes and "SameSite=Strict" in header
    max_age = int(header.split("Max-Age=")[1].split(";")[0])
    assert 3500 < max_age <= 3600, "the cookie lasts as long as the token"
    html = await response.text()
    assert 'data-next="/camera/c/cam_1"' in html and "data-token" not in html

    exchanged = await client.post("/camera/session", json={"token": "cam_good"})
    assert await exchanged.json() == {"url": "/camera/c/cam_1"}
    refused = await client.post("/camera/session", json={"token": "cam_revoked"})
    assert refused.status == 410 and (await refused.json())["error"]["code"] == "revoked"


async def test_the_camera_page_publishes_for_a_good_token(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/camera/c/cam_1", allow_redirects=False, cookies={CAMERA_COOKIE: "cam_good"}
    )
    assert response.status == 200
    assert "Content-Security-Policy" in response.headers
    html = await response.text()
    assert {
        "camera-state", "camera-start", "camera-preview", "viewer-count", "talkback",
        "talkback-unmute", "camera-mic", "wake-state", "camera-error", "camera-ended",
    } <= _testids(html)  # fmt: skip
    assert 'data-token="cam_good"' in html
    assert "Dock &lt;3&gt;" in html and "Dock <3>" not in html
    assert '<script type="module" src="/static/js/camera.js">' in html


async def test_the_camera_page_without_its_cookie_asks_for_the_link(
    client: TestClient[Any, Any],
) -> None:
    response = await _get(client, "/camera/c/cam_1")
    assert response.status == 404
    html = await response.text()
    assert 'data-error="missing"' in html and "camera.js" not in html


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        ("invalid", 404, "not valid"),
        ("expired", 410, "expired"),
        ("revoked", 410, "revoked"),
        ("disabled", 403, "switched off"),
        ("wrong_kind", 400, "not for a phone camera"),
    ],
)
async def test_a_bad_camera_token_gets_a_page_that_says_why(
    client: TestClient[Any, Any], error: str, status: int, text: str
) -> None:
    response = await _get(client, f"/camera/cam_{error}")
    assert response.status == status
    html = await response.text()
    assert f'data-error="{error}"' in html and text in html
    assert "camera.js" not in html, "nothing tries to publish"


@pytest.mark.parametrize("path", ["/walkthrough", "/walkthrough/site_1", "/admin/sites"])
async def test_site_pages_need_a_staff_session(client: TestClient[Any, Any], path: str) -> None:
    response = await _get(client, path)
    assert response.status == 302
    assert response.headers["Location"] == f"/login?next={path}"


@pytest.mark.parametrize("role", ["agent", "reviewer", "admin"])
async def test_every_staff_member_can_open_a_walkthrough(
    client: TestClient[Any, Any], role: str
) -> None:
    response = await _get(client, "/walkthrough/site_1", role)
    assert response.status == 200
    html = await response.text()
    assert {
        "camera-grid", "walkthrough-state", "focus-panel", "focus-video", "talk-toggle",
        "focus-snapshot", "focus-record-start", "focus-record-stop", "focus-save-last",
        "focus-stage", "focus-case-id", "focus-message", "grid-empty", "nav-sites",
    } <= _testids(html)  # fmt: skip
    assert 'data-site-id="site_1"' in html and "Madrid &lt;DC&gt;" in html
    assert ("nav-admin-sites" in _testids(html)) is (role == "admin")
    listing = await _get(client, "/walkthrough", role)
    assert listing.status == 200 and "site-list" in _testids(await listing.text())


async def test_an_unknown_site_is_a_404_page(client: TestClient[Any, Any]) -> None:
    for path in ("/walkthrough/site_nope", "/admin/sites/site_nope"):
        response = await _get(client, path, "admin")
        assert response.status == 404, path
        assert "There is no such site" in await response.text()


@pytest.mark.parametrize("role", ["agent", "reviewer"])
async def test_only_admins_manage_sites(client: TestClient[Any, Any], role: str) -> None:
    for path in ("/admin/sites", "/admin/sites/site_1"):
        response = await _get(client, path, role)
        assert response.status == 403
        assert "for administrators" in await response.text()


async def test_the_admin_pages_have_their_controls(client: TestClient[Any, Any]) -> None:
    sites = await (await _get(client, "/admin/sites", "admin")).text()
    assert {"admin-site-list", "site-create-form", "site-name-input", "site-create-submit"} <= (
        _testids(sites)
    )
    site = await (await _get(client, "/admin/sites/site_1", "admin")).text()
    assert {
        "camera-list", "camera-create-form", "camera-name-input", "camera-kind-select",
        "camera-rtsp-url", "camera-rtsp-username", "camera-rtsp-password",
        "camera-station-stage", "camera-station-idle", "camera-create-submit", "token-reveal",
        "token-value", "token-url", "open-walkthrough",
    } <= _testids(site)  # fmt: skip
    assert 'value="returns_qc"' in site


@pytest.mark.parametrize(
    "script", ["camera.js", "walkthrough.js", "admin.js", "sites.js", "call.js"]
)
async def test_the_new_scripts_are_served_as_modules(
    client: TestClient[Any, Any], script: str
) -> None:
    assert (STATIC_DIR / "js" / script).is_file()
    response = await _get(client, f"/static/js/{script}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
