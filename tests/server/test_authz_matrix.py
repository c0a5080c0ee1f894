"""The authorisation matrix as data: who may do what, to which object, and what they get.

Each :class:`Row` is one cell: an operation (an HTTP method and the route's OpenAPI path),
a :class:`Principal`, the :class:`Target` the path's ids name, and the :class:`Expect`\\ ed
answer. The table runs against the whole service (``live_service``), and
:func:`test_every_route_has_rows` fails when a route of the app's table has no row, so a new
route cannot ship without saying who may call it.

Objects are relative to the principal ``agent``: ``HELD`` is a case in its call held by
``agent``, so for ``other-agent`` and ``agent-token`` it is another agent's case; ``WAITING``
is a customer waiting that nobody accepted. A case target is made fresh for every row, so a
row that decides or closes never changes what another row sees.

Extension point: the table format is transport-agnostic. A WebSocket row is a ``Row`` whose
``method`` is :data:`WS` and whose ``path`` is the message type (``"join"``, ``"offer"``...);
:func:`rest_rows` leaves those out, and a suite in ``tests/signaling/`` builds its own rows
with the same types and runs them over ``/ws``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import aiohttp
import pytest

from server.cases import (
    Cosmetic,
    Functional,
    NewCase,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
)
from server.cases.model import CaseKind
from server.http import api_routes
from server.settings import Settings
from signaling import Identity, Role
from tests.conftest import AGENT_PASSWORD, LiveService

__all__ = ["WS", "Expect", "Principal", "Row", "Target", "rest_rows"]

WS = "WS"
REASON_HEADER = "X-Inspect-Reason"
REASON = "matrix: checking the override is logged"


class Principal(StrEnum):
    ANON = "anonymous"
    CUSTOMER = "customer"  # a valid join token, sent as a bearer token
    CAMERA = "camera-token"
    AGENT = "agent"
    OTHER_AGENT = "other-agent"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    ADMIN_TOKEN = "admin-token"
    AGENT_TOKEN = "agent-token"


class Target(StrEnum):
    #: No object, or ids that name nothing (an allowed caller gets 404 or 400).
    NONE = "none"
    CREATED = "created"
    WAITING = "waiting"
    #: In its call, held by ``agent``.
    HELD = "held"
    #: Decided by ``agent``, who held it.
    DECIDED = "decided"
    CAMERA = "camera"


class Status(StrEnum):
    OK = "2xx"
    #: Through every check of who may: the route's own answer (not 401/403, not a state refusal).
    PASS = "pass"
    UNAUTHORIZED = "401"
    FORBIDDEN = "403"
    NOT_FOUND = "404"
    #: 409 ``invalid_state``: the case's state rules the action out.
    STATE = "409"


@dataclass(frozen=True, slots=True)
class Expect:
    status: Status
    #: An admin override: without an ``X-Inspect-Reason`` header 403; with one ``status``, and
    #: the case's timeline holds the override with that reason.
    reason: bool = False

    def __str__(self) -> str:
        return f"{self.status.value} with a reason" if self.reason else self.status.value


@dataclass(frozen=True, slots=True)
class Row:
    method: str
    path: str
    principal: Principal
    target: Target
    expect: Expect
    body: Mapping[str, Any] | None = field(default=None, compare=False)


P = Principal
OK, PASS = Expect(Status.OK), Expect(Status.PASS)
E401, E403, E404, E409 = (Expect(s) for s in (Status.UNAUTHORIZED, Status.FORBIDDEN,
                                              Status.NOT_FOUND, Status.STATE))  # fmt: skip
OK_WITH_REASON, PASS_WITH_REASON = Expect(Status.OK, True), Expect(Status.PASS, True)
STATE_WITH_REASON = Expect(Status.STATE, True)

OUTSIDERS = (P.ANON, P.CUSTOMER, P.CAMERA)
AGENTS = (P.AGENT, P.OTHER_AGENT, P.AGENT_TOKEN)
ADMINS = (P.ADMIN, P.ADMIN_TOKEN)
STAFF = (*AGENTS, P.REVIEWER, *ADMINS)
#: Staff signed in with a session (no API token).
SIGNED_IN = (P.AGENT, P.OTHER_AGENT, P.REVIEWER, P.ADMIN)

FACTS = {"cosmetic": "light_wear", "functional": "works", "packaging": "intact",
         "accessories_complete": True}  # fmt: skip
REFUND = {"decision": "refund", "facts": FACTS}


def cells(
    method: str,
    path: str,
    target: Target,
    expect: Mapping[Principal, Expect],
    *,
    others: Expect | None = None,
    body: Mapping[str, Any] | None = None,
) -> list[Row]:
    """One row per principal: ``expect`` for those it names, ``others`` for the rest (and the
    callers with no staff credential get 401 unless named)."""
    rows = []
    for principal in Principal:
        if principal in expect:
            want = expect[principal]
        elif principal in OUTSIDERS:
            want = E401
        elif others is not None:
            want = others
        else:
            raise ValueError(f"{method} {path} {target}: no expectation for {principal}")
        rows.append(Row(method, path, principal, target, want, body))
    return rows


def by_role(method: str, path: str, allowed: Iterable[Principal], target: Target = Target.NONE,
            *, body: Mapping[str, Any] | None = None) -> list[Row]:  # fmt: skip
    """A route decided by role alone: ``allowed`` pass, other staff 403, outsiders 401."""
    allowed = set(allowed)
    return cells(method, path, target, dict.fromkeys(allowed, PASS), others=E403, body=body)


def public(method: str, path: str) -> list[Row]:
    return cells(method, path, Target.NONE, dict.fromkeys(Principal, PASS))


def holder_only(method: str, path: str, held: Expect, body: Mapping[str, Any] | None = None,
                *, admin_on_waiting: Expect = E409) -> list[Row]:  # fmt: skip
    """A route that acts on a case's call: only ``agent`` on its held case (``held``), admins
    with a reason; on a case nobody accepted the agents get 409."""
    override = Expect(held.status, True)
    return [
        *cells(method, path, Target.HELD,
               {P.AGENT: held, P.OTHER_AGENT: E403, P.AGENT_TOKEN: E403, P.REVIEWER: E403,
                P.ADMIN: override, P.ADMIN_TOKEN: override}, body=body),
        *cells(method, path, Target.WAITING,
               {P.AGENT: E409, P.OTHER_AGENT: E409, P.AGENT_TOKEN: E409, P.REVIEWER: E403,
                P.ADMIN: admin_on_waiting, P.ADMIN_TOKEN: admin_on_waiting}, body=body),
    ]  # fmt: skip


CASE = "/api/cases/{id}"
TABLE: list[Row] = [
    # -- accounts and sessions (logout and logout-everywhere run last) -------------------------
    *public("POST", "/api/login"),
    *public("POST", "/api/logout"),
    *by_role("POST", "/api/logout-everywhere", SIGNED_IN),
    *by_role("GET", "/api/me", STAFF),
    *by_role("POST", "/api/me/password", SIGNED_IN),
    *by_role("GET", "/api/users", ADMINS),
    *by_role("POST", "/api/users", ADMINS),
    *by_role("PATCH", "/api/users/{id}", ADMINS),
    *by_role("GET", "/api/tokens", ADMINS),
    *by_role("POST", "/api/tokens", ADMINS),
    *by_role("DELETE", "/api/tokens/{id}", ADMINS),
    *by_role("GET", "/api/webhooks", ADMINS),
    *by_role("POST", "/api/webhooks", ADMINS),
    *by_role("DELETE", "/api/webhooks/{id}", ADMINS),
    # -- cases: reading is for all staff, by design ---------------------------------------------
    *by_role("POST", "/api/cases", (*AGENTS, *ADMINS)),
    *by_role("GET", "/api/cases", STAFF),
    *cells("GET", CASE, Target.HELD, dict.fromkeys(STAFF, OK)),
    *by_role("GET", CASE, STAFF),
    *cells("GET", f"{CASE}/evidence", Target.HELD, dict.fromkeys(STAFF, OK)),
    *by_role("POST", f"{CASE}/accept", (*AGENTS, *ADMINS), Target.WAITING),
    # -- join links: only while the customer is not in a call, for whoever takes calls ---------
    *cells("POST", f"{CASE}/join-link", Target.CREATED,
           {**dict.fromkeys((*AGENTS, *ADMINS), OK), P.REVIEWER: E403}),
    *cells("POST", f"{CASE}/join-link", Target.WAITING,
           {**dict.fromkeys((*AGENTS, *ADMINS), OK), P.REVIEWER: E403}),
    *cells("POST", f"{CASE}/join-link", Target.HELD,
           {**dict.fromkeys((*AGENTS, *ADMINS), E409), P.REVIEWER: E403}),
    *cells("POST", f"{CASE}/join-link", Target.DECIDED,
           {**dict.fromkeys((*AGENTS, *ADMINS), E409), P.REVIEWER: E403}),
    # -- the holder's actions --------------------------------------------------------------------
    *holder_only("POST", f"{CASE}/decision", OK, REFUND, admin_on_waiting=OK_WITH_REASON),
    *cells("POST", f"{CASE}/close", Target.DECIDED,
           {P.AGENT: OK, P.OTHER_AGENT: E403, P.AGENT_TOKEN: E403, P.REVIEWER: E403,
            P.ADMIN: OK_WITH_REASON, P.ADMIN_TOKEN: OK_WITH_REASON}),
    *cells("POST", f"{CASE}/close", Target.WAITING,
           {**dict.fromkeys(AGENTS, E409), P.REVIEWER: E403,
            P.ADMIN: STATE_WITH_REASON, P.ADMIN_TOKEN: STATE_WITH_REASON}),
    # No media in this service: the holder gets through to "nothing to record" (409 conflict).
    *holder_only("POST", f"{CASE}/captures", PASS, {}),
    *holder_only("POST", f"{CASE}/captures/{{capture}}/stop", PASS),
    *holder_only("POST", f"{CASE}/captures/last", PASS, {"seconds": 1}),
    *holder_only("POST", f"{CASE}/snapshots", PASS, {}),
    *cells("POST", f"{CASE}/snapshots", Target.DECIDED,
           {P.AGENT: E409, P.OTHER_AGENT: E403, P.AGENT_TOKEN: E403, P.REVIEWER: E403,
            P.ADMIN: E409, P.ADMIN_TOKEN: E409}, body={}),
    # -- live grading: the holder's, and the case first (I2) -------------------------------------
    *holder_only("GET", f"{CASE}/assessment", OK),
    *holder_only("GET", f"{CASE}/frames/{{frame}}", PASS),  # no frame without media: 404
    *cells("GET", f"{CASE}/assessment", Target.NONE,
           {**dict.fromkeys((*AGENTS, *ADMINS), E404), P.REVIEWER: E403}),
    *cells("GET", f"{CASE}/frames/{{frame}}", Target.NONE,
           {**dict.fromkeys((*AGENTS, *ADMINS), E404), P.REVIEWER: E403}),
    *by_role("POST", "/api/grading/derive", STAFF, body=FACTS),
    # -- captions: the transcript is part of the case (all staff read it); switching is the
    # holder's; the canned phrases are for whoever takes calls --------------------------------
    *cells("GET", f"{CASE}/transcript", Target.HELD, dict.fromkeys(STAFF, OK)),
    *by_role("GET", f"{CASE}/transcript", STAFF),
    *holder_only("PUT", f"{CASE}/captions", OK, {"enabled": False}),
    *by_role("GET", "/api/phrases", (*AGENTS, *ADMINS)),
    # -- the inspection tools: the holder's; the customer's own routes take a join token -------
    # No media here: a freeze gets through to "no frame has arrived" (409 conflict), the rest
    # to "no such frame / still" (404).
    *holder_only("POST", f"{CASE}/frozen", PASS),
    *holder_only("GET", f"{CASE}/frozen/{{frame}}", PASS),
    *holder_only("POST", f"{CASE}/frozen/{{frame}}/release", PASS, {}),
    *holder_only("GET", f"{CASE}/stills/{{item}}", PASS),
    # The customer's token names another case than these ids: through to 404. Staff
    # credentials are no join token: 401.
    *cells("GET", "/join/c/{case_id}/frozen/{frame}", Target.NONE, {P.CUSTOMER: PASS},
           others=E401),
    *cells("POST", "/join/c/{case_id}/uploads", Target.NONE, {P.CUSTOMER: PASS}, others=E401,
           body={"size": 10, "content_type": "image/jpeg"}),
    *cells("HEAD", "/join/c/{case_id}/uploads/{upload}", Target.NONE, {P.CUSTOMER: PASS},
           others=E401),
    *cells("PATCH", "/join/c/{case_id}/uploads/{upload}", Target.NONE, {P.CUSTOMER: PASS},
           others=E401),
    # -- returns operations: rules are read by staff, saved and tried by admins; the verified
    # reason is the holder's; a held refund is approved by whoever takes calls (the route
    # refuses the one who decided); the customer's intake takes a join token -----------------
    *by_role("GET", "/api/returns/reasons", STAFF),
    *by_role("GET", "/api/returns/rules", STAFF),
    *by_role("GET", "/api/returns/rules/versions", STAFF),
    *by_role("GET", "/api/returns/rules/versions/{id}", STAFF),
    *by_role("PUT", "/api/returns/rules", ADMINS, body={"rules": [], "alerts": []}),
    *by_role("POST", "/api/returns/rules/dry-run", ADMINS, body={}),
    *holder_only("POST", f"{CASE}/reason", OK, {"verified_reason": "defective"},
                 admin_on_waiting=OK_WITH_REASON),
    *cells("POST", f"{CASE}/approve", Target.HELD,
           {**dict.fromkeys((*AGENTS, *ADMINS), E409), P.REVIEWER: E403}, body={}),
    *cells("POST", "/join/c/{case_id}/offers", Target.NONE, {P.CUSTOMER: PASS}, others=E401,
           body={"reason": "defective"}),
    *cells("POST", "/join/c/{case_id}/intake", Target.NONE, {P.CUSTOMER: PASS}, others=E401,
           body={"reason": "defective"}),
    # -- returns analytics: staff read; admins upload sales -------------------------------------
    *by_role("GET", "/api/analytics/summary", STAFF),
    *by_role("GET", "/api/analytics/returns", STAFF),
    *by_role("GET", "/api/analytics/returns.csv", STAFF),
    *by_role("GET", "/api/analytics/top-products", STAFF),
    *by_role("GET", "/api/analytics/chart.svg", STAFF),
    *by_role("GET", "/api/analytics/alerts", STAFF),
    *by_role("POST", "/api/analytics/sales", ADMINS,
             body={"rows": [{"day": "2026-11-01", "sku": "SKU-1", "units": 3}]}),
    # -- the evidence archive --------------------------------------------------------------------
    *by_role("GET", "/api/evidence", (P.REVIEWER, *ADMINS)),
    *public("GET", "/api/evidence/tree-head"),
    *public("GET", "/api/evidence/consistency"),
    *public("GET", "/api/evidence/public-key"),
    *by_role("POST", "/api/evidence/export", (P.REVIEWER, *ADMINS)),
    *by_role("POST", "/api/evidence/{item}/view", (P.REVIEWER, *ADMINS)),
    *by_role("POST", "/api/evidence/{item}/redactions", (P.REVIEWER, *ADMINS),
             body={"reason": "share with the carrier"}),
    *by_role("POST", "/api/evidence/{item}/files/{name}/read", (P.REVIEWER, *ADMINS)),
    *by_role("GET", "/api/evidence/{item}/files/{name}", (P.REVIEWER, *ADMINS)),
    *by_role("POST", "/api/evidence/{item}/hold", (P.REVIEWER, *ADMINS)),
    *by_role("POST", "/api/evidence/{item}/release", ADMINS),
    *by_role("DELETE", "/api/evidence/{item}", (P.REVIEWER, *ADMINS)),
    # -- sites and cameras: any camera for whoever takes calls, by design ------------------------
    *by_role("GET", "/api/sites", STAFF),
    *by_role("POST", "/api/sites", ADMINS),
    *by_role("GET", "/api/sites/{id}", STAFF),
    *by_role("PATCH", "/api/sites/{id}", ADMINS),
    *by_role("DELETE", "/api/sites/{id}", ADMINS),
    *by_role("POST", "/api/sites/{id}/cameras", ADMINS),
    *by_role("GET", "/api/sites/{id}/evidence", (*AGENTS, P.REVIEWER, *ADMINS)),
    *cells("GET", "/api/cameras/{id}", Target.CAMERA, dict.fromkeys(STAFF, OK)),
    *by_role("PATCH", "/api/cameras/{id}", ADMINS),
    *by_role("DELETE", "/api/cameras/{id}", ADMINS),
    *by_role("GET", "/api/cameras/{id}/tokens", ADMINS, Target.CAMERA),
    *by_role("POST", "/api/cameras/{id}/tokens", ADMINS),
    *by_role("DELETE", "/api/cameras/{id}/tokens/{token}", ADMINS),
    *by_role("POST", "/api/cameras/{id}/captures", (*AGENTS, *ADMINS), Target.CAMERA, body={}),
    *by_role("POST", "/api/cameras/{id}/captures/{capture}/stop", (*AGENTS, *ADMINS),
             Target.CAMERA),
    *by_role("POST", "/api/cameras/{id}/captures/last", (*AGENTS, *ADMINS), Target.CAMERA,
             body={}),
    *by_role("POST", "/api/cameras/{id}/snapshots", (*AGENTS, *ADMINS), Target.CAMERA, body={}),
    # -- operations ------------------------------------------------------------------------------
    *public("GET", "/healthz"),
    *public("GET", "/metrics"),  # the tests call from this host
    *public("GET", "/api/openapi.json"),
]  # fmt: skip

#: Rows that end the caller's session run after every other row, in this order (a logout after
#: "log out everywhere" is answered with or without a session).
_LAST = {("POST", "/api/logout-everywhere"): 1, ("POST", "/api/logout"): 2}


def rest_rows(table: Iterable[Row] = TABLE) -> list[Row]:
    """The HTTP rows of ``table``, those that end a session last."""
    rows = [row for row in table if row.method != WS]
    return sorted(rows, key=lambda row: _LAST.get((row.method, row.path), 0))


# -- running it -----------------------------------------------------------------------------------


@dataclass
class Caller:
    headers: dict[str, str]
    #: The id ``GET /api/me`` gives (staff); overrides in the timeline end with it.
    me: str | None = None


@dataclass
class World:
    live: LiveService
    callers: dict[Principal, Caller]
    holder: Identity
    camera_id: str
    serial: itertools.count[int] = field(default_factory=itertools.count)

    async def target(self, target: Target) -> str:
        """A fresh object of ``target``'s kind: its id for the path."""
        if target is Target.NONE:
            return "nothing-here"
        if target is Target.CAMERA:
            return self.camera_id
        cases = self.live.state.cases
        case = await cases.create(
            NewCase(CaseKind.RETURN, f"Matrix {next(self.serial)}"), actor="matrix"
        )
        if target is Target.CREATED:
            return case.id
        await cases.customer_arrived(case.id)
        if target is Target.WAITING:
            return case.id
        # Taken through the case service, as the hub's accept does once the customer is in.
        await cases.accept(case.id, self.holder)
        if target is Target.DECIDED:
            facts = ReturnFacts(Cosmetic.LIGHT_WEAR, Functional.WORKS, Packaging.INTACT, True)
            verdict = ReturnVerdict(ReturnDecision.REFUND, facts)
            await cases.decide(case.id, verdict, actor=self.holder.subject)
        return case.id


@pytest.fixture
def service_settings(service_settings: Settings) -> Settings:
    """The matrix makes several hundred calls without a credential from one address: more than
    the per-address burst allows (the rate limit has its own tests in test_rate_limits.py)."""
    return replace(service_settings, api_burst=100_000)


@pytest.fixture
async def world(live_service: LiveService) -> World:
    base = live_service.base_url
    state = live_service.state
    await state.accounts.create_user("boss", AGENT_PASSWORD, name="Bea Boss", role=Role.ADMIN)
    agent_token, _ = await state.accounts.create_api_token("matrix bot", role=Role.AGENT)
    admin = {"Authorization": f"Bearer {live_service.admin_token}"}
    callers: dict[Principal, Caller] = {
        P.ANON: Caller({}),
        P.ADMIN_TOKEN: Caller(admin),
        P.AGENT_TOKEN: Caller({"Authorization": f"Bearer {agent_token}"}),
    }
    async with aiohttp.ClientSession() as session:
        created = await live_service.create_case(session)
        callers[P.CUSTOMER] = Caller({"Authorization": f"Bearer {created['join_token']}"})
        async with session.post(f"{base}/api/sites", json={"name": "Depot"}, headers=admin) as r:
            site = (await r.json())["site"]
        async with session.post(
            f"{base}/api/sites/{site['id']}/cameras",
            json={"name": "Dock", "kind": "phone"},
            headers=admin,
        ) as r:
            camera = (await r.json())["camera"]
        async with session.post(
            f"{base}/api/cameras/{camera['id']}/tokens", json={}, headers=admin
        ) as r:
            callers[P.CAMERA] = Caller({"Authorization": f"Bearer {(await r.json())['token']}"})
    for principal, username in (
        (P.AGENT, "agent"),
        (P.OTHER_AGENT, "agent2"),
        (P.REVIEWER, "reviewer"),
        (P.ADMIN, "boss"),
    ):
        jar = aiohttp.CookieJar(unsafe=True)  # the service is on an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            await live_service.login(session, username, AGENT_PASSWORD)
            cookie = "; ".join(f"{c.key}={c.value}" for c in jar)
        callers[principal] = Caller({"Cookie": cookie})
    async with aiohttp.ClientSession() as session:
        for caller in callers.values():
            async with session.get(f"{base}/api/me", headers=caller.headers) as r:
                if r.status == 200:
                    caller.me = (await r.json())["user"]["id"]
    agent = await state.accounts.find_user("agent")
    assert agent is not None
    holder = Identity(subject=agent.id, name=agent.name, role=Role.AGENT)
    return World(live_service, callers, holder, camera["id"])


def _concrete(path: str, object_id: str) -> str:
    return (
        path.replace("{id}", object_id)
        .replace("{frame}", "1")
        .replace("{capture}", "c0")
        .replace("{item}", "0" * 32)
        .replace("{name}", "video-1.webm")
        .replace("{token}", "t0")
        .replace("{case_id}", object_id)
        .replace("{upload}", "u0")
    )


def _matches(status: Status, code: int, error: str | None) -> bool:
    if status is Status.OK:
        return 200 <= code < 300
    if status is Status.PASS:
        return code not in (401, 403) and not (code == 409 and error == "invalid_state")
    if status is Status.STATE:
        return code == 409 and error == "invalid_state"
    return code == int(status.value)


async def _call(
    session: aiohttp.ClientSession, url: str, row: Row, headers: dict[str, str]
) -> tuple[int, str | None, str]:
    body = row.body if row.body is not None else ({} if row.method in ("POST", "PATCH") else None)
    async with session.request(row.method, url, json=body, headers=headers) as response:
        text = await response.text()
        error = None
        # A HEAD answer has no body to name its error: its status says it.
        if text and response.content_type == "application/json" and response.status >= 400:
            error = (await response.json()).get("error", {}).get("code")
        return response.status, error, text


async def _check(session: aiohttp.ClientSession, world: World, row: Row) -> str | None:
    """What is wrong with ``row`` (``None``: it holds)."""
    object_id = await world.target(row.target)
    url = f"{world.live.base_url}{_concrete(row.path, object_id)}"
    if row.path == "/api/evidence/consistency":
        url += "?first=1&second=1"
    caller = world.callers[row.principal]
    label = f"{row.method} {row.path} [{row.target}] as {row.principal}: want {row.expect}"
    if row.expect.reason:
        code, error, text = await _call(session, url, row, caller.headers)
        if code != 403 or REASON_HEADER not in text:
            return f"{label}; without a reason got {code} {text[:200]}"
    headers = {**caller.headers, REASON_HEADER: REASON} if row.expect.reason else caller.headers
    code, error, text = await _call(session, url, row, headers)
    if not _matches(row.expect.status, code, error):
        return f"{label}; got {code} {text[:200]}"
    if row.expect.reason and row.target is not Target.NONE and row.target is not Target.CAMERA:
        events = await world.live.state.cases.events(object_id)
        logged = [
            e
            for e in events
            if e.type == "case.access_override"
            and e.data.get("reason") == REASON
            and caller.me is not None
            and e.actor.endswith(caller.me)
        ]
        if not logged:
            return f"{label}; no override with the reason in the timeline"
    return None


async def test_every_route_has_rows() -> None:
    """Every route of the app's table has a row for every principal, and every row a route."""
    routes = {(r.method, r.path) for r in api_routes()} | {("GET", "/api/openapi.json")}
    covered: dict[tuple[str, str], set[Principal]] = {}
    for row in rest_rows():
        covered.setdefault((row.method, row.path), set()).add(row.principal)
    missing = sorted(routes - set(covered))
    assert not missing, f"routes with no row in the matrix: {missing}"
    extra = sorted(set(covered) - routes)
    assert not extra, f"rows for routes the app does not have: {extra}"
    partial = {op: set(Principal) - seen for op, seen in covered.items() if seen != set(Principal)}
    assert not partial, f"routes missing principals: {partial}"
    assert len(set(TABLE)) == len(TABLE), "a cell is in the table twice"


async def test_the_service_answers_as_the_matrix_says(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = [problem for row in rest_rows() if (problem := await _check(session, world, row))]
    assert not wrong, f"{len(wrong)} cells differ:\n" + "\n".join(wrong)
