"""The WebhookStore contract, run against every backend: targets, and the outbox rows that case
changes enqueue as the dispatcher sees them (head of line per target and case, retries, the
end of a delivery, pruning)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from server.cases import (
    Case,
    CaseEvent,
    CaseKind,
    CaseState,
    CaseUpdate,
    Delivery,
    Webhook,
    WebhookEvent,
)

from .conftest import Backend, OpenBackend

T0 = 1_800_000_000.0
HOOK = "https://hooks.example/inspect"


def _case(case_id: str, at: float) -> Case:
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(Case)}
    fields.update(
        id=case_id,
        kind=CaseKind.SUPPORT,
        state=CaseState.CREATED,
        customer_name="Sam",
        refund_state="none",
        created_at=at,
        updated_at=at,
    )
    return Case(**fields)


async def _create(store: Backend, case_id: str, at: float) -> Case:
    """A new case whose ``case.created`` event goes to every target."""
    case = _case(case_id, at)
    return await store.cases.create(
        case,
        event=CaseEvent(at, "case.created", "u", {"kind": "support"}),
        webhook=WebhookEvent.of("case.created", case_id, at, case.to_json()),
    )


async def _touch(store: Backend, case_id: str, at: float) -> None:
    """A later webhook event of the case (a note that it is waiting)."""

    def decide(case: Case) -> CaseUpdate:
        values: dict[str, Any] = {"state": CaseState.WAITING, "waiting_at": at, "updated_at": at}
        after = dataclasses.replace(case, **values)
        return CaseUpdate(
            values=values,
            event=CaseEvent(at, "case.state_changed", "customer", {"to": "waiting"}),
            webhook=WebhookEvent.of("case.state_changed", case_id, at, after.to_json()),
        )

    await store.cases.mutate(case_id, decide)


def _queues(heads: list[Delivery]) -> list[tuple[str, str | None, str]]:
    return [(d.case_id, d.webhook_id, d.event) for d in heads]


async def test_targets_are_listed_oldest_first_with_their_secrets(backend: Backend) -> None:
    later = Webhook(id="wh_b", url="https://b.example/hook", created_at=T0 + 5)
    earlier = Webhook(id="wh_a", url="https://a.example/hook", created_at=T0)
    await backend.webhooks.add_target(later, "secret-b", created_by="u_admin")
    await backend.webhooks.add_target(earlier, "secret-a", created_by=None)
    assert await backend.webhooks.list_targets() == [earlier, later]
    assert await backend.webhooks.target_secret("wh_a") == "secret-a"
    assert await backend.webhooks.target_secret("wh_b") == "secret-b"
    assert await backend.webhooks.target_secret("wh_gone") is None


async def test_an_event_becomes_one_delivery_per_target(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK, "https://second.example/hook"))
    admin = Webhook(id="wh_a", url="https://a.example/hook", created_at=T0)
    await store.webhooks.add_target(admin, "secret-a", created_by=None)
    case = await _create(store, "c1", T0 + 1)

    heads = await store.webhooks.pending_heads()
    assert sorted((d.webhook_id or "", d.url) for d in heads) == [
        ("", HOOK),
        ("", "https://second.example/hook"),
        ("wh_a", "https://a.example/hook"),
    ]
    assert len({d.delivery_id for d in heads}) == 3
    for delivery in heads:
        assert (delivery.event, delivery.case_id) == ("case.created", "c1")
        assert (delivery.attempts, delivery.next_attempt_at) == (0, T0 + 1)  # due at once
        body = json.loads(delivery.body)
        assert body["event"] == "case.created" and body["case"] == case.to_json()
    assert await store.webhooks.pending_count() == 3


async def test_no_target_no_delivery(backend: Backend) -> None:
    await _create(backend, "c1", T0)
    assert await backend.webhooks.pending_heads() == []
    assert await backend.webhooks.pending_count() == 0


async def test_only_the_oldest_of_each_case_and_target_is_a_head(
    open_backend: OpenBackend,
) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    await _create(store, "c1", T0)
    await _touch(store, "c1", T0 + 1)
    await _create(store, "c2", T0 + 2)
    assert await store.webhooks.pending_count() == 3
    heads = await store.webhooks.pending_heads()
    assert _queues(heads) == [("c1", None, "case.created"), ("c2", None, "case.created")]

    # delivering c1's head makes its next event the head; c2 is untouched
    await store.webhooks.mark_delivered(heads[0].row_id, attempts=1, at=T0 + 3)
    heads = await store.webhooks.pending_heads()
    assert _queues(heads) == [("c1", None, "case.state_changed"), ("c2", None, "case.created")]
    assert await store.webhooks.pending_count() == 2


async def test_a_retry_keeps_its_place_and_is_ordered_by_when_it_is_due(
    open_backend: OpenBackend,
) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    await _create(store, "c1", T0)
    await _touch(store, "c1", T0 + 1)
    await _create(store, "c2", T0 + 2)
    first = (await store.webhooks.pending_heads())[0]
    await store.webhooks.retry_later(first.row_id, attempts=1, next_attempt_at=T0 + 60, error="x")

    heads = await store.webhooks.pending_heads()
    # c2 is now due first; c1's retry still holds back its later event
    assert _queues(heads) == [("c2", None, "case.created"), ("c1", None, "case.created")]
    retried = heads[1]
    assert (retried.row_id, retried.attempts, retried.next_attempt_at) == (
        first.row_id,
        1,
        T0 + 60,
    )
    assert retried.delivery_id == first.delivery_id  # the same delivery, tried again


async def test_failed_and_cancelled_deliveries_are_finished(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    await _create(store, "c1", T0)
    await _touch(store, "c1", T0 + 1)
    head = (await store.webhooks.pending_heads())[0]
    await store.webhooks.mark_failed(head.row_id, attempts=8, at=T0 + 5, error="HTTP 503")
    head = (await store.webhooks.pending_heads())[0]
    assert head.event == "case.state_changed"  # the failure no longer holds the case back
    await store.webhooks.cancel(head.row_id, at=T0 + 6)
    assert await store.webhooks.pending_heads() == []
    assert await store.webhooks.pending_count() == 0


async def test_removing_a_target_cancels_only_its_deliveries(open_backend: OpenBackend) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    admin = Webhook(id="wh_a", url="https://a.example/hook", created_at=T0)
    await store.webhooks.add_target(admin, "secret-a", created_by=None)
    await _create(store, "c1", T0 + 1)
    await _touch(store, "c1", T0 + 2)
    assert await store.webhooks.pending_count() == 4

    assert await store.webhooks.remove_target("wh_a", at=T0 + 3)
    assert not await store.webhooks.remove_target("wh_a", at=T0 + 4)
    assert await store.webhooks.list_targets() == []
    assert await store.webhooks.target_secret("wh_a") is None
    assert await store.webhooks.pending_count() == 2
    assert {d.webhook_id for d in await store.webhooks.pending_heads()} == {None}
    # a later event goes only to the targets that are left
    await _create(store, "c2", T0 + 5)
    assert await store.webhooks.pending_count() == 3


async def test_prune_forgets_only_finished_deliveries_before_the_time(
    open_backend: OpenBackend,
) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    for n in range(3):
        await _create(store, f"c{n}", T0 + n)
    heads = await store.webhooks.pending_heads()
    await store.webhooks.mark_delivered(heads[0].row_id, attempts=1, at=T0 + 10)
    await store.webhooks.mark_failed(heads[1].row_id, attempts=8, at=T0 + 20, error="HTTP 500")

    assert await store.webhooks.prune(finished_before=T0 + 15) == 1
    assert await store.webhooks.prune(finished_before=T0 + 15) == 0
    assert await store.webhooks.prune(finished_before=T0 + 1000) == 1
    assert await store.webhooks.pending_count() == 1  # the pending one is kept however old
    assert _queues(await store.webhooks.pending_heads()) == [("c2", None, "case.created")]


async def test_claimed_heads_are_leased_to_one_caller_until_finished_or_run_out(
    open_backend: OpenBackend,
) -> None:
    store = await open_backend(webhook_urls=(HOOK,))
    await _create(store, "c1", T0)
    await _touch(store, "c1", T0 + 1)
    await _create(store, "c2", T0 + 2)
    assert await store.webhooks.next_due() == T0  # the soonest head, due since it was made

    first = await store.webhooks.claim_due(now=T0 + 10, lease_s=30, limit=1)
    assert _queues(first) == [("c1", None, "case.created")]
    held = {first[0].row_id}
    # c1's next event waits behind its head; c2's head is free
    second = await store.webhooks.claim_due(now=T0 + 10, lease_s=30)
    assert _queues(second) == [("c2", None, "case.created")]
    held.add(second[0].row_id)
    assert await store.webhooks.claim_due(now=T0 + 10, lease_s=30) == []
    # the heads are leased until T0 + 40: to their holder nothing else is pending
    assert await store.webhooks.next_due() == T0 + 40
    assert await store.webhooks.next_due(held=held) is None

    # a retry ends the lease and keeps the place in the queue
    await store.webhooks.retry_later(
        first[0].row_id, attempts=1, next_attempt_at=T0 + 20, error="HTTP 503"
    )
    assert await store.webhooks.next_due(held={second[0].row_id}) == T0 + 20
    assert await store.webhooks.claim_due(now=T0 + 15, lease_s=30) == []
    again = await store.webhooks.claim_due(now=T0 + 20, lease_s=30)
    assert [(d.row_id, d.attempts) for d in again] == [(first[0].row_id, 1)]

    # a holder that died mid-send: once its lease runs out, the delivery is taken again
    assert await store.webhooks.claim_due(now=T0 + 39, lease_s=30) == []
    taken = await store.webhooks.claim_due(now=T0 + 40, lease_s=30)
    assert {d.row_id for d in taken} == {second[0].row_id}
    taken = await store.webhooks.claim_due(now=T0 + 50, lease_s=30)
    assert [d.row_id for d in taken] == [first[0].row_id]

    # finished: the next event of the case is the head now
    await store.webhooks.mark_delivered(first[0].row_id, attempts=2, at=T0 + 51)
    nxt = await store.webhooks.claim_due(now=T0 + 51, lease_s=30)
    assert _queues(nxt) == [("c1", None, "case.state_changed")]
    await store.webhooks.cancel(nxt[0].row_id, at=T0 + 52)
    await store.webhooks.mark_failed(second[0].row_id, attempts=8, at=T0 + 52, error="HTTP 500")
    assert await store.webhooks.claim_due(now=T0 + 1000, lease_s=30) == []
    assert await store.webhooks.next_due() is None
