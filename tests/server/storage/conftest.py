"""The stores of every backend, opened on a fresh database for each test.

Each backend is one parameter of ``open_backend`` (the case and webhook stores, which share
the outbox) and of ``database`` (a bare database, for the stores of the other domains): a test
written against the Protocols runs once per backend.
PostgreSQL is the session's server (``tests/postgres_server.py``: the machine's own, else one
started for the tests); each opened backend is a fresh schema of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.storage.cases import CaseStore
from server.storage.database import DatabaseHandle
from server.storage.postgres import PostgresCaseStore, PostgresDatabase, PostgresWebhookStore
from server.storage.sqlite.cases import SqliteCaseStore
from server.storage.sqlite.database import Database
from server.storage.sqlite.webhooks import SqliteWebhookStore
from server.storage.webhooks import WebhookStore
from tests.postgres_server import (  # noqa: F401 - fixtures: the session's PostgreSQL
    create_schema,
    drop_schemas,
    new_postgres_schema,
    postgres_schema,
    postgres_url,
)

BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend's stores, sharing one database (the outbox is written by the case store and
    read by the webhook store)."""

    name: str
    cases: CaseStore
    webhooks: WebhookStore


OpenBackend = Callable[..., Awaitable[Backend]]


@pytest.fixture(params=BACKENDS)
async def open_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenBackend]:
    """``await open_backend(webhook_urls=(...))``: the stores of the backend under test, the case
    store configured with those webhook targets. Closed after the test."""
    closers: list[Callable[[], Awaitable[None]]] = []
    # Looked up only for PostgreSQL, so the SQLite runs need no server.
    url: str = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    schemas: list[str] = []

    async def open_sqlite(*, webhook_urls: Sequence[str] = ()) -> Backend:
        db = await Database.open(tmp_path / f"store-{len(closers)}.db")
        closers.append(db.aclose)
        return Backend(
            name="sqlite",
            cases=SqliteCaseStore(db, webhook_urls=webhook_urls),
            webhooks=SqliteWebhookStore(db),
        )

    async def open_postgres(*, webhook_urls: Sequence[str] = ()) -> Backend:
        schemas.append(await create_schema(url))
        db = await PostgresDatabase.open(url, schema=schemas[-1])
        closers.append(db.aclose)
        return Backend(
            name="postgres",
            cases=PostgresCaseStore(db, webhook_urls=webhook_urls),
            webhooks=PostgresWebhookStore(db),
        )

    backends = {"sqlite": open_sqlite, "postgres": open_postgres}
    try:
        yield backends[request.param]
    finally:
        try:
            for close in closers:
                await close()
        finally:
            if schemas:
                await drop_schemas(url, schemas)


@pytest.fixture
async def backend(open_backend: OpenBackend) -> Backend:
    """The backend under test with no webhook targets from the configuration."""
    return await open_backend()


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseHandle]:
    """A fresh, empty database of each backend (``database.backend`` names it)."""
    if request.param == "sqlite":
        db = await Database.open(tmp_path / "inspect.db")
        try:
            yield db
        finally:
            await db.aclose()
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = await create_schema(url)
    try:
        pg = await PostgresDatabase.open(url, schema=schema)
        try:
            yield pg
        finally:
            await pg.aclose()
    finally:
        await drop_schemas(url, [schema])
