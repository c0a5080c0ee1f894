"""The case and webhook stores of every backend, opened on a fresh database for each test.

Each backend is one parameter of ``open_backend``: a test written against the Protocols
(``test_case_store_contract.py``, ``test_webhook_store_contract.py``) runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.storage.cases import CaseStore
from server.storage.sqlite.cases import SqliteCaseStore
from server.storage.sqlite.database import Database
from server.storage.sqlite.webhooks import SqliteWebhookStore
from server.storage.webhooks import WebhookStore


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend's stores, sharing one database (the outbox is written by the case store and
    read by the webhook store)."""

    name: str
    cases: CaseStore
    webhooks: WebhookStore


OpenBackend = Callable[..., Awaitable[Backend]]


@pytest.fixture(params=["sqlite"])
async def open_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenBackend]:
    """``await open_backend(webhook_urls=(...))``: the stores of the backend under test, the case
    store configured with those webhook targets. Closed after the test."""
    opened: list[Database] = []

    async def open_sqlite(*, webhook_urls: Sequence[str] = ()) -> Backend:
        db = await Database.open(tmp_path / f"store-{len(opened)}.db")
        opened.append(db)
        return Backend(
            name="sqlite",
            cases=SqliteCaseStore(db, webhook_urls=webhook_urls),
            webhooks=SqliteWebhookStore(db),
        )

    backends = {"sqlite": open_sqlite}
    yield backends[request.param]
    for db in opened:
        await db.aclose()


@pytest.fixture
async def backend(open_backend: OpenBackend) -> Backend:
    """The backend under test with no webhook targets from the configuration."""
    return await open_backend()
