"""Page routes rendered with a fake backend: status codes, redirects, controls, static files."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from evidence import LogisticsStage
from web import JOIN_COOKIE, STATIC_DIR, JoinView, StaffView, setup_pages

STAFF = StaffView(user_id="u-1", username="alex", name="Alex <Agent>", role="agent")
REVIEWER = StaffView(user_id="u-2", username="riley", name="Riley Reviewer", role="reviewer")
ADMIN = StaffView(user_id="u-3", username="ada", name="Ada Admin", role="admin")
CASE_VIEW = JoinView(
    ok=True,
    error=None,
    case_id="case-42",
    kind="return",
    customer_name="Maria",
    order_id="ORD-7",
    sku="SKU-9",
)

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class FakeBackend:
    """Staff are recognised by a ``session`` cookie (``ok`` is the agent, else the role's name);
    join tokens name their outcome."""

    secure_cookies = False

    def staff(self, request: web.Request) -> StaffView | None:
        return {"ok": STAFF, "reviewer": REVIEWER, "admin": ADMIN}.get(
            request.cookies.get("session", "")
        )

    async def join_view(self, token: str) -> JoinView:
        if token == "good":
            return CASE_VIEW
        if token == "support":
            return JoinView(True, None, "case-43", "support", "Maria", None, None)
        return JoinView(False, "expired" if token == "old" else "invalid")


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    app = web.Application()
    setup_pages(app, FakeBackend())
    return await aiohttp_client(app)


def _testids(html: str) -> set[str]:
    return set(re.findall(r'data-testid="([^"]+)"', html))


async def _get(
    client: TestClient[Any, Any], path: str, *, staff: bool = False, role: str | None = None
) -> Any:
    """GET without following redirects; ``staff`` signs in the agent, ``role`` another member."""
    session = role or ("ok" if staff else None)
    cookies = {"session": session} if session else None
    return await client.get(path, allow_redirects=False, cookies=cookies)


async def test_root_redirects_to_the_console(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/")
    assert response.status == 302
    assert response.headers["Location"] == "/agent"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/agent", "/login?next=/agent"),
        ("/agent/cases/case-42", "/login?next=/agent/cases/case-42"),
        ("/evidence", "/login?next=/evidence"),
    ],
)
async def test_staff_pages_redirect_to_login(
    client: TestClient[Any, Any], path: str, target: str
) -> None:
    response = await _get(client, path)
    assert response.status == 302
    assert response.headers["Location"] == target


async def test_login_page_has_its_form(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/login?next=/agent/cases/x")
    assert response.status == 200
    html = await response.text()
    assert {"login-username", "login-password", "login-submit", "error-message"} <= _testids(html)
    assert 'data-next="/agent/cases/x"' in html
    assert '<script type="module" src="/static/js/login.js">' in html


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "agent",
        "javascript:alert(1)",
        "/%5Cevil.example/x",  # a backslash, read as "/" by browsers
        # Browsers drop tabs, newlines and carriage returns: each of these is //evil.example.
        "/%09/evil.example/x",
        "/%0A/evil.example/x",
        "/%0D/evil.example/x",
        "/%00/evil.example/x",
        "/%C2%85/evil.example/x",  # a C1 control (NEL)
    ],
)
async def test_login_never_redirects_off_site(client: TestClient[Any, Any], target: str) -> None:
    html = await (await _get(client, f"/login?next={target}")).text()
    assert 'data-next="/agent"' in html


@pytest.mark.parametrize(
    "target", ["/evidence?case_id=c-1&item=i-2", "/walkthrough/site_1", "/agent/cases/a%2Fb"]
)
async def test_login_keeps_a_path_on_the_site(client: TestClient[Any, Any], target: str) -> None:
    html = await (await _get(client, f"/login?next={quote(target, safe='/%')}")).text()
    assert f'data-next="{escape(unquote(target))}"' in html


async def test_agent_console_renders_for_staff(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/agent", staff=True)
    assert response.status == 200
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["connect-src"] == "'self'", "scripts reach this service only (its /ws too)"
    html = await response.text()
    expected = {
        "queue-list",
        "queue-notice",
        "connection-state",
        "remote-video",
        "remote-audio",
        "chat-log",
        "chat-input",
        "chat-send",
        "decision-form",
        "decision-select",
        "refund-amount",
        "fact-cosmetic",
        "fact-functional",
        "fact-packaging",
        "fact-accessories",
        "decision-note",
        "decision-submit",
        "decision-result",
        "outcome-form",
        "outcome-select",
        "resolution-note",
        "create-case-form",
        "join-url",
        "logout",
        "leave-call",
    }
    assert expected <= _testids(html)
    # Names are escaped, never injected.
    assert "Alex &lt;Agent&gt;" in html and "Alex <Agent>" not in html
    for value in ("refund", "partial_refund", "reject", "return_to_warehouse"):
        assert f'value="{value}"' in html
    assert re.search(r"<video[^>]*data-testid=\"remote-video\"[^>]*playsinline", html)


async def test_agent_console_has_the_live_grading_panel(client: TestClient[Any, Any]) -> None:
    html = await (await _get(client, "/agent", staff=True)).text()
    assert {
        "grading-panel",
        "grading-waiting",
        "live-grade",
        "live-confidence",
        "live-status",
        "grade-probs",
        "damage-list",
        "code-list",
        "frames-count",
        "best-frames",
        "model-version",
        "grading-note",
    } <= _testids(html)
    assert "Waiting for video…" in html
    assert "evidence for you, not the verdict" in html
    # The grading panel sits in the call console, after the video.
    assert html.index('data-testid="remote-video"') < html.index('data-testid="grading-panel"')
    # Rows, chips and frames are drawn by the grading module with these ids.
    module = (STATIC_DIR / "js" / "grading.js").read_text()
    for test_id in ("damage-${d.label}", "code-match", "best-frame"):
        assert f"'data-testid': `{test_id}`" in module or f"'data-testid': '{test_id}'" in module
    assert "'analysis'" in (STATIC_DIR / "js" / "agent.js").read_text()


async def test_decision_form_shows_the_derived_grade_and_an_override(
    client: TestClient[Any, Any],
) -> None:
    html = await (await _get(client, "/agent", staff=True)).text()
    form = html[
        html.index('data-testid="decision-form"') : html.index('data-testid="outcome-form"')
    ]
    assert {
        "derived-grade",
        "derived-explanation",
        "resale-channel",
        "decision-model-grade",
        "grade-override-toggle",
        "grade-override-select",
        "grade-override-reason",
    } <= _testids(form)
    for grade in "ABCD":
        assert f'<option value="{grade}">' in form
    # The override reason is hidden until the agent chooses to override.
    assert re.search(r'class="override-fields" hidden data-testid="grade-override-fields"', form)


async def test_case_page_renders_for_staff(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/agent/cases/case-42", staff=True)
    assert response.status == 200
    html = await response.text()
    assert 'data-case-id="case-42"' in html
    assert {
        "case-state",
        "case-details",
        "case-decision",
        "case-grading",
        "case-timeline",
    } <= _testids(html)


def _set_cookie(response: Any, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` for ``name`` (lower-case keys, value under "")."""
    for header in response.headers.getall("Set-Cookie", []):
        key, _, rest = header.partition("=")
        if key != name:
            continue
        value, *attributes = [part.strip() for part in rest.split(";")]
        parsed = {"": value}
        for attribute in attributes:
            attr, _, attr_value = attribute.partition("=")
            parsed[attr.lower()] = attr_value
        return parsed
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getall('Set-Cookie', [])}")


async def test_a_link_with_the_token_in_its_path_moves_it_into_a_cookie(
    client: TestClient[Any, Any],
) -> None:
    response = await _get(client, "/join/good")
    assert response.status == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    cookie = _set_cookie(response, JOIN_COOKIE)
    assert cookie[""] == "good"
    assert cookie["path"] == "/join/c/case-42"
    assert {"httponly", "samesite"} <= cookie.keys() and cookie["samesite"] == "Strict"
    html = await response.text()
    assert 'data-next="/join/c/case-42"' in html
    assert '<script type="module" src="/static/js/link.js">' in html
    assert "data-token" not in html and "start-camera" not in _testids(html)


async def test_a_fragment_link_exchanges_its_token_for_the_cookie(
    client: TestClient[Any, Any],
) -> None:
    page = await _get(client, "/join")
    assert page.status == 200
    html = await page.text()
    assert 'data-link-kind="join"' in html and 'data-next=""' in html
    assert "join-error" in _testids(html) and 'data-error="missing"' in html

    response = await client.post("/join/session", json={"token": "good"})
    assert response.status == 200
    assert await response.json() == {"url": "/join/c/case-42"}
    cookie = _set_cookie(response, JOIN_COOKIE)
    assert cookie[""] == "good" and cookie["path"] == "/join/c/case-42"
    assert cookie["samesite"] == "Strict" and "httponly" in cookie


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"token": "old"}, 410, "expired"),
        ({"token": "forged"}, 404, "invalid"),
        ({}, 404, "invalid"),
    ],
)
async def test_a_refused_exchange_says_why_and_sets_nothing(
    client: TestClient[Any, Any], body: dict[str, str], status: int, code: str
) -> None:
    response = await client.post("/join/session", json=body)
    assert response.status == status
    error = (await response.json())["error"]
    assert error["code"] == code and error["message"] and error["help"]
    assert "Set-Cookie" not in response.headers


async def test_an_exchange_is_json_only(client: TestClient[Any, Any]) -> None:
    response = await client.post("/join/session", data="token=good")
    assert response.status == 404
    assert "Set-Cookie" not in response.headers


async def test_join_page_for_a_valid_link(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/join/c/case-42", allow_redirects=False, cookies={JOIN_COOKIE: "good"}
    )
    assert response.status == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    html = await response.text()
    assert '<meta name="viewport"' in html
    assert 'data-token="good"' in html
    ids = _testids(html)
    assert {
        "start-camera",
        "switch-camera",
        "connection-state",
        "checklist-label",
        "checklist-sides",
        "checklist-item",
        "checklist-accessories",
        "chat-log",
        "chat-input",
        "chat-send",
        "remote-audio",
        "unmute-audio",
        "camera-error",
        "call-ended",
    } <= ids
    assert re.search(r"<video[^>]*playsinline", html)
    assert "ORD-7" in html and "Maria" in html


async def test_the_join_page_without_its_cookie_asks_for_the_link(
    client: TestClient[Any, Any],
) -> None:
    response = await _get(client, "/join/c/case-42")
    assert response.status == 404
    html = await response.text()
    assert 'data-error="missing"' in html and "Open the link" in html
    assert "start-camera" not in _testids(html)


async def test_a_cookie_opens_only_its_own_case(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/join/c/case-99", allow_redirects=False, cookies={JOIN_COOKIE: "good"}
    )
    assert response.status == 404
    assert "start-camera" not in _testids(await response.text())
    cleared = _set_cookie(response, JOIN_COOKIE)
    assert cleared["max-age"] == "0" and cleared["path"] == "/join/c/case-99", cleared


async def test_support_join_page_has_no_return_checklist(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/join/c/case-43", cookies={JOIN_COOKIE: "support"})).text()
    assert "checklist-label" not in _testids(html)
    assert "start-camera" in _testids(html)


async def test_expired_join_link(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/join/old")
    assert response.status == 410
    html = await response.text()
    assert "This link has expired — ask the seller for a new one" in html
    assert "start-camera" not in _testids(html)


async def test_invalid_join_link(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/join/forged")
    assert response.status == 404
    html = await response.text()
    assert "This link is not valid" in html
    assert "start-camera" not in _testids(html)


@pytest.mark.parametrize(
    "name",
    [
        "signal.js",
        "call.js",
        "chat.js",
        "agent.js",
        "join.js",
        "link.js",
        "login.js",
        "case.js",
        "grading.js",
        "gradeform.js",
        "capture.js",
        "evidence.js",
        "archive.js",
        "evidencedetail.js",
        "gradetimeline.js",
        "staff.js",
    ],
)
async def test_modules_are_served_as_javascript(client: TestClient[Any, Any], name: str) -> None:
    response = await _get(client, f"/static/js/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert await response.read() == (STATIC_DIR / "js" / name).read_bytes()


async def test_stylesheet_is_served_as_css(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/static/css/app.css")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")


@pytest.mark.parametrize(
    "path", ["/static/js/missing.js", "/static/../pages.py", "/static/%2e%2e/pages.py"]
)
async def test_static_stays_inside_its_folder(client: TestClient[Any, Any], path: str) -> None:
    response = await _get(client, path)
    assert response.status == 404


async def test_every_module_import_resolves(client: TestClient[Any, Any]) -> None:
    """A typo in an import path breaks a whole page; check every relative import exists."""
    for module in (STATIC_DIR / "js").glob("*.js"):
        for target in re.findall(r"from '(\./[^']+)'", module.read_text()):
            response = await _get(client, f"/static/js/{target[2:]}")
            assert response.status == 200, f"{module.name} imports missing {target}"


#: The stages evidence is filed under, as the evidence record declares them.
STAGES = tuple(stage.value for stage in LogisticsStage)


async def test_agent_console_has_the_capture_controls(client: TestClient[Any, Any]) -> None:
    html = await (await _get(client, "/agent", staff=True)).text()
    assert {
        "capture-panel",
        "capture-start",
        "capture-stop",
        "capture-state",
        "capture-save-last",
        "capture-snapshot",
        "capture-stage",
        "capture-error",
        "evidence-list",
    } <= _testids(html)
    # Under the customer's video, before the grading panel.
    video = html.index('data-testid="remote-video"')
    start = html.index('data-testid="capture-panel"')
    end = html.index('data-testid="grading-panel"')
    assert video < start < end
    panel = html[start:end]
    for stage in STAGES:
        assert f'<option value="{stage}">' in panel
    assert "Save last 10 s" in panel and "pre-roll" in panel
    # Stop is hidden until a recording runs; nothing is enabled before a call.
    assert re.search(r'<button[^>]*hidden[^>]*data-testid="capture-stop"', panel)
    assert re.search(r'<button[^>]*disabled[^>]*data-testid="capture-start"', panel)
    module = (STATIC_DIR / "js" / "capture.js").read_text()
    for path in ("/captures`", "/captures/last`", "/snapshots`", "/evidence`", "/stop`"):
        assert path in module
    assert "'data-testid': 'save-frame'" in (STATIC_DIR / "js" / "grading.js").read_text()
    assert "'data-testid': 'evidence-item'" in (STATIC_DIR / "js" / "evidence.js").read_text()


async def test_archive_login_comes_back_to_the_search(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/evidence?case_id=c-1")
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/evidence?case_id=c-1"]


async def test_agents_see_no_evidence_link(client: TestClient[Any, Any]) -> None:
    html = await (await _get(client, "/agent", staff=True)).text()
    assert "nav-evidence" not in _testids(html)


@pytest.mark.parametrize("role", ["reviewer", "admin"])
async def test_evidence_archive_renders_for_reviewers(
    client: TestClient[Any, Any], role: str
) -> None:
    response = await _get(client, "/evidence", role=role)
    assert response.status == 200
    assert "Content-Security-Policy" in response.headers
    html = await response.text()
    assert {
        "nav-evidence",
        "view-reason",
        "evidence-search",
        "search-order",
        "search-tracking",
        "search-case",
        "search-unit",
        "search-since",
        "search-until",
        "search-grade",
        "search-stage",
        "search-submit",
        "evidence-results",
        "evidence-detail",
        "evidence-video",
        "evidence-image",
        "grade-timeline",
        "integrity-status",
        "custody-log",
        "export-bundle",
        "hold-toggle",
        "delete-item",
        "action-reason",
        "action-confirm",
        "action-error",
    } <= _testids(html)
    assert "Why are you opening evidence?" in html
    assert re.search(r"<video[^>]*controls[^>]*playsinline", html)
    for stage in STAGES:
        assert f'<option value="{stage}">' in html
    for grade in "ABCD":
        assert f'<option value="{grade}">' in html
    assert '<script type="module" src="/static/js/archive.js">' in html


async def test_evidence_archive_is_refused_to_agents(client: TestClient[Any, Any]) -> None:
    response = await _get(client, "/evidence", staff=True)
    assert response.status == 403
    html = await response.text()
    assert "The evidence archive is for reviewers" in html
    assert "evidence-search" not in _testids(html)
    assert "logout" in _testids(html)


async def test_case_page_lists_evidence(client: TestClient[Any, Any]) -> None:
    agent = await (await _get(client, "/agent/cases/case-42", staff=True)).text()
    assert {"case-evidence", "evidence-list"} <= _testids(agent)
    assert "case-evidence-archive" not in _testids(agent)
    reviewer = await (await _get(client, "/agent/cases/case-42", role="reviewer")).text()
    assert 'href="/evidence?case_id=case-42"' in reviewer


def _stage_template(html: str) -> list[tuple[str, str]]:
    """(value, label) of the page's ``<template id="logistics-stages">``."""
    found = re.search(r'<template id="logistics-stages"[^>]*>(.*?)</template>', html, re.S)
    assert found, "the page carries no stage labels"
    return re.findall(r'<option value="([^"]*)">([^<]*)</option>', found[1])


@pytest.mark.parametrize(
    ("path", "role"),
    [("/agent", "ok"), ("/agent/cases/case-42", "ok"), ("/evidence", "reviewer"), ("/login", None)],
)
async def test_every_page_carries_the_stage_labels(
    client: TestClient[Any, Any], path: str, role: str | None
) -> None:
    html = await (await _get(client, path, role=role)).text()
    stages = _stage_template(html)
    # The words cover exactly the evidence record's stages, in journey order.
    assert [value for value, _ in stages] == list(STAGES)
    assert ("refurbishment_qc", "Refurbishment QC") in stages
    assert ("return_receipt", "Return receipt") in stages


async def test_the_scripts_keep_no_stage_list_of_their_own() -> None:
    for module in (STATIC_DIR / "js").glob("*.js"):
        source = module.read_text()
        assert "refurbishment_qc" not in source and "'Refurbishment QC'" not in source, module.name
    assert "getElementById('logistics-stages')" in (STATIC_DIR / "js" / "evidence.js").read_text()


async def test_the_app_says_which_stages_exist(aiohttp_client: ClientFactory) -> None:
    app = web.Application()
    setup_pages(app, FakeBackend(), logistics_stages=["last_mile", "packing", "customs_hold"])
    client = await aiohttp_client(app)
    html = await (await _get(client, "/agent", staff=True)).text()
    expected = [
        ("last_mile", "Last mile"),
        ("packing", "Packing"),
        ("customs_hold", "Customs hold"),
    ]
    assert _stage_template(html) == expected
    select = re.search(r'data-testid="capture-stage">(.*?)</select>', html, re.S)
    assert select
    options = re.findall(r'<option value="([^"]+)">([^<]*)</option>', select[1])
    assert options == expected
