"""The CaseStore contract, run against every backend: what is written reads back the same, in
the documented order, and a change, its timeline entry and its outbox rows are one transaction."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest

from server.cases import (
    Case,
    CaseEvent,
    CaseKind,
    CaseState,
    CaseUpdate,
    Webhook,
    WebhookEvent,
)
from server.errors import InvalidState, NotFound

from .conftest import Backend, OpenBackend

T0 = 1_800_000_000.0
HOOK = "https://hooks.example/inspect"


def make_case(case_id: str, at: float = T0, **values: Any) -> Case:
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(Case)}
    fields.update(
        id=case_id,
        kind=CaseKind.RETURN,
        state=CaseState.CREATED,
        customer_name="Mia",
        refund_state="none",
        created_at=at,
        updated_at=at,
    )
    fields.update(values)
    return Case(**fields)


def created(case: Case, actor: str = "u_admin") -> CaseEvent:
    return CaseEvent(at=case.created_at, type="case.created", actor=actor, data={"kind": "return"})


def webhook(event: str, case: Case, at: float) -> WebhookEvent:
    return WebhookEvent.of(event, case.id, at, case.to_json())


async def add(store: Backend, case: Case, *, with_webhook: bool = False) -> Case:
    hook = webhook("case.created", case, case.created_at) if with_webhook else None
    return await store.cases.create(case, event=created(case), webhook=hook)


def to_waiting(case: Case, at: float) -> CaseUpdate:
    values: dict[str, Any] = {"state": CaseState.WAITING, "waiting_at": at, "updated_at": at}
    after = dataclasses.replace(case, **values)
    return CaseUpdate(
        values=values,
        event=CaseEvent(at, "case.state_changed", "customer", {"from": "created", "to": "waiting"}),
        webhook=webhook("case.state_changed", after, at),
    )


async def test_create_reads_back_the_same_case(backend: Backend) -> None:
    case = make_case(
        "c1",
        kind=CaseKind.SUPPORT,
        customer_contact="mia@example.com",
        order_id="O-1",
        sku="SKU-9",
        reason="broken lid",
        tracking_number="1Z999",
        unit_id="U-1",
        carrier="UPS, Amazon",
        shipped_at=T0 - 86400,
        delivered_at=T0 - 3600,
    )
    stored = await add(backend, case)
    assert stored == case
    assert await backend.cases.get("c1") == case
    assert await backend.cases.get("missing") is None
    assert await backend.cases.events("c1") == [created(case)]
    assert await backend.cases.events("missing") == []


async def test_list_is_newest_first_with_state_filter_and_paging(backend: Backend) -> None:
    await add(backend, make_case("old", T0))
    await add(backend, make_case("tie-1", T0 + 10))
    await add(backend, make_case("tie-2", T0 + 10))  # same time: the later created comes first
    await add(backend, make_case("new", T0 + 20))
    await backend.cases.mutate("tie-1", lambda case: to_waiting(case, T0 + 30))

    listed = await backend.cases.list_cases(None, limit=100, offset=0)
    assert [c.id for c in listed] == ["new", "tie-2", "tie-1", "old"]
    page = await backend.cases.list_cases(None, limit=2, offset=1)
    assert [c.id for c in page] == ["tie-2", "tie-1"]
    waiting = await backend.cases.list_cases(CaseState.WAITING, limit=100, offset=0)
    assert [c.id for c in waiting] == ["tie-1"]
    assert await backend.cases.list_cases(CaseState.CLOSED, limit=100, offset=0) == []


async def test_counts_by_state(backend: Backend) -> None:
    assert {k: v for k, v in (await backend.cases.counts_by_state()).items() if v} == {}
    for case_id in ("a", "b", "c"):
        await add(backend, make_case(case_id))
    await backend.cases.mutate("b", lambda case: to_waiting(case, T0 + 1))
    counts = {k: v for k, v in (await backend.cases.counts_by_state()).items() if v}
    assert counts == {"created": 2, "waiting": 1}


async def test_mutate_writes_the_values_the_entry_and_the_outbox_together(
    open_backend: OpenBackend,
) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    admin_hook = await _admin_target(store)
    case = await add(store, make_case("c1"), with_webhook=True)
    at = T0 + 60
    grading = {"final_grade": "B", "model": {"grade": "B", "confidence": 0.8}}
    values: dict[str, Any] = {
        "state": CaseState.DECIDED,
        "decision": "partial_refund",
        "refund_amount": Decimal("9.99"),
        "currency": "EUR",
        "facts": {"cosmetic": "light_wear", "accessories_complete": True},
        "grading": grading,
        "note": None,
        "decided_at": at,
        "updated_at": at,
    }
    after = dataclasses.replace(case, **values)
    entry = CaseEvent(at, "case.decided", "u_agent", {"decision": "partial_refund"})
    seen: list[Case] = []

    def decide(current: Case) -> CaseUpdate:
        seen.append(current)
        return CaseUpdate(values=values, event=entry, webhook=webhook("case.decided", after, at))

    result, changed = await store.cases.mutate("c1", decide)

    assert changed and seen[-1] == case  # decide saw the case as stored
    assert result == after  # money stays exact, mappings come back as written
    assert result.refund_amount == Decimal("9.99")
    assert await store.cases.get("c1") == after
    assert (await store.cases.events("c1"))[-1] == entry
    heads = await store.webhooks.pending_heads()
    # one delivery per target (configured and admin), the created event first in each queue
    assert {(d.webhook_id, d.url) for d in heads} == {(None, HOOK), (admin_hook, _ADMIN_URL)}
    assert {d.event for d in heads} == {"case.created"}
    assert await store.webhooks.pending_count() == 4
    await _deliver_heads(store)
    decided = await store.webhooks.pending_heads()
    assert {d.event for d in decided} == {"case.decided"}
    assert len({d.delivery_id for d in decided}) == 2
    body = json.loads(decided[0].body)
    assert body["event"] == "case.decided" and body["case"]["state"] == "decided"
    assert body["case"]["refund_amount"] == 9.99
    assert all(d.body == decided[0].body for d in decided)  # the same event for every target


async def test_a_decision_of_no_change_writes_nothing(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    case = await add(store, make_case("c1"))
    result, changed = await store.cases.mutate("c1", lambda current: None)
    assert (result, changed) == (case, False)
    assert await store.cases.events("c1") == [created(case)]
    assert await store.webhooks.pending_count() == 0


async def test_a_decision_that_raises_leaves_nothing_written(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    case = await add(store, make_case("c1"))

    def refuse(current: Case) -> CaseUpdate:
        raise InvalidState("not now")

    with pytest.raises(InvalidState):
        await store.cases.mutate("c1", refuse)
    assert await store.cases.get("c1") == case
    assert await store.cases.events("c1") == [created(case)]
    assert await store.webhooks.pending_count() == 0


async def test_an_update_the_store_cannot_write_rolls_back(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    case = await add(store, make_case("c1"))
    update = to_waiting(case, T0 + 1)
    bad = CaseUpdate(values={**update.values, "no_such_field": 1}, event=update.event)
    with pytest.raises(ValueError):
        await store.cases.mutate("c1", lambda current: bad)
    assert await store.cases.get("c1") == case
    assert await store.cases.events("c1") == [created(case)]


async def test_mutate_of_a_missing_case(backend: Backend) -> None:
    calls: list[Case] = []

    def decide(case: Case) -> None:
        calls.append(case)

    with pytest.raises(NotFound):
        await backend.cases.mutate("missing", decide)
    assert calls == []


async def test_a_change_without_webhook_enqueues_nothing(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    case = await add(store, make_case("c1"))
    at = T0 + 5
    update = CaseUpdate(
        values={"grading": {"model": {"grade": "A"}}, "updated_at": at},
        event=CaseEvent(at, "grading.model_view", "model", {"grade": "A"}),
    )
    result, changed = await store.cases.mutate("c1", lambda current: update)
    assert changed and result.grading == {"model": {"grade": "A"}} and result.updated_at == at
    assert result.state is case.state
    assert await store.webhooks.pending_count() == 0


async def test_note_appends_an_entry_and_leaves_the_case(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    case = await add(store, make_case("c1"))
    entry = CaseEvent(T0 + 9, "case.join_link", "u_admin", {"expires_at": "2027-01-15T08:00:00Z"})
    assert await store.cases.note("c1", lambda current: entry) == case
    assert await store.cases.get("c1") == case  # updated_at included
    assert await store.cases.events("c1") == [created(case), entry]
    assert await store.webhooks.pending_count() == 0

    def refuse(current: Case) -> CaseEvent:
        raise InvalidState("decided")

    with pytest.raises(InvalidState):
        await store.cases.note("c1", refuse)
    with pytest.raises(NotFound):
        await store.cases.note("missing", lambda current: entry)
    assert await store.cases.events("c1") == [created(case), entry]


async def test_append_once_dedupes_by_key(backend: Backend) -> None:
    case = await add(backend, make_case("c1"))
    first = CaseEvent(T0 + 1, "chat.message", "p1", {"seq": 1, "text": "hello"})
    repeat = CaseEvent(T0 + 2, "chat.message", "p1", {"seq": 1, "text": "hello again"})
    second = CaseEvent(T0 + 3, "chat.message", "p1", {"seq": 2, "text": "bye"})
    keyless = CaseEvent(T0 + 4, "chat.message", "p2", {"text": "no seq"})
    assert await backend.cases.append_once("c1", first, dedup_key="chat:1")
    assert not await backend.cases.append_once("c1", repeat, dedup_key="chat:1")
    assert await backend.cases.append_once("c1", second, dedup_key="chat:2")
    assert await backend.cases.append_once("c1", keyless, dedup_key=None)
    assert await backend.cases.append_once("c1", keyless, dedup_key=None)  # never a repeat
    assert not await backend.cases.append_once("missing", first, dedup_key="chat:1")
    assert await backend.cases.events("c1") == [created(case), first, second, keyless, keyless]
    assert await backend.cases.events("missing") == []


async def test_a_key_dedupes_per_case(backend: Backend) -> None:
    await add(backend, make_case("c1"))
    await add(backend, make_case("c2"))
    chat = CaseEvent(T0 + 1, "chat.message", "p1", {"seq": 1})
    assert await backend.cases.append_once("c1", chat, dedup_key="chat:1")
    assert await backend.cases.append_once("c2", chat, dedup_key="chat:1")


_ADMIN_URL = "https://admin.example/hook"


async def _admin_target(store: Backend) -> str:
    hook = Webhook(id="wh_admin", url=_ADMIN_URL, created_at=T0 - 1)
    await store.webhooks.add_target(hook, "admin-secret", created_by="u_admin")
    return hook.id


async def _deliver_heads(store: Backend) -> None:
    for delivery in await store.webhooks.pending_heads():
        await store.webhooks.mark_delivered(delivery.row_id, attempts=1, at=T0 + 100)
