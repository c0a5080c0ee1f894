"""The browser-facing edge of the whole service: where a state-changing request may come from,
JSON bodies that must say so, security headers on every response, evidence read tickets, and
what ``/metrics`` and ``/healthz`` tell whom."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

import server.http.evidence as evidence_routes
from evidence import EvidenceRecord, ItemKind, Use
from server.http.headers import HSTS, security_headers
from server.http.origin import allowed_origins, origin_of
from server.http.ratelimit import client_address
from server.settings import Settings
from signaling import Role
from tests.conftest import AGENT_PASSWORD, LiveService

EVIL = "http://127.0.0.1:1"  # the same site (host), another origin (port)


async def _session(live: LiveService, username: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(session, username, AGENT_PASSWORD)
    return session


@pytest.fixture
async def agent(live_service: LiveService) -> AsyncIterator[aiohttp.ClientSession]:
    session = await _session(live_service, "agent")
    yield session
    await session.close()


# -- origins -----------------------------------------------------------------------------------


def test_the_allowed_origins_are_the_public_url_and_the_listen_address() -> None:
    local = allowed_origins(Settings(port=8080))
    assert local == {"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"}
    public = allowed_origins(Settings(host="10.0.0.5", port=8080, public_url="https://x.example/"))
    assert public == {"https://x.example", "http://10.0.0.5:8080"}
    everywhere = allowed_origins(Settings(host="0.0.0.0", port=443, tls_self_signed=True))
    assert everywhere == {"https://127.0.0.1", "https://localhost", "https://[::1]"}


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTPS://Inspect.Example.com:443/join", "https://inspect.example.com"),
        ("http://127.0.0.1:8080/agent?x=1", "http://127.0.0.1:8080"),
        ("http://[::1]:80", "http://[::1]"),
        ("null", None),
        ("javascript:alert(1)", None),
        ("http://host:99999/", None),
    ],
)
def test_origins_are_compared_as_browsers_write_them(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


async def test_a_staff_browser_on_another_origin_is_refused(
    live_service: LiveService, agent: aiohttp.ClientSession
) -> None:
    base = live_service.base_url
    created = await live_service.create_case(agent)
    url = f"{base}/api/cases/{created['case']['id']}/join-link"  # type: ignore[index]
    refused = [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Referer": f"{EVIL}/page"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Referer": f"{base}/agent"},
    ]
    for headers in refused:
        async with agent.post(url, headers=headers) as response:
            assert response.status == 403, headers
            assert (await response.json())["error"]["code"] == "forbidden"
    admitted = [
        {"Origin": base},
        {"Origin": base.replace("127.0.0.1", "localhost")},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Referer": f"{base}/agent"},
        {},  # no browser at all: a script with the cookie it logged in for
    ]
    for headers in admitted:
        async with agent.post(url, headers=headers) as response:
            assert response.status == 201, (headers, await response.text())


async def test_login_and_logout_check_the_origin_too(live_service: LiveService) -> None:
    base = live_service.base_url
    body = {"username": "agent", "password": AGENT_PASSWORD}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(f"{base}/api/login", json=body, headers={"Origin": EVIL}) as r:
            assert r.status == 403, "a page elsewhere cannot sign a browser in"
        async with session.post(f"{base}/api/login", json=body, headers={"Origin": base}) as r:
            assert r.status == 200
        async with session.post(f"{base}/api/logout", headers={"Origin": EVIL}) as r:
            assert r.status == 403
        async with session.get(f"{base}/api/me") as r:
            assert r.status == 200, "the refused logout left the session alone"


async def test_reads_and_bearer_clients_are_not_origin_checked(live_service: LiveService) -> None:
    base = live_service.base_url
    async with aiohttp.ClientSession(headers=live_service.headers()) as api:
        async with api.get(f"{base}/api/cases", headers={"Origin": EVIL}) as response:
            assert response.status == 200, "a GET changes nothing"
        case = {"kind": "return", "customer_name": "Dana", "order_id": "ORD-2"}
        async with api.post(f"{base}/api/cases", json=case) as response:
            assert response.status == 201, "no Origin and no cookie: an API client"
        # WHIP encoders post from anywhere with their bearer token (CORS without credentials).
        async with api.post(
            f"{base}/whip/cam_x", data="v=0", headers={"Origin": EVIL, "Authorization": "Bearer x"}
        ) as response:
            assert response.status == 401, await response.text()


# -- JSON bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_body_must_say_it_is_json(
    live_service: LiveService, content_type: str | None
) -> None:
    body = b'{"username": "agent", "password": "agent-pass-123"}'
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session,
        session.post(f"{live_service.base_url}/api/login", data=body, headers=headers) as r,
    ):
        assert r.status == 415, await r.text()
        assert (await r.json())["error"]["code"] == "unsupported_media_type"
        assert "Set-Cookie" not in r.headers, "the body was never parsed"


# -- headers -----------------------------------------------------------------------------------


async def test_every_response_says_nosniff(live_service: LiveService) -> None:
    base = live_service.base_url
    async with aiohttp.ClientSession() as session:
        for path in ("/api/me", "/healthz", "/api/openapi.json", "/login", "/static/css/app.css",
                     "/api/no-such-thing", "/join/c/nothing"):  # fmt: skip
            async with session.get(f"{base}{path}") as response:
                assert response.headers.get("X-Content-Type-Options") == "nosniff", path
                assert "Strict-Transport-Security" not in response.headers, "plain http"
        async with session.get(f"{base}/agent", allow_redirects=False) as response:
            assert response.headers.get("X-Content-Type-Options") == "nosniff"


async def _headers_app(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> TestClient[Any, Any]:
    file = tmp_path / "clip.webm"
    file.write_bytes(b"\x1a\x45\xdf\xa3" * 100)

    async def clip(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(file)

    app = web.Application()
    app.router.add_get("/clip", clip)
    app.on_response_prepare.append(security_headers(settings))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


@pytest.mark.parametrize(
    ("settings", "hsts"),
    [
        (Settings(), False),
        (Settings(public_url="https://inspect.example.com"), True),
        (Settings(tls_self_signed=True), True),
        (Settings(tls_cert=Path("c.pem"), tls_key=Path("k.pem")), True),
    ],
)
async def test_hsts_when_browsers_reach_the_service_over_https(
    aiohttp_client: Any, tmp_path: Path, settings: Settings, hsts: bool
) -> None:
    client = await _headers_app(aiohttp_client, settings, tmp_path)
    response = await client.get("/clip", headers={"Range": "bytes=0-9"})
    assert response.status == 206
    assert response.headers["X-Content-Type-Options"] == "nosniff", "files are never sniffed"
    assert response.headers.get("Strict-Transport-Security") == (HSTS if hsts else None)


# -- evidence read tickets ---------------------------------------------------------------------


@pytest.fixture
async def item_id(live_service: LiveService, tmp_path: Path) -> str:
    clip = tmp_path / "in" / "clip.webm"
    clip.parent.mkdir()
    clip.write_bytes(b"\x1a\x45\xdf\xa3" + b"x" * 5000)
    (tmp_path / "in" / "snap.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"y" * 300 + b"\xff\xd9")
    now = datetime.now(UTC)
    record = EvidenceRecord(
        case_id="case-1", use=Use.RETURN, operator="Alex Agent", kind=ItemKind.CLIP,
        started_at=now - timedelta(minutes=1), ended_at=now,
    )  # fmt: skip
    files = [("clip.webm", clip), ("snapshot.jpg", tmp_path / "in" / "snap.jpg")]
    item = await live_service.state.archive.add_item(files, record, actor="Alex Agent")
    return item.item_id


async def _ticket(session: aiohttp.ClientSession, base: str, item: str, name: str) -> str:
    url = f"{base}/api/evidence/{item}/files/{name}/read"
    async with session.post(url, json={"reason": "dispute 42"}) as response:
        assert response.status == 200, await response.text()
        reply = await response.json()
    assert reply["name"] == name and reply["expires_at"].endswith("Z")
    return str(reply["url"])


async def test_a_read_ticket_opens_one_file_for_one_reader(
    live_service: LiveService, item_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = live_service.base_url
    await live_service.state.accounts.create_user(
        "second", AGENT_PASSWORD, name="Second Reviewer", role=Role.REVIEWER
    )
    reviewer = await _session(live_service, "reviewer")
    other = await _session(live_service, "second")
    try:
        url = await _ticket(reviewer, base, item_id, "clip.webm")
        async with reviewer.get(base + url) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "private, no-store"
            assert (await response.read()).startswith(b"\x1a\x45\xdf\xa3")
        async with other.get(base + url) as response:
            assert response.status == 403, "another reviewer's ticket"
        other_file = url.replace("/clip.webm?", "/snapshot.jpg?")
        async with reviewer.get(base + other_file) as response:
            assert response.status == 403, "a ticket opens only its own file"
        async with reviewer.get(base + url.split("?")[0], params={"reason": "x" * 5}) as r:
            assert r.status == 400, "the old ?reason= read is gone"
        async with reviewer.get(base + url[:-3] + "abc") as response:
            assert response.status == 403, "a forged signature"

        later = evidence_routes.clock() + evidence_routes.TICKET_TTL_S + 1
        monkeypatch.setattr(evidence_routes, "clock", lambda: later)
        async with reviewer.get(base + url) as response:
            assert response.status == 403 and "expired" in await response.text()
    finally:
        await reviewer.close()
        await other.close()

    custody = await live_service.state.archive.log_entries(item_id)
    downloads = [
        entry.to_json() for entry in custody if entry.to_json()["kind"] == "item.downloaded"
    ]
    assert len(downloads) == 1, "one logged read, however many range requests follow"
    assert downloads[0]["reason"] == "dispute 42"


async def test_a_bearer_client_reads_through_a_ticket_too(
    live_service: LiveService, item_id: str
) -> None:
    base = live_service.base_url
    async with aiohttp.ClientSession(headers=live_service.headers()) as api:
        url = await _ticket(api, base, item_id, "snapshot.jpg")
        async with api.get(base + url) as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(base + url) as response:
        assert response.status == 401, "a ticket is no credential on its own"


async def test_only_an_admin_releases_a_hold(live_service: LiveService, item_id: str) -> None:
    base = live_service.base_url
    reviewer = await _session(live_service, "reviewer")
    try:
        reason = {"reason": "claim filed"}
        async with reviewer.post(f"{base}/api/evidence/{item_id}/hold", json=reason) as r:
            assert r.status == 200
        async with reviewer.post(f"{base}/api/evidence/{item_id}/release", json=reason) as r:
            assert r.status == 403
        async with reviewer.delete(f"{base}/api/evidence/{item_id}", json=reason) as r:
            assert (await r.json())["error"]["code"] == "on_legal_hold"
    finally:
        await reviewer.close()
    async with (
        aiohttp.ClientSession(headers=live_service.headers()) as api,
        api.post(f"{base}/api/evidence/{item_id}/release", json=reason) as r,
    ):
        assert r.status == 200 and (await r.json())["item"]["legal_hold"] is False


async def test_an_export_streams_the_bundle_and_leaves_no_file(
    live_service: LiveService, item_id: str
) -> None:
    data_dir = live_service.state.settings.data_dir
    body = {"item_ids": [item_id], "reason": "carrier claim"}
    async with (
        aiohttp.ClientSession(headers=live_service.headers()) as api,
        api.post(f"{live_service.base_url}/api/evidence/export", json=body) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/zip"
        assert "attachment" in response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert (await response.read()).startswith(b"PK")
        # The next request on the same connection is read only once the export's handler has
        # returned, and it removes the bundle before it returns.
        async with api.get(f"{live_service.base_url}/healthz") as after:
            assert after.status == 200
    assert not list(data_dir.glob("bundle-*")), "the temporary bundle is removed"


# -- operations --------------------------------------------------------------------------------


async def test_metrics_answer_this_host_and_admins_only(
    live_service: LiveService, agent: aiohttp.ClientSession
) -> None:
    url = f"{live_service.base_url}/metrics"
    forwarded = {"X-Forwarded-For": "203.0.113.7"}  # through a proxy on this host, for outside
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200, "loopback (a scraper on this host)"
        async with session.get(url, headers=forwarded) as response:
            assert response.status == 403
        async with session.get(url, headers={**forwarded, **live_service.headers()}) as r:
            assert r.status == 200, "an admin's bearer token"
    async with agent.get(url, headers=forwarded) as response:
        assert response.status == 403, "staff who are not admins"


async def test_healthz_names_the_node_for_operators_only(live_service: LiveService) -> None:
    url = f"{live_service.base_url}/healthz"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"X-Forwarded-For": "203.0.113.7"}) as response:
            outside = await response.json()
        async with session.get(url) as response:
            inside = await response.json()
    assert outside == {"status": "ok", "db": "ok", "version": outside["version"]}
    assert inside["node"] and inside["status"] == "ok"


class _Request:
    def __init__(self, peer: str, forwarded_for: list[str]) -> None:
        self.remote = peer
        self.headers = CIMultiDict([("X-Forwarded-For", value) for value in forwarded_for])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.2", ["203.0.113.7"], "203.0.113.7"),  # a trusted proxy
        ("10.0.0.2", ["127.0.0.1, 10.0.0.9"], "127.0.0.1"),  # two trusted hops
        ("198.51.100.1", ["127.0.0.1"], "198.51.100.1"),  # an untrusted peer's claim
        ("127.0.0.1", ["not-an-address"], "not-an-address"),  # never a trusted one
    ],
)
def test_the_client_address_is_read_through_trusted_proxies_only(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    trusted = ("10.0.0.0/24", "127.0.0.0/8")
    assert client_address(_Request(peer, forwarded_for), trusted) == client  # type: ignore[arg-type]
