"""The REST API through a real aiohttp server: cases, decisions, roles, errors."""

from __future__ import annotations

from typing import Any

from server.http.cases import (
    CaseCreatedResponse,
    CaseDetailResponse,
    CaseListResponse,
    CaseResponse,
)
from signaling.errors import SignalingErrorCode

from .conftest import PASSWORD, Api

RETURN_CASE = {
    "kind": "return",
    "customer_name": "Mia Example",
    "customer_contact": "mia@example.com",
    "order_id": "ORD-1001",
    "sku": "SKU-42",
    "reason": "arrived scratched",
    "tracking_number": "LX123456789CN",
}

FACTS = {
    "cosmetic": "light_wear",
    "functional": "works",
    "packaging": "damaged",
    "accessories_complete": True,
}


async def _create(api: Api, body: dict[str, Any] | None = None) -> dict[str, Any]:
    client = await api.agent
    response = await client.post("/api/cases", json=body or RETURN_CASE)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


async def test_create_case_returns_a_join_link_for_that_case_only(api: Api) -> None:
    created = await _create(api)
    CaseCreatedResponse.model_validate(created)
    case = created["case"]
    assert case["state"] == "created"
    assert case["order_id"] == "ORD-1001"
    assert case["created_at"].endswith("Z")
    token = created["join_token"]
    assert created["join_url"] == f"http://inspect.test/join#t={token}"
    identity = api.services.accounts.verify_join_token(token)
    assert identity.case_id == case["id"]
    assert identity.role == "customer"

    other = await _create(api)
    assert api.services.accounts.verify_join_token(other["join_token"]).case_id != case["id"]

    detail = await (await api.agent).get(f"/api/cases/{case['id']}")
    body = await detail.json()
    CaseDetailResponse.model_validate(body)
    assert [e["type"] for e in body["events"]] == ["case.created", "case.join_link"]
    assert token not in await detail.text()  # the timeline never holds the token


async def test_fresh_join_link(api: Api) -> None:
    case = (await _create(api))["case"]
    response = await (await api.agent).post(f"/api/cases/{case['id']}/join-link")
    assert response.status == 201
    link = await response.json()
    assert api.services.accounts.verify_join_token(link["join_token"]).case_id == case["id"]
    missing = await (await api.agent).post("/api/cases/nope/join-link")
    await _error(missing, 404, "not_found")


async def test_list_cases_filters_by_state_newest_first(api: Api) -> None:
    first = (await _create(api))["case"]["id"]
    second = (await _create(api))["case"]["id"]
    third = (await _create(api))["case"]["id"]
    await api.services.cases.customer_arrived(second)
    client = await api.reviewer
    everything = await (await client.get("/api/cases")).json()
    CaseListResponse.model_validate(everything)
    assert [c["id"] for c in everything["cases"]] == [third, second, first]
    waiting = await (await client.get("/api/cases", params={"state": "waiting"})).json()
    assert [c["id"] for c in waiting["cases"]] == [second]
    created = await (await client.get("/api/cases?state=created")).json()
    assert [c["id"] for c in created["cases"]] == [third, first]
    error = await _error(await client.get("/api/cases?state=bogus"), 400, "invalid_request")
    assert "state" in error["message"]


async def test_return_decision_flow_and_state_checks(api: Api) -> None:
    case_id = (await _create(api))["case"]["id"]
    agent = await api.agent
    url = f"/api/cases/{case_id}/decision"
    decision = {"decision": "refund", "facts": FACTS}

    # created: the customer never showed up, nothing to decide yet
    await _error(await agent.post(url, json=decision), 409, "invalid_state")
    await _error(await agent.post(f"/api/cases/{case_id}/close"), 409, "invalid_state")

    await api.services.cases.customer_arrived(case_id)
    accepted = await agent.post(f"/api/cases/{case_id}/accept")
    assert accepted.status == 200, await accepted.text()
    body = CaseResponse.model_validate(await accepted.json())
    assert body.case.state == "in_call"
    assert body.case.agent_id == api.users["alan"].id

    error = await _error(
        await agent.post(url, json={"decision": "partial_refund", "facts": FACTS}),
        400,
        "invalid_request",
    )
    assert "refund_amount" in error["message"]
    assert error["fields"] == ["refund_amount"]
    error = await _error(
        await agent.post(
            url, json={"decision": "partial_refund", "refund_amount": -5, "facts": FACTS}
        ),
        400,
        "invalid_request",
    )
    assert error["fields"] == ["refund_amount"]
    error = await _error(
        await agent.post(url, json={"decision": "refund", "facts": {**FACTS, "cosmetic": "meh"}}),
        400,
        "invalid_request",
    )
    assert error["fields"] == ["facts.cosmetic"]
    error = await _error(
        await agent.post(url, json={"outcome": "resolved", "resolution_note": "x"}),
        400,
        "invalid_request",
    )
    assert "decision" in error["fields"]

    decided = await agent.post(
        url,
        json={
            "decision": "partial_refund",
            "refund_amount": "12.50",
            "currency": "EUR",
            "facts": FACTS,
            "note": "scratch on the lid",
        },
    )
    assert decided.status == 200, await decided.text()
    case = (await decided.json())["case"]
    assert case["state"] == "decided"
    assert case["decision"] == "partial_refund"
    assert case["refund_amount"] == 12.5
    assert case["facts"] == FACTS
    assert case["decided_at"] and case["in_call_at"] and case["waiting_at"]

    await _error(await agent.post(url, json=decision), 409, "invalid_state")
    closed = await agent.post(f"/api/cases/{case_id}/close")
    assert (await closed.json())["case"]["state"] == "closed"
    await _error(await agent.post(f"/api/cases/{case_id}/close"), 409, "invalid_state")

    events = (await (await agent.get(f"/api/cases/{case_id}")).json())["events"]
    assert [e["type"] for e in events] == [
        "case.created",
        "case.join_link",
        "case.state_changed",
        "case.state_changed",
        "case.decided",
        "case.closed",
    ]
    assert events[4]["actor"] == api.users["alan"].id


async def test_support_case_outcome(api: Api) -> None:
    case_id = (await _create(api, {"kind": "support", "customer_name": "Sam"}))["case"]["id"]
    await api.services.cases.customer_arrived(case_id)
    agent = await api.agent
    # Only the agent who took the call records its outcome.
    assert (await agent.post(f"/api/cases/{case_id}/accept")).status == 200
    url = f"/api/cases/{case_id}/decision"
    error = await _error(
        await agent.post(url, json={"decision": "refund", "facts": FACTS}), 400, "invalid_request"
    )
    assert "outcome" in error["fields"]
    await _error(await agent.post(url, json={"outcome": "resolved"}), 400, "invalid_request")
    response = await agent.post(
        url, json={"outcome": "follow_up", "resolution_note": "courier to call back"}
    )
    assert response.status == 200, await response.text()
    case = (await response.json())["case"]
    assert (case["state"], case["outcome"]) == ("decided", "follow_up")
    assert case["resolution_note"] == "courier to call back"
    assert case["decision"] is None


async def test_accept_conflicts_come_from_the_call_hub(api: Api) -> None:
    case_id = (await _create(api))["case"]["id"]
    agent = await api.agent
    await _error(await agent.post(f"/api/cases/{case_id}/accept"), 409, "not_waiting")
    await api.services.cases.customer_arrived(case_id)
    api.calls.fail_with = SignalingErrorCode.ALREADY_ACCEPTED
    await _error(await agent.post(f"/api/cases/{case_id}/accept"), 409, "already_accepted")
    api.calls.fail_with = None
    assert (await agent.post(f"/api/cases/{case_id}/accept")).status == 200
    assert api.calls.accepted == [(case_id, api.users["alan"].id)]
    await _error(await (await api.reviewer).post(f"/api/cases/{case_id}/accept"), 403, "forbidden")


async def test_roles(api: Api) -> None:
    case_id = (await _create(api))["case"]["id"]
    await api.services.cases.customer_arrived(case_id)
    anon = await api.anon
    reviewer = await api.reviewer
    for method, path in [
        ("GET", "/api/me"),
        ("GET", "/api/cases"),
        ("GET", f"/api/cases/{case_id}"),
        ("POST", "/api/cases"),
        ("POST", f"/api/cases/{case_id}/decision"),
        ("POST", "/api/users"),
        ("GET", "/api/webhooks"),
    ]:
        await _error(await anon.request(method, path, json={}), 401, "unauthorized")
    # a customer's join token is no API credential
    join = (await _create(api))["join_token"]
    response = await anon.get("/api/cases", headers={"Authorization": f"Bearer {join}"})
    await _error(response, 401, "unauthorized")

    assert (await reviewer.get(f"/api/cases/{case_id}")).status == 200
    decision = {"decision": "refund", "facts": FACTS}
    await _error(
        await reviewer.post(f"/api/cases/{case_id}/decision", json=decision), 403, "forbidden"
    )
    await _error(await reviewer.post("/api/cases", json=RETURN_CASE), 403, "forbidden")
    agent = await api.agent
    new_user = {"username": "eve", "password": "long enough now", "name": "Eve", "role": "admin"}
    await _error(await agent.post("/api/users", json=new_user), 403, "forbidden")
    await _error(await agent.post("/api/tokens", json={"name": "x"}), 403, "forbidden")


async def test_login_logout_and_cookie_tampering(api: Api) -> None:
    anon = await api.anon
    wrong = await anon.post("/api/login", json={"username": "alan", "password": "nope nope"})
    await _error(wrong, 401, "invalid_credentials")
    unknown = await anon.post("/api/login", json={"username": "zed", "password": "whatever1"})
    await _error(unknown, 401, "invalid_credentials")
    await _error(await anon.post("/api/login", json={"username": "alan"}), 400, "invalid_request")

    client = await api.make_client(api.server)
    response = await client.post("/api/login", json={"username": "ALAN", "password": PASSWORD})
    assert response.status == 200
    assert (await response.json())["user"] == {
        "id": api.users["alan"].id,
        "username": "alan",
        "name": "Alan",
        "role": "agent",
    }
    set_cookie = response.headers["Set-Cookie"]
    assert "inspect_session=" in set_cookie
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # http base URL in this test
    assert PASSWORD not in set_cookie
    me = await client.get("/api/me")
    assert (await me.json())["user"]["role"] == "agent"

    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))["inspect_session"].value
    user_id, expiry, signature = value.split(".")
    admin_id = api.users["ada"].id
    for forged in (
        f"{admin_id}.{expiry}.{signature}",  # someone else's id
        f"{user_id}.{int(expiry) + 3600}.{signature}",  # longer life
        f"{user_id}.{expiry}.{signature[:-2]}AA",
        "garbage",
    ):
        response = await anon.get("/api/me", cookies={"inspect_session": forged})
        await _error(response, 401, "unauthorized")
    response = await anon.get("/api/me", cookies={"inspect_session": value})
    assert response.status == 200  # the real one works from anywhere

    logout = await client.post("/api/logout")
    assert logout.status == 204
    assert "inspect_session=" in logout.headers["Set-Cookie"]
    await _error(await client.get("/api/me"), 401, "unauthorized")


async def test_api_tokens(api: Api) -> None:
    admin = await api.admin
    response = await admin.post("/api/tokens", json={"name": "shop integration"})
    assert response.status == 201
    issued = await response.json()
    token = issued["token"]
    row = await api.services.db.fetchone("SELECT * FROM api_tokens WHERE id = ?", (issued["id"],))
    assert row is not None and token not in dict(row).values()  # stored hashed

    anon = await api.anon
    bearer = {"Authorization": f"Bearer {token}"}
    me = await (await anon.get("/api/me", headers=bearer)).json()
    assert me["user"] == {
        "id": issued["id"],
        "username": None,
        "name": "shop integration",
        "role": "integration",  # M10: a token's role unless an admin names another
    }
    created = await anon.post("/api/cases", json=RETURN_CASE, headers=bearer)
    assert created.status == 201
    case_id = (await created.json())["case"]["id"]
    events = (await (await anon.get(f"/api/cases/{case_id}", headers=bearer)).json())["events"]
    assert events[0]["actor"] == f"token:{issued['id']}"

    viewer = await (await admin.post("/api/tokens", json={"name": "bi", "role": "reviewer"})).json()
    view_headers = {"Authorization": f"Bearer {viewer['token']}"}
    assert (await anon.get("/api/cases", headers=view_headers)).status == 200
    await _error(
        await anon.post("/api/cases", json=RETURN_CASE, headers=view_headers), 403, "forbidden"
    )
    wrong = {"Authorization": f"Bearer {token}x"}
    await _error(await anon.get("/api/me", headers=wrong), 401, "unauthorized")

    assert (await admin.delete(f"/api/tokens/{issued['id']}")).status == 204
    await _error(await anon.get("/api/me", headers=bearer), 401, "unauthorized")
    await _error(await admin.delete(f"/api/tokens/{issued['id']}"), 404, "not_found")


async def test_users_endpoint(api: Api) -> None:
    admin = await api.admin
    body = {"username": "bob", "password": PASSWORD, "name": "Bob", "role": "agent"}
    response = await admin.post("/api/users", json=body)
    assert response.status == 201
    assert (await response.json())["user"]["username"] == "bob"
    await _error(await admin.post("/api/users", json=body), 409, "conflict")
    short = await admin.post("/api/users", json={**body, "username": "b2", "password": "short"})
    error = await _error(short, 400, "invalid_request")
    assert error["fields"] == ["password"]
    bad_role = await admin.post("/api/users", json={**body, "username": "b3", "role": "customer"})
    assert (await _error(bad_role, 400, "invalid_request"))["fields"] == ["role"]
    bob = await api.client("bob")
    assert (await (await bob.get("/api/me")).json())["user"]["name"] == "Bob"


async def test_webhook_admin_endpoints(api: Api) -> None:
    admin = await api.admin
    response = await admin.post("/api/webhooks", json={"url": "https://hooks.example/in"})
    assert response.status == 201
    created = await response.json()
    assert created["secret"].startswith("whsec_")
    hook_id = created["webhook"]["id"]
    listed = await (await admin.get("/api/webhooks")).json()
    assert [h["id"] for h in listed["webhooks"]] == [hook_id]
    assert created["secret"] not in str(listed)
    bad = await admin.post("/api/webhooks", json={"url": "ftp://x"})
    assert (await _error(bad, 400, "invalid_request"))["fields"] == ["url"]
    assert (await admin.delete(f"/api/webhooks/{hook_id}")).status == 204
    await _error(await admin.delete(f"/api/webhooks/{hook_id}"), 404, "not_found")


async def test_bad_input_never_500(api: Api) -> None:
    agent = await api.agent
    headers = {"Content-Type": "application/json"}
    error = await _error(
        await agent.post("/api/cases", data=b'{"kind": "return",', headers=headers),
        400,
        "invalid_request",
    )
    assert "JSON" in error["message"]
    for raw in (b"[1, 2]", b'"text"', b"null", b"", b"\xff\xfe", b"[" * 60000):
        response = await agent.post("/api/cases", data=raw, headers=headers)
        await _error(response, 400, "invalid_request")
    extra = await agent.post("/api/cases", json={**RETURN_CASE, "is_admin": True})
    assert (await _error(extra, 400, "invalid_request"))["fields"] == ["is_admin"]
    missing = await agent.post("/api/cases", json={"kind": "return"})
    assert (await _error(missing, 400, "invalid_request"))["fields"] == ["customer_name"]
    wrong_type = await agent.post("/api/cases", json={**RETURN_CASE, "customer_name": 5})
    await _error(wrong_type, 400, "invalid_request")
    big = {**RETURN_CASE, "reason": "x" * (70 * 1024)}
    await _error(await agent.post("/api/cases", json=big), 413, "too_large")
    form = await agent.post("/api/cases", data={"kind": "return"})
    await _error(form, 415, "unsupported_media_type")
    await _error(await agent.get("/api/nothing-here"), 404, "not_found")
    await _error(await agent.get("/api/cases/does-not-exist"), 404, "not_found")
    wrong_method = await agent.put("/api/cases", json=RETURN_CASE)
    await _error(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]
    await _error(await agent.get("/api/cases?limit=0"), 400, "invalid_request")
    await _error(await agent.get("/api/cases?limit=abc"), 400, "invalid_request")


async def test_healthz_and_metrics(api: Api) -> None:
    anon = await api.anon
    health = await anon.get("/healthz")
    assert health.status == 200
    assert (await health.json())["db"] == "ok"
    for _ in range(2):
        await _create(api)
    case_id = (await _create(api))["case"]["id"]
    await api.services.cases.customer_arrived(case_id)
    metrics = await anon.get("/metrics")
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    text = await metrics.text()
    assert 'inspect_cases{state="created"} 2.0' in text
    assert 'inspect_cases{state="waiting"} 1.0' in text
    assert 'inspect_cases{state="closed"} 0.0' in text
