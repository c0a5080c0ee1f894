"""Credentials that end: signing out (here and everywhere), an admin disabling an account or
changing its role or password, one's own password change, revoked and narrow API tokens, and
the sign-in throttle and API limit keyed on what was checked (the review's M6, M10, M3)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.accounts import Revocation, RevocationReason
from server.http.ratelimit import LoginThrottle, RateLimited, client_address

from .conftest import PASSWORD, Api

CASE = {"kind": "return", "customer_name": "Mia Example", "order_id": "ORD-7"}


async def _status(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    if code is None:
        return {}
    body: dict[str, Any] = await response.json()
    assert body["error"]["code"] == code, body
    return body


def _cookie(client: Any) -> str:
    return str(
        client.session.cookie_jar.filter_cookies(client.make_url("/"))["inspect_session"].value
    )


async def test_a_session_cookie_replayed_after_logout_is_refused(api: Api) -> None:
    agent = await api.agent
    stolen = _cookie(agent)
    anon = await api.anon
    assert (await anon.get("/api/me", cookies={"inspect_session": stolen})).status == 200
    await _status(await agent.post("/api/logout"), 204)
    # The review's replay: the value itself is dead, wherever it is sent from.
    await _status(await anon.get("/api/me", cookies={"inspect_session": stolen}), 401)
    # Logging out twice (or with no session) is fine.
    await _status(await anon.post("/api/logout"), 204)


async def test_logout_everywhere_ends_every_session_of_the_user(api: Api) -> None:
    laptop = await api.agent
    phone = await api.make_client(api.server)
    login = {"username": "alan", "password": PASSWORD}
    await _status(await phone.post("/api/login", json=login), 200)
    other_user = await api.reviewer
    await _status(await laptop.post("/api/logout-everywhere"), 204)
    await _status(await phone.get("/api/me"), 401, "unauthorized")
    await _status(await laptop.get("/api/me"), 401, "unauthorized")
    await _status(await other_user.get("/api/me"), 200)
    # An API token is no signed-in user.
    admin = await api.admin
    token = await (await admin.post("/api/tokens", json={"name": "x", "role": "admin"})).json()
    bearer = {"Authorization": f"Bearer {token['token']}"}
    await _status(await other_user.post("/api/logout-everywhere", headers=bearer), 403, "forbidden")


async def test_a_disabled_user_is_signed_out_and_cannot_sign_in(api: Api) -> None:
    agent = await api.agent
    admin = await api.admin
    alan = api.users["alan"].id
    changed = await admin.patch(f"/api/users/{alan}", json={"disabled": True})
    body = await _status(changed, 200)
    user = (await changed.json())["user"]
    assert (user["id"], user["disabled"], user["role"]) == (alan, True, "agent")
    assert body == {}
    await _status(await agent.get("/api/me"), 401, "unauthorized")
    anon = await api.anon
    login = {"username": "alan", "password": PASSWORD}
    await _status(await anon.post("/api/login", json=login), 401, "invalid_credentials")
    listed = (await (await admin.get("/api/users")).json())["users"]
    assert {u["username"]: u["disabled"] for u in listed} == {
        "ada": False,
        "alan": True,
        "rita": False,
    }
    await _status(await admin.patch(f"/api/users/{alan}", json={"disabled": False}), 200)
    await _status(await anon.post("/api/login", json=login), 200)


async def test_a_role_change_or_password_reset_ends_the_users_sessions(api: Api) -> None:
    admin = await api.admin
    rita = api.users["rita"].id
    reviewer = await api.reviewer
    await _status(await admin.patch(f"/api/users/{rita}", json={"role": "agent"}), 200)
    await _status(await reviewer.get("/api/me"), 401, "unauthorized")
    again = await api.make_client(api.server)
    await _status(
        await again.post("/api/login", json={"username": "rita", "password": PASSWORD}), 200
    )
    assert (await (await again.get("/api/me")).json())["user"]["role"] == "agent"

    reset = {"password": "a brand new password"}
    await _status(await admin.patch(f"/api/users/{rita}", json=reset), 200)
    await _status(await again.get("/api/me"), 401, "unauthorized")
    old = {"username": "rita", "password": PASSWORD}
    await _status(await again.post("/api/login", json=old), 401, "invalid_credentials")
    new = {"username": "rita", "password": "a brand new password"}
    await _status(await again.post("/api/login", json=new), 200)


async def test_user_changes_are_checked(api: Api) -> None:
    admin = await api.admin
    ada = api.users["ada"].id
    await _status(await admin.patch(f"/api/users/{ada}", json={}), 400, "invalid_request")
    await _status(await admin.patch("/api/users/u_nobody", json={"disabled": True}), 404)
    await _status(
        await admin.patch(f"/api/users/{ada}", json={"role": "customer"}), 400, "invalid_request"
    )
    short = await admin.patch(f"/api/users/{ada}", json={"password": "short"})
    await _status(short, 400, "invalid_request")
    # The only admin can neither be disabled nor demoted: nobody could manage accounts after.
    await _status(await admin.patch(f"/api/users/{ada}", json={"disabled": True}), 409, "conflict")
    await _status(await admin.patch(f"/api/users/{ada}", json={"role": "agent"}), 409, "conflict")
    await _status(await admin.get("/api/me"), 200)
    agent = await api.agent
    alan = api.users["alan"].id
    await _status(await agent.patch(f"/api/users/{alan}", json={"role": "admin"}), 403)
    await _status(await agent.get("/api/users"), 403)
    await _status(await agent.get("/api/tokens"), 403)


async def test_changing_ones_own_password_ends_the_other_sessions(api: Api) -> None:
    here = await api.agent
    elsewhere = await api.make_client(api.server)
    await _status(
        await elsewhere.post("/api/login", json={"username": "alan", "password": PASSWORD}), 200
    )
    wrong = {"old_password": "not the password", "new_password": "my new password"}
    await _status(await here.post("/api/me/password", json=wrong), 401, "invalid_credentials")
    short = {"old_password": PASSWORD, "new_password": "short"}
    await _status(await here.post("/api/me/password", json=short), 400, "invalid_request")
    right = {"old_password": PASSWORD, "new_password": "my new password"}
    await _status(await here.post("/api/me/password", json=right), 204)
    await _status(await here.get("/api/me"), 200)  # this browser got a new session
    await _status(await elsewhere.get("/api/me"), 401, "unauthorized")
    anon = await api.anon
    new = {"username": "alan", "password": "my new password"}
    await _status(await anon.post("/api/login", json=new), 200)


async def test_tokens_are_listed_without_their_secrets(api: Api) -> None:
    admin = await api.admin
    made = await (await admin.post("/api/tokens", json={"name": "shop"})).json()
    await _status(await admin.delete(f"/api/tokens/{made['id']}"), 204)
    response = await admin.get("/api/tokens")
    text = await response.text()
    assert made["token"] not in text
    (listed,) = (await response.json())["tokens"]
    assert listed["id"] == made["id"] and listed["name"] == "shop"
    assert listed["role"] == "integration"  # the default (M10)
    assert listed["created_by"] == api.users["ada"].id and listed["revoked_at"] is not None


async def test_an_integration_token_only_creates_cases_mints_links_and_reads_cases(
    api: Api,
) -> None:
    admin = await api.admin
    made = await (await admin.post("/api/tokens", json={"name": "shop"})).json()
    bearer = {"Authorization": f"Bearer {made['token']}"}
    anon = await api.anon
    me = (await (await anon.get("/api/me", headers=bearer)).json())["user"]
    assert me == {"id": made["id"], "username": None, "name": "shop", "role": "integration"}
    created = await anon.post("/api/cases", json=CASE, headers=bearer)
    await _status(created, 201)
    case_id = (await created.json())["case"]["id"]
    await _status(await anon.get("/api/cases", headers=bearer), 200)
    await _status(await anon.get(f"/api/cases/{case_id}", headers=bearer), 200)
    await _status(await anon.post(f"/api/cases/{case_id}/join-link", headers=bearer), 201)
    # What the review's admin-by-default token could do, refused before any handler runs.
    new_admin = {
        "username": "backdoor",
        "password": "long enough now",
        "name": "B",
        "role": "admin",
    }
    for method, path, body in [
        ("POST", "/api/users", new_admin),
        ("GET", "/api/users", None),
        ("POST", "/api/tokens", {"name": "more", "role": "admin"}),
        ("GET", "/api/webhooks", None),
        ("POST", "/api/webhooks", {"url": "http://127.0.0.1:1/"}),
        ("POST", f"/api/cases/{case_id}/accept", None),
        ("POST", f"/api/cases/{case_id}/close", None),
        ("GET", "/api/evidence", None),
    ]:
        response = await anon.request(method, path, json=body, headers=bearer)
        await _status(response, 403, "forbidden")
    assert await api.services.accounts.find_user("backdoor") is None
    # An admin token is only made when asked for.
    asked = await (await admin.post("/api/tokens", json={"name": "ops", "role": "admin"})).json()
    ops = {"Authorization": f"Bearer {asked['token']}"}
    await _status(await anon.get("/api/users", headers=ops), 200)


async def test_route_changes_are_announced_for_open_sockets(api: Api) -> None:
    heard: list[Revocation] = []

    async def listener(revocation: Revocation) -> None:
        heard.append(revocation)

    api.services.accounts.add_revocation_listener(listener)
    agent = await api.agent
    caller = await api.services.auth.accounts.authenticate(None, _cookie(agent))
    assert caller is not None
    await _status(await agent.post("/api/logout"), 204)
    admin = await api.admin
    alan = api.users["alan"].id
    await _status(await admin.patch(f"/api/users/{alan}", json={"disabled": True}), 200)
    token = await (await admin.post("/api/tokens", json={"name": "t"})).json()
    await _status(await admin.delete(f"/api/tokens/{token['id']}"), 204)
    assert [(r.subject, r.reason, r.session_id) for r in heard] == [
        (alan, RevocationReason.SIGNED_OUT, caller.credential_id),
        (alan, RevocationReason.DISABLED, None),
        (f"token:{token['id']}", RevocationReason.TOKEN_REVOKED, None),
    ]


def _from(remote: str, forwarded: str | None = None) -> web.BaseRequest:
    transport = SimpleNamespace(get_extra_info=lambda name, default=None: (remote, 40000))
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return make_mocked_request("POST", "/api/login", headers=headers, transport=transport)


def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    proxies = ("127.0.0.1", "10.0.0.0/8")
    # Straight from a client: whatever it claims is ignored.
    assert client_address(_from("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    assert client_address(_from("203.0.113.9", "198.51.100.1"), proxies) == "203.0.113.9"
    # Through the proxy: the hop the proxy saw, not what the client put in front of it.
    assert client_address(_from("127.0.0.1", "198.51.100.1"), proxies) == "198.51.100.1"
    assert client_address(_from("127.0.0.1", "6.6.6.6, 198.51.100.1"), proxies) == "198.51.100.1"
    assert (
        client_address(_from("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3"), proxies)
        == "198.51.100.1"
    )
    assert client_address(_from("127.0.0.1"), proxies) == "127.0.0.1"
    assert client_address(_from("127.0.0.1", "198.51.100.1")) == "127.0.0.1"  # none trusted
    assert client_address(_from("127.0.0.1", "198.51.100.1"), ("not-an-address",)) == "127.0.0.1"


async def test_failures_on_one_name_slow_it_down_without_locking_it(api: Api) -> None:
    throttle = LoginThrottle(failures_per_min=3, base_delay_s=0.01, max_delay_s=0.05)
    # Many addresses, one name: none of them is refused ...
    for n in range(8):
        async with throttle.attempt(f"198.51.100.{n}", "Admin") as failed:
            failed()
    # ... the name is slowed down for everyone (the real user too, but only slowed) ...
    assert 0 < throttle.delay_for("admin") <= 0.05
    assert throttle.delay_for("someone-else") == 0
    async with throttle.attempt("203.0.113.1", "admin"):
        pass
    # ... while one address failing on one name is stopped.
    for _ in range(3):
        async with throttle.attempt("192.0.2.1", "bob") as failed:
            failed()
    with pytest.raises(RateLimited):
        async with throttle.attempt("192.0.2.1", "bob"):
            pass


async def test_concurrent_password_checks_are_capped() -> None:
    throttle = LoginThrottle(failures_per_min=10, max_concurrent=1, max_waiting=1)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_check() -> None:
        async with throttle.attempt("192.0.2.1", "a"):
            entered.set()
            await release.wait()

    first = asyncio.create_task(slow_check())
    await entered.wait()
    second = asyncio.create_task(slow_check())  # waits for the one slot
    await asyncio.sleep(0)
    with pytest.raises(RateLimited):
        async with throttle.attempt("192.0.2.2", "b"):
            pass
    release.set()
    await asyncio.gather(first, second)


async def test_login_lockout_ignores_a_forged_forwarded_for(api: Api) -> None:
    anon = await api.anon
    wrong = {"username": "ada", "password": "wrong password"}
    limit = api.settings.login_failures_per_min
    statuses = []
    # Each attempt claims another address; none is believed (no trusted proxy), so the
    # attempts share one bucket and stop (a few more than the limit: the bucket refills while
    # each password is checked).
    for n in range(limit + 4):
        forged = {"X-Forwarded-For": f"198.51.100.{n}"}
        statuses.append((await anon.post("/api/login", json=wrong, headers=forged)).status)
    assert statuses[:limit] == [401] * limit and statuses[-1] == 429
