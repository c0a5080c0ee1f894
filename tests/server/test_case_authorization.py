"""Who may act on one case: only the agent holding it, or an admin who says why (logged).

One test per finding reproduces its exploit as the security review ran it ("Live" steps)
and shows it refused: H1 (a link minted into another agent's call), M1 (deciding, closing
and recording a case someone else holds, or nobody accepted), M2 (live frames for any staff
member, unlogged), I2 (frames of rooms that are not cases). The others pin the rules around
them: the admin override and its trail, the subjects written as actors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from evidence import EntryKind, EvidenceArchive, LogEntry
from inference import SnapshotCandidate
from server.cases import (
    CaseService,
    Cosmetic,
    Functional,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
)
from server.settings import Settings
from server.wiring.services import Services
from signaling.messages import Role
from tests.conftest import AGENT_PASSWORD, LiveService
from tests.fakes.signal_client import Participant

from .conftest import Api, serve_api

FACTS = {
    "cosmetic": "light_wear",
    "functional": "works",
    "packaging": "intact",
    "accessories_complete": True,
}
REFUND = {"decision": "refund", "facts": FACTS}
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
FRAME_TS = 1_800_000_000.25
FRAME_ID = str(int(FRAME_TS * 1000))
REASON = {"X-Inspect-Reason": "customer complaint 4711: checking what the agent saw"}


class FakeGrading:
    """The grading view with one sharp frame per room it was given (a case's, or a camera's)."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()

    def latest(self, case_id: str) -> dict[str, Any] | None:
        return {"grade": "B", "status": "sure"} if case_id in self.rooms else None

    def frames(self, case_id: str) -> list[SnapshotCandidate]:
        if case_id not in self.rooms:
            return []
        return [SnapshotCandidate(ts=FRAME_TS, sharpness=120.0, jpeg=JPEG, width=8, height=8)]


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[EvidenceArchive]:
    opened = await EvidenceArchive.open(tmp_path / "evidence")
    yield opened
    await opened.aclose()


@pytest.fixture
def grading() -> FakeGrading:
    return FakeGrading()


@pytest.fixture
async def api(
    services: Services,
    settings: Settings,
    archive: EvidenceArchive,
    grading: FakeGrading,
    aiohttp_server: Any,
    aiohttp_client: Any,
) -> Api:
    """The REST edge with a grading view that has frames and a real evidence archive; two
    agents (alan, grace), a reviewer (rita) and an admin (ada)."""
    users = (
        ("ada", Role.ADMIN),
        ("alan", Role.AGENT),
        ("grace", Role.AGENT),
        ("rita", Role.REVIEWER),
    )
    return await serve_api(
        services,
        settings,
        aiohttp_server,
        aiohttp_client,
        users,
        grading=grading,
        evidence=archive,
    )


async def _case(api: Api, *, state: str = "waiting", holder: str | None = None) -> str:
    """A new return case, ``created`` or ``waiting``, or ``in_call`` held by ``holder``."""
    response = await (await api.admin).post(
        "/api/cases", json={"kind": "return", "customer_name": "Mia Example"}
    )
    assert response.status == 201, await response.text()
    case_id: str = (await response.json())["case"]["id"]
    if state != "created":
        await api.services.cases.customer_arrived(case_id)
    if holder is not None:
        accepted = await (await api.client(holder)).post(f"/api/cases/{case_id}/accept")
        assert accepted.status == 200, await accepted.text()
    return case_id


async def _refused(response: Any, status: int, code: str, *words: str) -> str:
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error["message"]
    message: str = error["message"]
    return message


async def _events(api: Api, case_id: str) -> list[dict[str, Any]]:
    detail = await (await api.admin).get(f"/api/cases/{case_id}")
    events: list[dict[str, Any]] = (await detail.json())["events"]
    return events


def _views(entries: list[LogEntry]) -> list[dict[str, Any]]:
    return [entry.record() for entry in entries if entry.kind is EntryKind.LIVE_VIEWED]


# -- H1 -----------------------------------------------------------------------------------------


async def test_h1_no_join_link_into_a_call_another_agent_holds(api: Api) -> None:
    # Live: agent1 held X (in_call); agent2 minted a customer link for X and joined the call
    # with it. Now the link is refused to everyone while the customer is in the call.
    held = await _case(api, holder="alan")
    for who in ("grace", "alan", "ada"):
        response = await (await api.client(who)).post(f"/api/cases/{held}/join-link")
        await _refused(response, 409, "invalid_state", "already in the call")
    links = [e for e in await _events(api, held) if e["type"] == "case.join_link"]
    assert len(links) == 1, "only the link minted when the case was created"

    # A customer who is not in a call yet still gets a fresh link; the timeline says by whom
    # (the subject) and who held the case (nobody yet).
    waiting = await _case(api)
    response = await (await api.client("grace")).post(f"/api/cases/{waiting}/join-link")
    assert response.status == 201, await response.text()
    minted = [e for e in await _events(api, waiting) if e["type"] == "case.join_link"][-1]
    assert minted["actor"] == api.users["grace"].id
    assert minted["actor_name"] == "Grace"
    assert minted["data"]["holder"] is None and minted["data"]["state"] == "waiting"

    verdict = ReturnVerdict(
        ReturnDecision.REFUND,
        ReturnFacts(Cosmetic.LIGHT_WEAR, Functional.WORKS, Packaging.INTACT, True),
    )
    await api.services.cases.decide(waiting, verdict, actor=api.users["ada"].id)
    response = await (await api.client("grace")).post(f"/api/cases/{waiting}/join-link")
    await _refused(response, 409, "invalid_state", "decided")


# -- M1 -----------------------------------------------------------------------------------------


async def test_m1_another_agent_cannot_decide_close_or_record_a_case(
    live_service: LiveService,
) -> None:
    # Live: agent2 decided (200) and closed agent1's case, decided a never-accepted waiting
    # case with refund_amount 999999.99, and snapshotted a waiting customer (201).
    base = live_service.base_url
    cases = live_service.state.cases
    async with (
        _signed_in(live_service, "agent") as agent1,
        _signed_in(live_service, "agent2") as agent2,
        aiohttp.ClientSession() as customers,
    ):
        # Two customers wait on their join pages; agent1 takes the first call.
        joined: list[Participant] = []
        ids: list[str] = []
        for _ in range(2):
            created = await live_service.create_case(customers)
            ids.append(str(created["case"]["id"]))  # type: ignore[index]
            customer = Participant(customers, base, token=str(created["join_token"]))
            await customer.join()
            joined.append(customer)
        held, waiting = ids
        console = Participant(agent1, base)
        await console.join()
        joined.append(console)
        await console.send({"type": "accept", "case_id": held})
        await console.expect("joined", where=lambda m: m["case"] is not None)
        try:
            await _m1_refusals(base, cases, agent1, agent2, held, waiting)
        finally:
            for participant in joined:
                await participant.aclose()


async def _m1_refusals(
    base: str,
    cases: CaseService,
    agent1: aiohttp.ClientSession,
    agent2: aiohttp.ClientSession,
    held: str,
    waiting: str,
) -> None:
    huge = {**REFUND, "decision": "partial_refund", "refund_amount": "999999.99"}
    refused: list[tuple[str, int, str]] = []
    for case_id, path, body in (
        (held, "decision", huge),
        (held, "snapshots", {}),
        (held, "captures", {}),
        (held, "captures/last", {"seconds": 1}),
        (held, "captures/c0/stop", None),
        (waiting, "decision", huge),
        (waiting, "snapshots", {}),
        (waiting, "captures", {}),
    ):
        async with agent2.post(f"{base}/api/cases/{case_id}/{path}", json=body) as response:
            error = (await response.json())["error"]
            refused.append((path, response.status, error["code"]))
            assert ("held by another agent" if case_id == held else "never accepted") in (
                error["message"]
            ), error
    assert refused == [
        ("decision", 403, "forbidden"),
        ("snapshots", 403, "forbidden"),
        ("captures", 403, "forbidden"),
        ("captures/last", 403, "forbidden"),
        ("captures/c0/stop", 403, "forbidden"),
        ("decision", 409, "invalid_state"),
        ("snapshots", 409, "invalid_state"),
        ("captures", 409, "invalid_state"),
    ]
    assert (await cases.require(held)).state.value == "in_call"
    assert (await cases.require(waiting)).decision is None

    # The holder decides; the other agent still cannot close it.
    async with agent1.post(f"{base}/api/cases/{held}/decision", json=REFUND) as response:
        assert response.status == 200, await response.text()
    async with agent2.post(f"{base}/api/cases/{held}/close") as response:
        await _refused(response, 403, "forbidden", "held by another agent")
    async with agent1.post(f"{base}/api/cases/{held}/snapshots", json={}) as response:
        await _refused(response, 409, "invalid_state", "call is over")
    async with agent1.post(f"{base}/api/cases/{held}/close") as response:
        assert response.status == 200, await response.text()
    # Nor does the holder of one case decide another that nobody accepted.
    async with agent1.post(f"{base}/api/cases/{waiting}/decision", json=REFUND) as response:
        await _refused(response, 409, "invalid_state", "never accepted", "accept it")


class _signed_in:
    """An aiohttp session signed in as one of the live service's staff users."""

    def __init__(self, live: LiveService, username: str) -> None:
        self._live = live
        self._username = username
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await self._live.login(self._session, self._username, AGENT_PASSWORD)
        # create_case sends the admin token itself; everything else goes as this user.
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()


# -- M2 -----------------------------------------------------------------------------------------


async def test_m2_live_frames_only_for_the_holder_and_every_read_is_in_the_evidence_log(
    api: Api, archive: EvidenceArchive, grading: FakeGrading
) -> None:
    # Live: with the case waiting and accepted by nobody, agent2 and the reviewer each got the
    # customer's frame as image/jpeg, and no custody entry was written.
    case_id = await _case(api)
    grading.rooms.add(case_id)
    assessment = f"/api/cases/{case_id}/assessment"
    frame = f"/api/cases/{case_id}/frames/{FRAME_ID}"
    for who, status, code in (
        ("grace", 409, "invalid_state"),
        ("alan", 409, "invalid_state"),
        ("rita", 403, "forbidden"),
        ("ada", 409, "invalid_state"),
    ):
        client = await api.client(who)
        for url in (assessment, frame):
            response = await client.get(url, headers=REASON if who == "ada" else None)
            await _refused(response, status, code)
    assert _views(await archive.log.entries()) == []

    # Once alan takes the call, alan sees the view and the frame; each frame read is logged.
    accepted = await (await api.client("alan")).post(f"/api/cases/{case_id}/accept")
    assert accepted.status == 200
    alan = await api.client("alan")
    body = await (await alan.get(assessment)).json()
    assert [f["url"] for f in body["frames"]] == [frame]
    for _ in range(2):
        response = await alan.get(frame)
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert await response.read() == JPEG
    views = _views(await archive.log.entries())
    assert len(views) == 2
    assert views[0]["actor"] == api.users["alan"].id
    assert views[0]["actor_name"] == "Alan"
    assert (views[0]["case_id"], views[0]["frame_id"]) == (case_id, FRAME_ID)
    assert views[0]["subject"] == f"case:{case_id}" and views[0]["what"] == f"frame:{FRAME_ID}"
    assert views[0]["reason"] == "holds the call" and views[0]["grant"] == "holder"
    assert views[0]["item_id"] is None

    # Another agent and the reviewer are refused; so is an admin who gives no reason.
    for who, code, words in (
        ("grace", "forbidden", ("held by another agent",)),
        ("rita", "forbidden", ("role",)),
        ("ada", "forbidden", ("X-Inspect-Reason",)),
    ):
        client = await api.client(who)
        for url in (assessment, frame):
            await _refused(await client.get(url), 403, code, *words)
    assert len(_views(await archive.log.entries())) == 2

    # An admin with a reason sees it: the timeline and the evidence log both say who and why.
    ada = await api.admin
    assert (await ada.get(frame, headers=REASON)).status == 200
    view = _views(await archive.log.entries())[-1]
    assert view["actor"] == api.users["ada"].id and view["actor_name"] == "Ada"
    assert view["reason"] == REASON["X-Inspect-Reason"] and view["grant"] == "override"
    overrides = [e for e in await _events(api, case_id) if e["type"] == "case.access_override"]
    assert [(e["actor"], e["data"]["action"], e["data"]["reason"]) for e in overrides] == [
        (api.users["ada"].id, "view_live", REASON["X-Inspect-Reason"])
    ]
    assert overrides[0]["data"]["holder"] == api.users["alan"].id
    assert overrides[0]["data"]["actor_name"] == "Ada"


# -- I2 -----------------------------------------------------------------------------------------


async def test_i2_frames_are_only_served_for_a_case_that_exists(
    api: Api, grading: FakeGrading, archive: EvidenceArchive
) -> None:
    # From code: /frames/{f} looked the id up in the grading view without asking whether a
    # case had it, so a camera room's frames were one timestamp guess away.
    grading.rooms.update({"camera:c1", "nothing-here"})
    ada = await api.admin
    for case_id in ("camera:c1", "nothing-here"):
        for url in (f"/api/cases/{case_id}/frames/{FRAME_ID}", f"/api/cases/{case_id}/assessment"):
            response = await ada.get(url, headers=REASON)
            await _refused(response, 404, "not_found", "no case")
            # An agent is told the same: the case is looked up before who holds it.
            await _refused(await (await api.agent).get(url), 404, "not_found", "no case")
    assert _views(await archive.log.entries()) == []
    held = await _case(api, holder="alan")
    response = await (await api.agent).get(f"/api/cases/{held}/frames/{FRAME_ID}")
    await _refused(response, 404, "not_found", "no frame")


# -- the admin override, and who the timeline names ---------------------------------------------


async def test_an_admin_acts_on_a_case_only_with_a_reason_and_the_timeline_keeps_it(
    api: Api,
) -> None:
    held = await _case(api, holder="alan")
    ada = await api.admin
    url = f"/api/cases/{held}/decision"
    await _refused(await ada.post(url, json=REFUND), 403, "forbidden", "X-Inspect-Reason")
    short = await ada.post(url, json=REFUND, headers={"X-Inspect-Reason": "x"})
    await _refused(short, 400, "invalid_request", "X-Inspect-Reason")
    assert (await api.services.cases.require(held)).state.value == "in_call"
    decided = await ada.post(url, json=REFUND, headers=REASON)
    assert decided.status == 200, await decided.text()
    events = await _events(api, held)
    override, decision = events[-2:]
    assert override["type"] == "case.access_override"
    assert override["actor"] == api.users["ada"].id and override["actor_name"] == "Ada"
    assert override["data"] == {
        "action": "decide",
        "reason": REASON["X-Inspect-Reason"],
        "actor_name": "Ada",
        "holder": api.users["alan"].id,
        "state": "in_call",
    }
    assert decision["type"] == "case.decided" and decision["actor"] == api.users["ada"].id

    # A waiting case nobody accepted may be decided by an admin (from photos, say), with a
    # reason; its video may not be seen or recorded by anyone before a call.
    waiting = await _case(api)
    url = f"/api/cases/{waiting}/decision"
    await _refused(await ada.post(url, json=REFUND), 403, "forbidden", "never accepted")
    assert (await ada.post(url, json=REFUND, headers=REASON)).status == 200
    assert (await _events(api, waiting))[-2]["data"]["holder"] is None

    # An admin who holds the case is its holder: no reason needed, no override written.
    own = await _case(api, holder="ada")
    assert (await ada.post(f"/api/cases/{own}/decision", json=REFUND)).status == 200
    assert "case.access_override" not in [e["type"] for e in await _events(api, own)]


async def test_api_tokens_follow_the_same_rules(api: Api) -> None:
    admin = await api.admin
    tokens = {}
    for role in ("agent", "admin"):
        issued = await admin.post("/api/tokens", json={"name": f"{role} bot", "role": role})
        tokens[role] = {"Authorization": f"Bearer {(await issued.json())['token']}"}
    anon = await api.anon
    held = await _case(api, holder="alan")
    for role, status in (("agent", 403), ("admin", 403)):
        response = await anon.post(f"/api/cases/{held}/decision", json=REFUND, headers=tokens[role])
        assert response.status == status, await response.text()
    response = await anon.post(
        f"/api/cases/{held}/decision", json=REFUND, headers={**tokens["admin"], **REASON}
    )
    assert response.status == 200, await response.text()
    assert (await _events(api, held))[-2]["actor"].startswith("token:")

    # An agent token that took a call is that call's holder.
    own = await _case(api)
    assert (await anon.post(f"/api/cases/{own}/accept", headers=tokens["agent"])).status == 200
    decided = await anon.post(f"/api/cases/{own}/decision", json=REFUND, headers=tokens["agent"])
    assert decided.status == 200, await decided.text()


async def test_a_customer_chat_is_named_by_the_case_not_by_the_name_they_typed(api: Api) -> None:
    case_id = await _case(api)
    await api.services.cases.record_chat(
        case_id,
        {
            "seq": 1,
            "text": "hello",
            "sender": {"participant_id": "p1", "role": "customer", "name": "Agent Smith (staff)"},
        },
    )
    chat = [e for e in await _events(api, case_id) if e["type"] == "chat.message"][0]
    assert chat["actor"] == f"customer:{case_id}"
    assert chat["actor_name"] == "Mia Example (customer)"
