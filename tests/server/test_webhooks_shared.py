"""Two nodes dispatching from one outbox, on each backend, to a receiver that fails at random:
every delivery is taken exactly once, each attempt is sent by one node, and the events of a
case arrive in order (the next is never sent before the one before it was accepted)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.cases import Case, CaseEvent, CaseUpdate, WebhookConfig, WebhookDispatcher, WebhookEvent
from server.outbound import OutboundGuard
from server.storage.cases import CaseStore
from server.storage.postgres import PostgresCaseStore, PostgresDatabase, PostgresWebhookStore
from server.storage.sqlite import Database, SqliteCaseStore, SqliteWebhookStore
from server.storage.webhooks import WebhookStore
from tests.postgres_server import (  # noqa: F401 - fixture: the session's PostgreSQL
    create_schema,
    drop_schemas,
    postgres_url,
)
from tests.server.storage.test_case_store_contract import make_case

CASES = 8
CHANGES = 4  # events per case after case.created
#: Events are due when they happen: now (the dispatchers run on the real clock).
T0 = time.time() - 100


@dataclass
class FlakyReceiver:
    """Accepts a delivery at random (seeded), about half the time; keeps every request."""

    rng: random.Random = field(default_factory=lambda: random.Random(20261204))
    hits: list[tuple[str, str, int, int]] = field(default_factory=list)  # case, delivery, n, status
    in_flight: set[str] = field(default_factory=set)
    overlapped: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        delivery = request.headers["X-Inspect-Delivery"]
        if delivery in self.in_flight:
            self.overlapped.append(delivery)  # one attempt sent twice at once
        self.in_flight.add(delivery)
        try:
            await asyncio.sleep(self.rng.random() * 0.01)
            status = 200 if self.rng.random() < 0.5 else 503
            n = int(data["case"]["facts"]["n"]) if data["case"].get("facts") else 0
            self.hits.append((data["case"]["id"], delivery, n, status))
            if status == 200:
                self.accepted.add(delivery)
            self.changed.set()
            return web.Response(status=status)
        finally:
            self.in_flight.discard(delivery)


def _bump(case: Case) -> CaseUpdate:
    n = int((case.facts or {}).get("n", 0)) + 1
    values: dict[str, Any] = {"facts": {"n": n}, "updated_at": T0 + n}
    after = dataclasses.replace(case, **values)
    return CaseUpdate(
        values=values,
        event=CaseEvent(T0 + n, "case.bumped", "u", {"n": n}),
        webhook=WebhookEvent.of("case.bumped", case.id, T0 + n, after.to_json()),
    )


Opened = tuple[CaseStore, WebhookStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def open_node(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[Opened]]]:
    """``await open_node(url)``: one node's case and webhook stores on the shared database
    (its own connection or pool), the case store sending to ``url``."""
    closers: list[Callable[[], Awaitable[None]]] = []
    # Looked up only for PostgreSQL, so the SQLite run needs no server.
    url: str = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    schema = await create_schema(url) if url else ""

    async def open_one(hook: str) -> Opened:
        if request.param == "sqlite":
            db = await Database.open(tmp_path / "shared.db")
            closers.append(db.aclose)
            return SqliteCaseStore(db, webhook_urls=(hook,)), SqliteWebhookStore(db)
        pg = await PostgresDatabase.open(url, schema=schema)
        closers.append(pg.aclose)
        return PostgresCaseStore(pg, webhook_urls=(hook,)), PostgresWebhookStore(pg)

    try:
        yield open_one
    finally:
        for close in closers:
            await close()
        if schema:
            await drop_schemas(url, [schema])


async def test_two_nodes_deliver_each_case_in_order_through_random_failures(
    open_node: Callable[[str], Awaitable[Opened]], aiohttp_server: Any
) -> None:
    receiver = FlakyReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    hook = str(server.make_url("/hook"))

    config = WebhookConfig(
        base_delay_s=0.01, max_delay_s=0.05, max_attempts=1000, request_timeout_s=2.0,
        lease_s=10.0, poll_s=0.1,
    )  # fmt: skip
    nodes = [await open_node(hook) for _ in range(2)]
    dispatchers = [
        WebhookDispatcher(hooks, config, guard=OutboundGuard(("127.0.0.1",))) for _, hooks in nodes
    ]
    for dispatcher in dispatchers:
        await dispatcher.start()
    try:
        # the cases are made and changed on both nodes, interleaved
        for k in range(CASES):
            store = nodes[k % 2][0]
            case = make_case(f"c{k}", T0 + k)
            await store.create(
                case,
                event=CaseEvent(T0 + k, "case.created", "u", {}),
                webhook=WebhookEvent.of("case.created", case.id, T0 + k, case.to_json()),
            )
            dispatchers[k % 2].notify()
        for round_ in range(CHANGES):
            for k in range(CASES):
                node = (k + round_ + 1) % 2
                await nodes[node][0].mutate(f"c{k}", _bump)
                dispatchers[node].notify()

        total = CASES * (CHANGES + 1)
        async with asyncio.timeout(30):
            while len(receiver.accepted) < total:
                receiver.changed.clear()
                await receiver.changed.wait()
            # the last acceptance is being marked by the node that sent it
            while await nodes[0][1].pending_count():  # noqa: ASYNC110 - another node's commit
                await asyncio.sleep(0.01)
    finally:
        for dispatcher in dispatchers:
            await dispatcher.aclose()

    assert receiver.overlapped == []
    accepted = [(c, d, n) for c, d, n, status in receiver.hits if status == 200]
    assert len(accepted) == total == len({d for _, d, _ in accepted})  # each once
    by_case: dict[str, list[int]] = defaultdict(list)
    for case_id, _delivery, n, _status in receiver.hits:
        by_case[case_id].append(n)
    for case_id, sent in by_case.items():
        # every attempt, failed or not, in event order: nothing overtook an unaccepted event
        assert sent == sorted(sent), case_id
        assert sorted(set(sent)) == list(range(CHANGES + 1)), case_id
    failures = sum(1 for *_, status in receiver.hits if status != 200)
    assert failures > total // 4  # the receiver did fail, often
