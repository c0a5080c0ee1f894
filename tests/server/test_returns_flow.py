"""Returns operations through the whole service: an admin saves a rule table (refused with the
path of a problem, every version kept), a case is created with the merchant's claimed reason,
the customer answers the intake (with the offers the rules make), the agent records the verified
reason in the call and decides, a second agent approves the held refund; each rule's action is
in the timeline with its id and version, and the merchant's receiver (a real aiohttp server on
loopback) gets the webhooks. A rule that cannot act on a case is logged and leaves it as it was;
the dry run says what a table would have done to past cases."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.settings import Settings
from signaling import Role
from tests.conftest import AGENT_PASSWORD, LiveService
from tests.fakes.signal_client import Participant

FACTS = {"cosmetic": "light_wear", "functional": "works", "packaging": "intact",
         "accessories_complete": True}  # fmt: skip

TABLE: dict[str, Any] = {
    "rules": [
        {"id": "hold-big", "name": "Hold big refunds until the item is seen",
         "on": ["created"], "when": {"order_value": {"gte": 100}},
         "then": [{"action": "hold_refund"}]},
        {"id": "keep-unwanted", "on": ["intake"],
         "when": {"claimed_reason": {"in": ["unwanted", "style"]}, "order_value": {"lt": 200}},
         "then": [{"action": "offer", "kind": "keep", "percent": 30},
                  {"action": "offer", "kind": "exchange"}]},
        {"id": "transit", "on": ["verified"],
         "when": {"verified_reason": "damaged_in_transit"},
         "then": [{"action": "request_reshipment"}, {"action": "open_carrier_claim"}]},
        {"id": "mismatch", "on": ["verified"], "when": {"mismatch": True},
         "then": [{"action": "webhook", "event": "erp.mismatch"}]},
        {"id": "second-eyes", "on": ["decided"], "when": {"decision": "refund"},
         "then": [{"action": "require_second_approval", "above": 100}]},
        {"id": "route", "on": ["decided"], "then": [
            {"action": "route_disposition", "channel": "by_grade"}]},
    ],
    "alerts": [],
}  # fmt: skip


@dataclass
class Receiver:
    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(json.loads(await request.read()))
        self.changed.set()
        return web.Response(status=200)

    def names(self, case_id: str) -> list[str]:
        return [e["event"] for e in self.events if e.get("case", {}).get("id") == case_id]

    async def wait_for(self, case_id: str, event: str, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for hit in self.events:
                    if hit["event"] == event and hit.get("case", {}).get("id") == case_id:
                        return hit
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hooks.url = f"http://127.0.0.1:{port}/hooks"
    yield hooks
    await runner.cleanup()


@pytest.fixture
def service_settings(tmp_path: Path, receiver: Receiver) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        captions=False,
        outbound_allow=("127.0.0.1",),
        webhook_urls=(receiver.url,),
    )


async def _staff(live: LiveService, username: str) -> aiohttp.ClientSession:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    await live.login(client, username, live.agent_password)
    return client


async def _json(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def _when(text: str) -> float:
    """An ISO 8601 time of the API (``2025-01-31T12:00:00.000Z``) as Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _in_call(
    live: LiveService,
    http: aiohttp.ClientSession,
    agent_http: aiohttp.ClientSession,
    created: dict[str, Any],
) -> tuple[Participant, Participant]:
    """The customer of ``created`` and the agent in its call (the agent holds the case)."""
    case_id = str(created["case"]["id"])
    caller = Participant(http, live.base_url, token=str(created["join_token"]))
    agent = Participant(agent_http, live.base_url)
    await agent.join()
    await caller.join()
    await agent.send({"type": "accept", "case_id": case_id})
    await agent.expect("joined", where=lambda m: m["case"] is not None)
    return caller, agent


def _actions(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [
        (e["data"]["rule"], e["data"]["version"], e["data"]["trigger"], e["data"]["action"])
        for e in events
        if e["type"] == "returns.rule_action"
    ]


async def test_intake_verification_rules_and_a_second_approval_end_to_end(
    live_service: LiveService, receiver: Receiver
) -> None:
    base = live_service.base_url
    admin = live_service.headers()
    async with aiohttp.ClientSession() as http:
        # A bad table is refused with where the problem is; nothing is saved.
        bad = {"rules": [{**TABLE["rules"][0], "then": [{"action": "refund_twice"}]}]}
        async with http.put(f"{base}/api/returns/rules", json=bad, headers=admin) as response:
            error = (await _json(response, 400))["error"]
        assert error["fields"] == ["rules[0].then[0].action"], error
        assert "unknown action" in error["message"]
        async with http.put(
            f"{base}/api/returns/rules", json={**TABLE, "note": "first table"}, headers=admin
        ) as response:
            saved = await _json(response, 201)
        assert saved["version"] == "return-rules/1" and len(saved["rules"]) == 6

        delivered = datetime.now(UTC) - timedelta(days=3)
        body = {
            "kind": "return", "customer_name": "Mia Becker", "customer_contact": "mia@example.com",
            "order_id": "ORD-RET-1", "sku": "HEADPHONES-X2", "category": "audio",
            "claimed_reason": "defective", "order_value": 150, "order_currency": "EUR",
            "country": "DE", "carrier": "UPS", "delivered_at": delivered.isoformat(),
        }  # fmt: skip
        async with http.post(f"{base}/api/cases", json=body, headers=admin) as response:
            created = await _json(response, 201)
        case = created["case"]
        case_id = case["id"]
        # The rule for new cases held the refund before the link went out.
        assert case["refund_state"] == "held" and case["claimed_reason"] == "defective"
        await receiver.wait_for(case_id, "returns.refund_held")

        # The customer's intake: the offers follow the reason they pick.
        customer = {"Authorization": f"Bearer {created['join_token']}"}
        intake_url = f"{base}/join/c/{case_id}"
        async with http.post(
            f"{intake_url}/offers", json={"reason": "defective"}, headers=customer
        ) as response:
            assert (await _json(response, 200))["offers"] == []
        async with http.post(
            f"{intake_url}/offers", json={"reason": "unwanted"}, headers=customer
        ) as response:
            offers = (await _json(response, 200))["offers"]
        assert [(o["kind"], o["percent"], o["amount"], o["currency"]) for o in offers] == [
            ("keep", 30, 45.0, "EUR"), ("exchange", None, None, "EUR"),
        ]  # fmt: skip
        answers = {"reason": "unwanted", "description": "It rattles when I shake it."}
        forged = {**answers, "offer": {"rule": "keep-unwanted", "kind": "refund_all"}}
        async with http.post(f"{intake_url}/intake", json=forged, headers=customer) as response:
            assert response.status == 400
        async with http.post(f"{intake_url}/intake", json=answers, headers=customer) as response:
            intake = (await _json(response, 201))["intake"]
        assert intake["reason"] == "unwanted" and intake["offer"] is None
        async with http.post(f"{intake_url}/intake", json=answers, headers=customer) as response:
            assert response.status == 409, "the answers are sent once"

        agent_http = await _staff(live_service, "agent")
        second = await _staff(live_service, "agent2")
        try:
            caller = Participant(http, base, token=str(created["join_token"]))
            agent = Participant(agent_http, base)
            await agent.join()
            await caller.join()
            await agent.send({"type": "accept", "case_id": case_id})
            await agent.expect("joined", where=lambda m: m["case"] is not None)

            api = f"{base}/api/cases/{case_id}"
            async with agent_http.post(
                f"{api}/reason", json={"verified_reason": "damaged_in_transit", "note": "dented"}
            ) as response:
                verified = (await _json(response, 200))["case"]
            assert verified["verified_reason"] == "damaged_in_transit"
            assert verified["mismatched"] is True
            claim = await receiver.wait_for(case_id, "returns.carrier_claim")
            assert claim["case"]["carrier"] == "UPS"
            await receiver.wait_for(case_id, "returns.reshipment_requested")
            await receiver.wait_for(case_id, "returns.erp.mismatch")

            async with agent_http.post(
                f"{api}/decision", json={"decision": "refund", "facts": FACTS}
            ) as response:
                decided = (await _json(response, 200))["case"]
            assert decided["final_grade"] in {"A", "B", "C", "D"}
            await receiver.wait_for(case_id, "returns.approval_required")
            async with agent_http.get(api) as response:
                detail = await _json(response, 200)
            held = detail["case"]
            assert held["refund_state"] == "held"
            assert held["approval"]["state"] == "pending" and held["approval"]["amount"] == 150
            assert held["disposition"] in {"restock", "discount", "live_social",
                                           "parts_recycling"}  # fmt: skip

            # The one who decided cannot approve; a second agent can.
            async with agent_http.post(f"{api}/approve", json={}) as response:
                assert response.status == 403, await response.text()
            async with second.post(f"{api}/approve", json={"note": "checked"}) as response:
                approved = (await _json(response, 200))["case"]
            assert approved["refund_state"] == "released"
            assert approved["approval"]["state"] == "approved"
            await receiver.wait_for(case_id, "returns.refund_released")
            await caller.aclose()
            await agent.aclose()
        finally:
            await agent_http.close()
            await second.close()

        async with http.get(f"{base}/api/cases/{case_id}", headers=admin) as response:
            events = (await _json(response, 200))["events"]
    v1 = "return-rules/1"
    assert _actions(events) == [
        ("hold-big", v1, "created", "hold_refund"),
        ("transit", v1, "verified", "request_reshipment"),
        ("transit", v1, "verified", "open_carrier_claim"),
        ("mismatch", v1, "verified", "webhook"),
        ("second-eyes", v1, "decided", "require_second_approval"),
        ("route", v1, "decided", "route_disposition"),
    ]
    types = [e["type"] for e in events]
    assert "returns.intake" in types and "returns.reason_verified" in types
    assert "returns.approved" in types
    claim_entry = next(e for e in events if e["data"].get("action") == "open_carrier_claim")
    deadlines = claim_entry["data"]["result"]["deadlines"]
    assert deadlines and all("deadline" in d for d in deadlines)


#: Rules on what the service works out itself (server/returns/service.py facts_of): the damage
#: the model saw in the call and the customer's earlier returns (same contact); and a refund
#: released by a rule, not by a second approval.
FACTS_TABLE: dict[str, Any] = {
    "rules": [
        {"id": "hold-big", "on": ["created"], "when": {"order_value": {"gte": 100}},
         "then": [{"action": "hold_refund"}]},
        {"id": "repeat-customer", "on": ["created"], "when": {"past_returns": {"gte": 1}},
         "then": [{"action": "hold_refund"},
                  {"action": "webhook", "event": "erp.repeat_customer"}]},
        {"id": "cracked", "on": ["verified"], "when": {"damage": {"any": ["crack"]}},
         "then": [{"action": "route_disposition", "channel": "parts_recycling"},
                  {"action": "webhook", "event": "erp.damage_seen"}]},
        {"id": "release-first", "on": ["verified"],
         "when": {"mismatch": False, "past_returns": 0},
         "then": [{"action": "release_refund"}]},
    ],
    "alerts": [],
}  # fmt: skip
#: The model's final view of the call, as the grading pipeline keeps it on the case.
MODEL_VIEW = {
    "grade": "D",
    "confidence": 0.82,
    "status": "sure",
    "model_version": "test",
    "damage": [{"label": "scratch", "score": 0.6}, {"label": "crack", "score": 0.91}],
}


async def test_rules_act_on_the_damage_the_model_saw_and_the_customers_past_returns(
    live_service: LiveService, receiver: Receiver
) -> None:
    base = live_service.base_url
    admin = live_service.headers()
    override = {**admin, "X-Inspect-Reason": "checking the repeat customer's return"}
    v1 = "return-rules/1"
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{base}/api/returns/rules", json=FACTS_TABLE, headers=admin
        ) as response:
            assert (await _json(response, 201))["version"] == v1

        async def create(order_id: str, value: int, reason: str) -> dict[str, Any]:
            body = {"kind": "return", "customer_name": "Ana Silva",
                    "customer_contact": "ana@example.com", "order_id": order_id,
                    "sku": "LAMP-3", "category": "home", "claimed_reason": reason,
                    "order_value": value, "order_currency": "EUR", "country": "PT",
                    "carrier": "DPD"}  # fmt: skip
            async with http.post(f"{base}/api/cases", json=body, headers=admin) as response:
                return await _json(response, 201)

        # Ana's first return: held for its value; her second (same contact): held because
        # she returned before, and the merchant's ERP told.
        first = await create("ORD-A1", 150, "defective")
        second = await create("ORD-A2", 40, "unwanted")
        first_id, second_id = first["case"]["id"], second["case"]["id"]
        assert first["case"]["refund_state"] == "held"
        assert second["case"]["refund_state"] == "held"
        hook = await receiver.wait_for(second_id, "returns.erp.repeat_customer")
        assert hook["case"]["refund_state"] == "held"
        await receiver.wait_for(first_id, "returns.refund_held")
        assert "returns.erp.repeat_customer" not in receiver.names(first_id)

        # The first in a call: the model sees a crack; the agent confirms the claimed reason.
        agent_http = await _staff(live_service, "agent")
        try:
            caller, agent = await _in_call(live_service, http, agent_http, first)
            await live_service.state.cases.record_model_view(first_id, MODEL_VIEW)
            async with agent_http.post(
                f"{base}/api/cases/{first_id}/reason", json={"verified_reason": "defective"}
            ) as response:
                verified = (await _json(response, 200))["case"]
            await caller.aclose()
            await agent.aclose()
        finally:
            await agent_http.close()
        assert verified["mismatched"] is False
        # Released by the rule, not by an approval; routed for the damage the model saw.
        assert verified["refund_state"] == "released"
        assert verified["disposition"] == "parts_recycling"
        released = await receiver.wait_for(first_id, "returns.refund_released")
        assert released["case"]["refund_state"] == "released"
        seen = await receiver.wait_for(first_id, "returns.erp.damage_seen")
        assert seen["case"]["disposition"] == "parts_recycling"

        # The second, verified by an admin: no damage seen, and no release for a repeat
        # customer: the refund stays held.
        async with http.post(
            f"{base}/api/cases/{second_id}/reason",
            json={"verified_reason": "unwanted"},
            headers=override,
        ) as response:
            assert (await _json(response, 200))["case"]["refund_state"] == "held"

        timelines = {}
        for case_id in (first_id, second_id):
            async with http.get(f"{base}/api/cases/{case_id}", headers=admin) as response:
                detail = await _json(response, 200)
            timelines[case_id] = detail["events"]
            assert detail["case"]["refund_state"] == ("released" if case_id == first_id
                                                      else "held")  # fmt: skip
    first_events, second_events = timelines[first_id], timelines[second_id]
    assert _actions(first_events) == [
        ("hold-big", v1, "created", "hold_refund"),
        ("cracked", v1, "verified", "route_disposition"),
        ("cracked", v1, "verified", "webhook"),
        ("release-first", v1, "verified", "release_refund"),
    ]
    assert _actions(second_events) == [
        ("repeat-customer", v1, "created", "hold_refund"),
        ("repeat-customer", v1, "created", "webhook"),
    ]
    by_action = {e["data"]["action"]: e for e in first_events if e["type"] == "returns.rule_action"}
    assert by_action["hold_refund"]["data"]["result"] == {"refund_state": "held"}
    assert by_action["release_refund"]["data"]["result"] == {"refund_state": "released"}
    assert by_action["release_refund"]["actor"] == "rule:release-first"
    assert by_action["route_disposition"]["data"]["result"] == {"disposition": "parts_recycling"}
    assert "returns.approved" not in {e["type"] for e in first_events}
    # The refund went held -> released in that order, each with its webhook.
    names = receiver.names(first_id)
    assert names.index("returns.refund_held") < names.index("returns.refund_released")
    assert not {"returns.refund_released", "returns.erp.damage_seen"} & set(
        receiver.names(second_id)
    )


async def test_a_rule_that_cannot_act_leaves_the_case_and_says_why(
    live_service: LiveService,
) -> None:
    base = live_service.base_url
    admin = live_service.headers()
    table = {
        "rules": [
            {
                "id": "claim",
                "on": ["verified"],
                "then": [
                    {"action": "open_carrier_claim"},
                    {"action": "route_disposition", "channel": "restock"},
                ],
            }
        ]
    }
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/api/returns/rules", json=table, headers=admin) as response:
            await _json(response, 201)
        created = await live_service.create_case(http, sku="NO-CARRIER")
        case_id = str(created["case"]["id"])  # type: ignore[index]
        agent_http = await _staff(live_service, "agent")
        try:
            caller = Participant(http, base, token=str(created["join_token"]))
            agent = Participant(agent_http, base)
            await agent.join()
            await caller.join()
            await agent.send({"type": "accept", "case_id": case_id})
            await agent.expect("joined", where=lambda m: m["case"] is not None)
            async with agent_http.post(
                f"{base}/api/cases/{case_id}/reason", json={"verified_reason": "defective"}
            ) as response:
                case = (await _json(response, 200))["case"]
            await caller.aclose()
            await agent.aclose()
        finally:
            await agent_http.close()
        async with http.get(f"{base}/api/cases/{case_id}", headers=admin) as response:
            detail = await _json(response, 200)
    failed = [e for e in detail["events"] if e["type"] == "returns.rule_failed"]
    assert [e["data"]["action"] for e in failed] == ["open_carrier_claim"]
    assert "no carrier" in failed[0]["data"]["error"]
    # The failure did not stop the next action, and changed nothing itself.
    assert detail["case"]["disposition"] == "restock"
    assert case["refund_state"] == "none"


async def test_the_dry_run_counts_past_cases_and_versions_are_kept(
    live_service: LiveService,
) -> None:
    base = live_service.base_url
    admin = live_service.headers()
    async with aiohttp.ClientSession() as http:
        for value in ("40", "120", "300"):
            body = {"kind": "return", "customer_name": "Ola", "order_value": value,
                    "claimed_reason": "style"}  # fmt: skip
            async with http.post(f"{base}/api/cases", json=body, headers=admin) as response:
                await _json(response, 201)
        trial = {"rules": [
            {"id": "big", "on": ["created"], "when": {"order_value": {"gt": 100}},
             "then": [{"action": "hold_refund"}]},
            {"id": "styled", "on": ["created"], "when": {"claimed_reason": "style"},
             "then": [{"action": "webhook", "event": "erp.style"}]},
        ]}  # fmt: skip
        async with http.post(
            f"{base}/api/returns/rules/dry-run", json=trial, headers=admin
        ) as response:
            result = await _json(response, 200)
        assert result["cases"] == 3
        counts = {rule["id"]: rule["cases"] for rule in result["rules"]}
        assert counts == {"big": 2, "styled": 3}
        # Nothing was saved or done.
        async with http.get(f"{base}/api/returns/rules", headers=admin) as response:
            assert (await _json(response, 200))["version"] == "return-rules/0"

        # Rule changes are audited: the first by the API token, the second by an admin
        # signed in; each version says who saved it and when.
        await live_service.state.accounts.create_user(
            "boss", AGENT_PASSWORD, name="Bea Boss", role=Role.ADMIN
        )
        boss = await _staff(live_service, "boss")
        saved_at: list[tuple[float, float]] = []
        try:
            for note, client, headers in (("first", http, admin), ("second", boss, {})):
                before = time.time()
                async with client.put(
                    f"{base}/api/returns/rules", json={**trial, "note": note}, headers=headers
                ) as response:
                    await _json(response, 201)
                saved_at.append((before, time.time()))
            async with boss.get(f"{base}/api/me") as response:
                boss_id = (await _json(response, 200))["user"]["id"]
        finally:
            await boss.close()
        async with http.get(f"{base}/api/tokens", headers=admin) as response:
            tokens = {t["name"]: t["id"] for t in (await _json(response, 200))["tokens"]}
        async with http.get(f"{base}/api/users", headers=admin) as response:
            users = {u["id"]: u["username"] for u in (await _json(response, 200))["users"]}
        token_subject = f"token:{tokens['tests']}"
        assert users[boss_id] == "boss"

        async with http.get(f"{base}/api/returns/rules/versions", headers=admin) as response:
            versions = (await _json(response, 200))["versions"]
        assert [(v["version"], v["note"], v["rules"], v["author"]) for v in versions] == [
            ("return-rules/2", "second", 2, boss_id),
            ("return-rules/1", "first", 2, token_subject),
        ]  # fmt: skip
        # Each at the moment it was saved (milliseconds: the API's times are cut to them).
        for version, (before, after) in zip(reversed(versions), saved_at, strict=True):
            assert before - 0.001 <= _when(version["created_at"]) <= after, version
        assert _when(versions[0]["created_at"]) >= _when(versions[1]["created_at"])
        async with http.get(f"{base}/api/returns/rules/versions/1", headers=admin) as response:
            first = await _json(response, 200)
        assert first["body"]["rules"] == trial["rules"]
        assert (first["author"], first["note"]) == (token_subject, "first")
        assert first["created_at"] == versions[1]["created_at"]
        async with http.get(f"{base}/api/returns/rules/versions/2", headers=admin) as response:
            second = await _json(response, 200)
        assert (second["author"], second["note"]) == (boss_id, "second")
        assert second["created_at"] == versions[0]["created_at"]
        async with http.get(f"{base}/api/returns/rules/versions/9", headers=admin) as response:
            assert response.status == 404
        # The table in force is the newest version.
        async with http.get(f"{base}/api/returns/rules", headers=admin) as response:
            assert (await _json(response, 200))["version"] == "return-rules/2"
