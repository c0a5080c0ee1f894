"""The authorisation matrix, table-driven: every REST route and every /ws message type, for
every kind of caller (nobody, a customer's join link, a camera token, an agent, a reviewer, an
admin, an admin's API token).

The tables below are the matrix as designed (docs/protocol.md says the same per route). A
route added without a row fails :func:`test_every_route_has_a_row`. A caller the table allows
must never get 401/403; any other caller must get 401 or 403, before anything else is looked
at (ids here name nothing, so an allowed caller gets 404 or 400, a refused one never does).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from server.settings import Settings
from signaling.messages import Role
from tests.conftest import AGENT_PASSWORD, LiveService

ANON, CUSTOMER, CAMERA, AGENT, REVIEWER, ADMIN, API = (
    "anonymous", "customer", "camera", "agent", "reviewer", "admin", "api-token",
)  # fmt: skip
EVERYONE = frozenset({ANON, CUSTOMER, CAMERA, AGENT, REVIEWER, ADMIN, API})
STAFF = frozenset({AGENT, REVIEWER, ADMIN, API})
ADMINS = frozenset({ADMIN, API})
CALL_TAKERS = frozenset({AGENT, ADMIN, API})
EVIDENCE_READERS = frozenset({REVIEWER, ADMIN, API})
CASE_EVIDENCE = frozenset({AGENT, REVIEWER, ADMIN, API})
#: A person's own session (an API token has no password and no other sessions to end).
SIGNED_IN = frozenset({AGENT, REVIEWER, ADMIN})

#: (method, OpenAPI path) -> who may call it.
REST: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/api/login"): EVERYONE,
    ("POST", "/api/logout"): EVERYONE,  # clears a cookie; nothing to protect
    ("GET", "/api/me"): STAFF,
    ("POST", "/api/logout-everywhere"): SIGNED_IN,
    ("POST", "/api/me/password"): SIGNED_IN,
    ("POST", "/api/cases"): CALL_TAKERS,
    ("GET", "/api/cases"): STAFF,
    ("GET", "/api/cases/{id}"): STAFF,
    ("POST", "/api/cases/{id}/join-link"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/accept"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/decision"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/close"): CALL_TAKERS,
    ("GET", "/api/cases/{id}/transcript"): STAFF,
    ("PUT", "/api/cases/{id}/captions"): CALL_TAKERS,
    ("GET", "/api/phrases"): CALL_TAKERS,
    ("GET", "/api/users"): ADMINS,
    ("POST", "/api/users"): ADMINS,
    ("PATCH", "/api/users/{id}"): ADMINS,
    ("GET", "/api/tokens"): ADMINS,
    ("POST", "/api/tokens"): ADMINS,
    ("DELETE", "/api/tokens/{id}"): ADMINS,
    ("GET", "/api/webhooks"): ADMINS,
    ("POST", "/api/webhooks"): ADMINS,
    ("DELETE", "/api/webhooks/{id}"): ADMINS,
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/api/openapi.json"): EVERYONE,
    # Live video: the agent holding the call, or an admin (tests/server/test_authz_matrix.py).
    ("GET", "/api/cases/{id}/assessment"): CALL_TAKERS,
    ("GET", "/api/cases/{id}/frames/{frame}"): CALL_TAKERS,
    ("POST", "/api/grading/derive"): STAFF,
    ("POST", "/api/cases/{id}/captures"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/captures/{capture}/stop"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/captures/last"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/snapshots"): CALL_TAKERS,
    ("GET", "/api/cases/{id}/evidence"): CASE_EVIDENCE,
    ("GET", "/api/evidence"): EVIDENCE_READERS,
    ("GET", "/api/evidence/tree-head"): EVERYONE,
    ("GET", "/api/evidence/consistency"): EVERYONE,
    ("GET", "/api/evidence/public-key"): EVERYONE,
    ("POST", "/api/evidence/export"): EVIDENCE_READERS,
    ("POST", "/api/evidence/{item}/view"): EVIDENCE_READERS,
    ("POST", "/api/evidence/{item}/files/{name}/read"): EVIDENCE_READERS,
    ("DELETE", "/api/evidence/{item}"): EVIDENCE_READERS,
    ("GET", "/api/evidence/{item}/files/{name}"): EVIDENCE_READERS,
    ("POST", "/api/evidence/{item}/hold"): EVIDENCE_READERS,
    ("POST", "/api/evidence/{item}/release"): ADMINS,  # L8: not the reviewer who deletes
    ("GET", "/api/sites"): STAFF,
    ("POST", "/api/sites"): ADMINS,
    ("GET", "/api/sites/{id}"): STAFF,
    ("PATCH", "/api/sites/{id}"): ADMINS,
    ("DELETE", "/api/sites/{id}"): ADMINS,
    ("POST", "/api/sites/{id}/cameras"): ADMINS,
    ("GET", "/api/sites/{id}/evidence"): CASE_EVIDENCE,
    ("GET", "/api/cameras/{id}"): STAFF,
    ("PATCH", "/api/cameras/{id}"): ADMINS,
    ("DELETE", "/api/cameras/{id}"): ADMINS,
    ("GET", "/api/cameras/{id}/tokens"): ADMINS,
    ("POST", "/api/cameras/{id}/tokens"): ADMINS,
    ("DELETE", "/api/cameras/{id}/tokens/{token}"): ADMINS,
    ("POST", "/api/cameras/{id}/snapshots"): CALL_TAKERS,
    ("POST", "/api/cameras/{id}/captures"): CALL_TAKERS,
    ("POST", "/api/cameras/{id}/captures/{capture}/stop"): CALL_TAKERS,
    ("POST", "/api/cameras/{id}/captures/last"): CALL_TAKERS,
    # The inspection tools: the agent's side, and the customer's (the join link's cookie, or
    # its token as a bearer).
    ("POST", "/api/cases/{id}/frozen"): CALL_TAKERS,
    ("GET", "/api/cases/{id}/frozen/{frame}"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/frozen/{frame}/release"): CALL_TAKERS,
    ("GET", "/api/cases/{id}/stills/{item}"): CALL_TAKERS,
    ("GET", "/join/c/{case_id}/frozen/{frame}"): frozenset({CUSTOMER}),
    ("POST", "/join/c/{case_id}/uploads"): frozenset({CUSTOMER}),
    ("HEAD", "/join/c/{case_id}/uploads/{upload}"): frozenset({CUSTOMER}),
    ("PATCH", "/join/c/{case_id}/uploads/{upload}"): frozenset({CUSTOMER}),
    ("POST", "/join/c/{case_id}/offers"): frozenset({CUSTOMER}),
    ("POST", "/join/c/{case_id}/intake"): frozenset({CUSTOMER}),
    ("GET", "/api/returns/reasons"): STAFF,
    ("GET", "/api/returns/rules"): STAFF,
    ("GET", "/api/returns/rules/versions"): STAFF,
    ("GET", "/api/returns/rules/versions/{id}"): STAFF,
    ("PUT", "/api/returns/rules"): ADMINS,
    ("POST", "/api/returns/rules/dry-run"): ADMINS,
    ("POST", "/api/evidence/{item}/redactions"): EVIDENCE_READERS,
    ("GET", "/api/analytics/summary"): STAFF,
    ("GET", "/api/analytics/returns"): STAFF,
    ("GET", "/api/analytics/returns.csv"): STAFF,
    ("GET", "/api/analytics/top-products"): STAFF,
    ("GET", "/api/analytics/chart.svg"): STAFF,
    ("GET", "/api/analytics/alerts"): STAFF,
    ("POST", "/api/analytics/sales"): ADMINS,
    ("POST", "/api/cases/{id}/reason"): CALL_TAKERS,
    ("POST", "/api/cases/{id}/approve"): CALL_TAKERS,
}

#: /ws message type -> who may send it once joined (customers in their case, cameras on their
#: camera page, staff in the lobby). "join" and "ping" are for everyone.
JOINED = frozenset({CUSTOMER, CAMERA, AGENT, REVIEWER, ADMIN})
WS_ALLOWED: dict[str, frozenset[str]] = {
    "accept": frozenset({AGENT, ADMIN}),
    "unwatch": frozenset({AGENT, REVIEWER, ADMIN}),
    # Everyone joined may send these; where they make no sense (an offer from the lobby) the
    # answer is a state error such as not_in_call, never forbidden.
    "offer": JOINED,
    "candidate": JOINED,
    "chat": JOINED,
    "leave": JOINED,
    "ping": JOINED,
    "join": JOINED,  # a second join: already_joined
    # The agent's inspection tools: a customer is refused; others outside a case's call get
    # not_in_call. A tap (point) and the camera's report are the customer's too.
    "markup": JOINED - {CUSTOMER},
    "photo_request": JOINED - {CUSTOMER},
    "camera_control": JOINED - {CUSTOMER},
    "video_mode": JOINED - {CUSTOMER},
    "point": JOINED,
    "camera_state": JOINED,
}
WS_PROBES: dict[str, dict[str, object]] = {
    "accept": {"type": "accept", "case_id": "nothing-here"},
    "unwatch": {"type": "unwatch", "camera_id": "nothing-here"},
    "offer": {"type": "offer", "sdp": "v=0"},
    "candidate": {"type": "candidate", "candidate": "", "sdpMid": "0"},
    "chat": {"type": "chat", "client_id": "probe-1", "text": "hello"},
    "leave": {"type": "leave"},
    "ping": {"type": "ping"},
    "join": {"type": "join"},
    "markup": {"type": "markup", "frame_id": "f0", "op": "clear"},
    "photo_request": {"type": "photo_request", "request_id": "r1"},
    "camera_control": {"type": "camera_control", "control": "torch", "value": True},
    "video_mode": {"type": "video_mode", "mode": "audio"},
    "point": {"type": "point", "x": 0.5, "y": 0.5},
    "camera_state": {"type": "camera_state", "capabilities": {}},
}


def _join_token(url: str) -> str:
    """The token of a customer link (``/join#t=<token>``)."""
    return parse_qs(urlsplit(url).fragment)["t"][0]


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    cookies: dict[str, str]


@pytest.fixture
def service_settings(service_settings: Settings) -> Settings:
    # The callers without a credential of their own (anonymous, customer, camera) share
    # 127.0.0.1's request bucket, and the table asks every route once per caller: a burst that
    # large keeps 429 (tested in test_rate_limits.py) out of the 401/403 this file is about.
    return replace(service_settings, api_burst=100_000, api_rate_per_s=10_000.0)


@pytest.fixture
async def callers(live_service: LiveService) -> AsyncIterator[dict[str, Caller]]:
    base = live_service.base_url
    await live_service.state.accounts.create_user(
        "boss", AGENT_PASSWORD, name="Bea Boss", role=Role.ADMIN
    )
    made: dict[str, Caller] = {
        ANON: Caller(ANON, {}, {}),
        API: Caller(API, live_service.headers(), {}),
    }
    async with aiohttp.ClientSession() as session:
        case = await live_service.create_case(session)
        join_token = _join_token(str(case["join_url"]))
        made[CUSTOMER] = Caller(CUSTOMER, {"Authorization": f"Bearer {join_token}"}, {})
        async with session.post(
            f"{base}/api/sites", json={"name": "Depot"}, headers=live_service.headers()
        ) as response:
            site = (await response.json())["site"]
        async with session.post(
            f"{base}/api/sites/{site['id']}/cameras",
            json={"name": "Dock", "kind": "phone"},
            headers=live_service.headers(),
        ) as response:
            camera = (await response.json())["camera"]
        async with session.post(
            f"{base}/api/cameras/{camera['id']}/tokens", json={}, headers=live_service.headers()
        ) as response:
            camera_token = (await response.json())["token"]
        made[CAMERA] = Caller(CAMERA, {"Authorization": f"Bearer {camera_token}"}, {})
    for name, username in ((AGENT, "agent"), (REVIEWER, "reviewer"), (ADMIN, "boss")):
        jar = aiohttp.CookieJar(unsafe=True)  # the service is on an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            await live_service.login(session, username, AGENT_PASSWORD)
            cookie = "; ".join(f"{c.key}={c.value}" for c in jar)
        assert cookie, f"no session cookie for {username}"
        made[name] = Caller(name, {"Cookie": cookie}, {})
    yield made


def _concrete(path: str) -> str:
    """Ids that name nothing: an allowed caller gets 404 or 400, never a real object."""
    return (
        path.replace("{id}", "nothing-here")
        .replace("{frame}", "f0")
        .replace("{capture}", "c0")
        .replace("{item}", "nothing-here")
        .replace("{name}", "video-1.webm")
        .replace("{token}", "t0")
        .replace("{case_id}", "nothing-here")
        .replace("{upload}", "u0")
    )


async def test_every_route_has_a_row(live_service: LiveService) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{live_service.base_url}/api/openapi.json") as response:
            document = await response.json()
    routes = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert routes == set(REST), (
        f"routes without a row: {sorted(routes - set(REST))}; "
        f"rows without a route: {sorted(set(REST) - routes)}"
    )


async def test_rest_routes_admit_exactly_the_callers_in_the_table(
    live_service: LiveService, callers: dict[str, Caller]
) -> None:
    wrong: list[str] = []
    for (method, path), allowed in sorted(REST.items()):
        url = f"{live_service.base_url}{_concrete(path)}"
        if path == "/api/evidence/consistency":
            url += "?first=1&second=1"
        for name, caller in callers.items():
            if path in ("/api/logout", "/api/logout-everywhere") or (
                path == "/api/login" and name != ANON
            ):
                continue  # would end the caller's session for the rows after it
            async with aiohttp.ClientSession(cookies=caller.cookies) as session:
                kwargs: dict[str, object] = {"headers": caller.headers}
                if method in ("POST", "PATCH"):
                    kwargs["json"] = {}
                async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
                    status = response.status
            refused = status in (401, 403)
            if name in allowed and refused:
                wrong.append(f"{method} {path}: {name} refused ({status})")
            if name not in allowed and not refused:
                wrong.append(f"{method} {path}: {name} admitted ({status})")
    assert not wrong, "\n".join(wrong)


async def _socket_codes(
    live_service: LiveService, caller: Caller, join: dict[str, object], messages: list[dict]
) -> list[str | None]:
    url = f"{live_service.base_url.replace('http', 'ws')}/ws"
    codes: list[str | None] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=caller.headers) as ws,
    ):
        await ws.send_str(json.dumps(join))
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert reply["type"] != "error", (caller.name, reply)
        for message in messages:
            await ws.send_str(json.dumps(message))
            # A message that is allowed may have no reply of its own: the pong after it says it
            # was taken; an error before the pong says it was not.
            await ws.send_str(json.dumps({"type": "ping", "nonce": "probe"}))
            while True:
                reply = json.loads((await ws.receive(timeout=5)).data)
                if reply["type"] == "error":
                    codes.append(reply.get("code"))
                    break
                if reply["type"] == "pong" and reply.get("nonce") == "probe":
                    codes.append(None)
                    break
    return codes


async def test_socket_messages_admit_exactly_the_callers_in_the_table(
    live_service: LiveService, callers: dict[str, Caller]
) -> None:
    async with aiohttp.ClientSession() as session:
        case = await live_service.create_case(session)
    join_token = _join_token(str(case["join_url"]))
    joins: dict[str, dict[str, object]] = {
        CUSTOMER: {"type": "join", "token": join_token},
        CAMERA: {
            "type": "join",
            "camera_token": callers[CAMERA].headers["Authorization"].split()[1],
        },
        AGENT: {"type": "join"},
        REVIEWER: {"type": "join"},
        ADMIN: {"type": "join"},
    }
    wrong: list[str] = []
    from typing import get_args

    from signaling.messages import ClientMessage

    union = get_args(get_args(ClientMessage)[0])
    types = {model.model_fields["type"].annotation.__args__[0] for model in union}
    assert types == set(WS_ALLOWED), f"message types without a row: {types ^ set(WS_ALLOWED)}"
    for message_type, allowed in WS_ALLOWED.items():
        probe = WS_PROBES[message_type]
        for name, join in joins.items():
            codes = await _socket_codes(live_service, callers[name], join, [probe])
            refused = codes[0] in ("forbidden", "unauthorized")
            if name in allowed and refused:
                wrong.append(f"{message_type}: {name} refused ({codes[0]})")
            if name not in allowed and not refused:
                wrong.append(f"{message_type}: {name} admitted ({codes[0]})")
    # A customer's link opens its own case only, never a site or another case.
    codes = []
    for join in (
        {"type": "join", "token": join_token, "site_id": "s1"},
        {"type": "join", "token": join_token, "case_id": "another-case"},
    ):
        url = f"{live_service.base_url.replace('http', 'ws')}/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(json.dumps(join))
            codes.append(json.loads((await ws.receive(timeout=5)).data).get("code"))
    assert codes == ["forbidden", "forbidden"], codes
    assert not wrong, "\n".join(wrong)
