"""What only the PostgreSQL backend promises: several nodes on one database. Two stores on two
pools stand for two nodes: they never lease the same delivery, a (target, case) never has two
deliveries in flight, changes of one case are serialised, and the schema history is SQLite's."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from server.cases import Case, CaseEvent, CaseUpdate, Delivery, WebhookEvent
from server.storage.postgres import (
    SCHEMA_VERSION,
    PostgresCaseStore,
    PostgresDatabase,
    PostgresWebhookStore,
    SchemaTooNew,
)
from server.storage.postgres.database import _MIGRATIONS, BASE_VERSION
from server.storage.sqlite.database import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION

from .test_case_store_contract import make_case

T0 = 1_800_000_000.0
HOOKS = ("https://one.example/hook", "https://two.example/hook")


@pytest.fixture
async def nodes(postgres_url: str, postgres_schema: str) -> AsyncIterator[list[PostgresDatabase]]:
    """Two pools on one schema: two nodes sharing the database."""
    dbs = [
        await PostgresDatabase.open(postgres_url, schema=postgres_schema, max_size=8)
        for _ in range(2)
    ]
    yield dbs
    for db in dbs:
        await db.aclose()


async def _add(cases: PostgresCaseStore, case_id: str, at: float) -> Case:
    case = make_case(case_id, at)
    return await cases.create(
        case,
        event=CaseEvent(at, "case.created", "u", {}),
        webhook=WebhookEvent.of("case.created", case_id, at, case.to_json()),
    )


def _bump(at: float) -> Any:
    """A change that counts itself in ``facts["n"]``, with a webhook event."""

    def decide(case: Case) -> CaseUpdate:
        n = int((case.facts or {}).get("n", 0)) + 1
        values: dict[str, Any] = {"facts": {"n": n}, "updated_at": at + n}
        after = dataclasses.replace(case, **values)
        return CaseUpdate(
            values=values,
            event=CaseEvent(at + n, "case.bumped", "u", {"n": n}),
            webhook=WebhookEvent.of("case.bumped", case.id, at + n, after.to_json()),
        )

    return decide


async def test_mutate_from_two_nodes_loses_no_update(nodes: list[PostgresDatabase]) -> None:
    stores = [PostgresCaseStore(db, webhook_urls=HOOKS[:1]) for db in nodes]
    await _add(stores[0], "c1", T0)
    rounds = 40
    results = await asyncio.gather(*(stores[i % 2].mutate("c1", _bump(T0)) for i in range(rounds)))
    assert all(changed for _, changed in results)
    # each change saw the one before it: every count from 1 to rounds once, none lost
    assert sorted(case.facts["n"] for case, _ in results if case.facts) == list(
        range(1, rounds + 1)
    )
    final = await stores[1].get("c1")
    assert final is not None and final.facts == {"n": rounds}
    events = await stores[0].events("c1")
    assert [e.data["n"] for e in events[1:]] == list(range(1, rounds + 1))  # in commit order
    hooks = PostgresWebhookStore(nodes[0])
    assert await hooks.pending_count() == rounds + 1  # the outbox rows committed with them


async def test_two_nodes_never_claim_the_same_delivery(nodes: list[PostgresDatabase]) -> None:
    cases = PostgresCaseStore(nodes[0], webhook_urls=HOOKS)
    for n in range(30):
        await _add(cases, f"c{n}", T0 + n)
    hooks = [PostgresWebhookStore(db) for db in nodes]
    heads = await hooks[0].pending_heads()
    assert len(heads) == 60

    async def claimer(store: PostgresWebhookStore) -> list[Delivery]:
        claimed: list[Delivery] = []
        while batch := await store.claim_due(now=T0 + 100, lease_s=60, limit=3):
            claimed += batch
        return claimed

    # four claimers per node, all at once
    batches = await asyncio.gather(*(claimer(hooks[i % 2]) for i in range(8)))
    claimed = [d.row_id for batch in batches for d in batch]
    assert len(claimed) == len(set(claimed))  # nobody got a delivery twice
    assert sorted(claimed) == sorted(d.row_id for d in heads)  # and every due head was taken
    assert all(batches)  # the work was shared out, not taken by one claimer
    assert await hooks[1].claim_due(now=T0 + 100, lease_s=60) == []  # all leased


async def test_a_queue_has_one_delivery_in_flight_in_order(nodes: list[PostgresDatabase]) -> None:
    cases = PostgresCaseStore(nodes[0], webhook_urls=HOOKS[:1])
    a, b = (PostgresWebhookStore(db) for db in nodes)
    await _add(cases, "c1", T0)
    await cases.mutate("c1", _bump(T0))
    await cases.mutate("c1", _bump(T0))

    first = await a.claim_due(now=T0 + 10, lease_s=30)
    assert [d.event for d in first] == ["case.created"]
    # the head is held: the next event of the case waits, on any node
    assert await b.claim_due(now=T0 + 10, lease_s=30) == []

    # a retry ends the lease but keeps the place in the queue
    await a.retry_later(first[0].row_id, attempts=1, next_attempt_at=T0 + 20, error="HTTP 503")
    assert await b.claim_due(now=T0 + 15, lease_s=30) == []  # not due yet
    again = await b.claim_due(now=T0 + 20, lease_s=30)
    assert [(d.row_id, d.attempts) for d in again] == [(first[0].row_id, 1)]

    # a node that dies mid-send: when its lease runs out another node takes the delivery
    assert await a.claim_due(now=T0 + 49, lease_s=30) == []
    taken = await a.claim_due(now=T0 + 50, lease_s=30)
    assert [d.row_id for d in taken] == [first[0].row_id]

    await a.mark_delivered(taken[0].row_id, attempts=2, at=T0 + 51)
    nxt = await b.claim_due(now=T0 + 51, lease_s=30)
    assert [d.event for d in nxt] == ["case.bumped"] and nxt[0].row_id > first[0].row_id
    await b.mark_failed(nxt[0].row_id, attempts=8, at=T0 + 52, error="HTTP 500")
    last = await a.claim_due(now=T0 + 52, lease_s=30)
    assert [d.event for d in last] == ["case.bumped"] and last[0].row_id > nxt[0].row_id
    await a.cancel(last[0].row_id, at=T0 + 53)
    assert await b.claim_due(now=T0 + 1000, lease_s=30) == []


async def test_the_schema_history_is_sqlites(postgres_url: str, postgres_schema: str) -> None:
    assert SCHEMA_VERSION == SQLITE_SCHEMA_VERSION
    # every version after the PostgreSQL schema was first written has its migration here
    assert set(range(BASE_VERSION + 1, SCHEMA_VERSION + 1)) <= set(_MIGRATIONS)
    for _ in range(2):  # a second start finds the schema made and changes nothing
        db = await PostgresDatabase.open(postgres_url, schema=postgres_schema)
        rows = await db.fetch("SELECT version FROM schema_version")
        await db.aclose()
        assert [row["version"] for row in rows] == [SCHEMA_VERSION]


async def test_two_nodes_starting_at_once_make_the_schema_once(
    postgres_url: str, postgres_schema: str
) -> None:
    dbs = await asyncio.gather(
        *(PostgresDatabase.open(postgres_url, schema=postgres_schema) for _ in range(4))
    )
    try:
        assert await dbs[0].fetchval("SELECT COUNT(*) FROM schema_version") == 1
    finally:
        for db in dbs:
            await db.aclose()


async def test_a_newer_database_is_refused(postgres_url: str, postgres_schema: str) -> None:
    db = await PostgresDatabase.open(postgres_url, schema=postgres_schema)
    await db.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
        (SCHEMA_VERSION + 1, T0),
    )
    await db.aclose()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await PostgresDatabase.open(postgres_url, schema=postgres_schema)


async def test_connections_stay_in_their_schema(postgres_url: str, postgres_schema: str) -> None:
    db = await PostgresDatabase.open(postgres_url, schema=postgres_schema)
    try:
        assert await db.fetchval("SELECT current_schema()") == postgres_schema
        assert await db.ping()
    finally:
        await db.aclose()
    assert not await db.ping()  # closed
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            postgres_schema,
        )
    finally:
        await conn.close()
    assert {row["table_name"] for row in tables} >= {
        "schema_version",
        "cases",
        "case_events",
        "webhooks",
        "webhook_outbox",
    }


async def test_a_schema_name_is_a_plain_identifier() -> None:
    with pytest.raises(ValueError, match="plain schema name"):
        await PostgresDatabase.open("postgresql://unused", schema="x; DROP TABLE cases")
