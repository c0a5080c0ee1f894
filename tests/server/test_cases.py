"""The case service: state machine, timeline, listeners, the CaseDirectory contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from server.cases import (
    CaseKind,
    CaseService,
    CaseState,
    Cosmetic,
    Functional,
    NewCase,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
    SupportOutcome,
    SupportVerdict,
)
from server.errors import DomainError, InvalidRequest, InvalidState, NotFound
from server.storage.sqlite.cases import SqliteCaseStore
from server.storage.sqlite.database import Database
from signaling.messages import Role
from signaling.ports import CaseDirectory, CaseSummary, Identity

AGENT = Identity(subject="u_agent", name="Alan", role=Role.AGENT)
OTHER = Identity(subject="u_other", name="Olga", role=Role.AGENT)
FACTS = ReturnFacts(Cosmetic.AS_NEW, Functional.WORKS, Packaging.DAMAGED, True)


@pytest.fixture
async def cases(tmp_path: Path) -> AsyncIterator[CaseService]:
    db = await Database.open(tmp_path / "cases.db")
    yield CaseService(SqliteCaseStore(db))
    await db.aclose()


async def test_state_machine(cases: CaseService) -> None:
    directory: CaseDirectory = cases
    case = await cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u_admin")
    assert case.state is CaseState.CREATED

    # changes that do not apply leave the case alone
    assert (await directory.customer_left(case.id)).state == "created"
    assert (await directory.call_started(case.id, AGENT)).state == "created"

    waiting = await directory.customer_arrived(case.id)
    assert waiting.state == "waiting" and waiting.waiting_since is not None
    assert (await directory.customer_left(case.id)).state == "created"
    assert (await directory.customer_arrived(case.id)).state == "waiting"
    in_call = await directory.call_started(case.id, AGENT)
    assert (in_call.state, in_call.agent_id) == ("in_call", "u_agent")
    # the customer dropping out of a call does not take it back to the queue
    assert (await directory.customer_left(case.id)).state == "in_call"
    assert (await directory.customer_arrived(case.id)).state == "in_call"

    with pytest.raises(InvalidState):
        await cases.close(case.id, actor="u_agent")
    with pytest.raises(InvalidState):
        await cases.transition(case.id, CaseState.WAITING, actor="u_agent")
    with pytest.raises(InvalidRequest):
        await cases.decide(case.id, SupportVerdict(SupportOutcome.RESOLVED, "x"), actor="u")

    decided = await cases.decide(
        case.id,
        ReturnVerdict(ReturnDecision.PARTIAL_REFUND, FACTS, Decimal("9.99"), "EUR"),
        actor="u_agent",
    )
    assert decided.state is CaseState.DECIDED
    assert decided.refund_amount == Decimal("9.99")
    assert decided.facts == FACTS.to_json()
    closed = await cases.close(case.id, actor="u_agent")
    assert closed.state is CaseState.CLOSED
    assert closed.created_at <= closed.waiting_at <= closed.in_call_at  # type: ignore[operator]
    assert closed.in_call_at <= closed.decided_at <= closed.closed_at  # type: ignore[operator]
    for to in CaseState:
        with pytest.raises(InvalidState):
            await cases.transition(case.id, to, actor="u_agent")

    types = [event.type for event in await cases.events(case.id)]
    assert types == [
        "case.created",
        "case.state_changed",  # waiting
        "case.state_changed",  # created
        "case.state_changed",  # waiting
        "case.state_changed",  # in_call
        "case.decided",
        "case.closed",
    ]


def test_partial_refund_needs_an_amount() -> None:
    with pytest.raises(InvalidRequest) as caught:
        ReturnVerdict(ReturnDecision.PARTIAL_REFUND, FACTS)
    assert caught.value.fields == ("refund_amount",)
    with pytest.raises(InvalidRequest):
        ReturnVerdict(ReturnDecision.PARTIAL_REFUND, FACTS, Decimal("0"))


async def test_strict_accept(cases: CaseService) -> None:
    case = await cases.create(NewCase(CaseKind.SUPPORT, "Sam"), actor="u")
    with pytest.raises(DomainError) as caught:
        await cases.accept(case.id, AGENT)
    assert caught.value.code == "not_waiting"
    await cases.customer_arrived(case.id)
    assert (await cases.accept(case.id, AGENT)).agent_id == "u_agent"
    assert (await cases.accept(case.id, AGENT)).state is CaseState.IN_CALL  # idempotent
    with pytest.raises(DomainError) as caught:
        await cases.accept(case.id, OTHER)
    assert caught.value.code == "already_accepted"
    with pytest.raises(NotFound):
        await cases.accept("missing", AGENT)
    assert await cases.get("missing") is None


async def test_listeners_see_every_change(cases: CaseService) -> None:
    seen: list[CaseSummary] = []
    seen_async: list[str] = []

    async def async_listener(summary: CaseSummary) -> None:
        seen_async.append(summary.state)

    def broken(summary: CaseSummary) -> None:
        raise RuntimeError("listener bug must not break the case service")

    cases.add_listener(seen.append)
    cases.add_listener(broken)
    cases.add_listener(async_listener)
    case = await cases.create(NewCase(CaseKind.RETURN, "Mia", order_id="O-1"), actor="u")
    await cases.customer_arrived(case.id)
    await cases.customer_arrived(case.id)  # no change, no event
    await cases.call_started(case.id, AGENT)
    assert [s.state for s in seen] == ["created", "waiting", "in_call"]
    assert seen_async == ["created", "waiting", "in_call"]
    assert seen[-1].order_id == "O-1" and seen[-1].agent_id == "u_agent"


async def test_chat_is_kept_once_per_seq(cases: CaseService) -> None:
    case = await cases.create(NewCase(CaseKind.SUPPORT, "Sam"), actor="u")
    message = {
        "seq": 1,
        "client_id": "c1",
        "text": "hello",
        "ts": 1_800_000_000.5,
        "sender": {"participant_id": "p1", "role": "customer", "name": "Sam"},
    }
    await cases.record_chat(case.id, message)
    await cases.record_chat(case.id, message)
    await cases.record_chat(case.id, {**message, "seq": 2, "text": "again"})
    await cases.record_chat("missing", message)  # silently nothing: no such case
    chats = [e for e in await cases.events(case.id) if e.type == "chat.message"]
    # The actor is the customer's subject, never the socket or the name they typed.
    customer = f"customer:{case.id}"
    assert [(e.data["seq"], e.data["text"], e.actor) for e in chats] == [
        (1, "hello", customer),
        (2, "again", customer),
    ]


async def test_model_view_and_join_links_go_to_the_timeline(cases: CaseService) -> None:
    seen: list[CaseSummary] = []
    case = await cases.create(NewCase(CaseKind.RETURN, "Mia"), actor="u")
    cases.add_listener(seen.append)
    view = {
        "grade": "B",
        "confidence": 0.71,
        "status": "final",
        "model_version": "m1",
        "damage": [{"label": "scratch", "p": 0.8}],
    }
    await cases.record_model_view(case.id, view)
    kept = await cases.require(case.id)
    assert kept.grading == {"model": view} and kept.state is CaseState.CREATED
    assert seen == []  # not a change of the case's state
    await cases.note_join_link(case.id, actor="u", expires_at=1_800_000_000.0)
    entries = (await cases.events(case.id))[1:]
    assert [(e.type, e.actor) for e in entries] == [
        ("grading.model_view", "model"),
        ("case.join_link", "u"),
    ]
    assert entries[0].data["damage"] == ["scratch"] and entries[0].data["grade"] == "B"
    assert entries[1].data == {
        "expires_at": "2027-01-15T08:00:00.000Z",
        "holder": None,
        "state": "created",
    }

    await cases.customer_arrived(case.id)
    await cases.decide(case.id, ReturnVerdict(ReturnDecision.REFUND, FACTS), actor="u")
    with pytest.raises(InvalidState):
        await cases.note_join_link(case.id, actor="u", expires_at=1_800_000_000.0)
    with pytest.raises(NotFound):
        await cases.record_model_view("missing", view)
