"""Returns analytics on PostgreSQL: the generated year (tests/fakes/returns_history.py) moved
into PostgreSQL by ``migrate-data`` answers every dimension and filter exactly as SQLite sums
it from the rows, sales included; alerts are raised once, with their webhooks in the outbox,
also when two nodes check the same rules at once."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from server.returns.analytics import AnalyticsService, Dimension
from server.storage.analytics import Slice
from server.storage.postgres import PostgresAnalyticsStore, PostgresDatabase
from server.storage.sqlite.analytics import SqliteAnalyticsStore
from server.storage.sqlite.database import Database
from server.wiring.migrate import migrate_data
from tests.fakes.returns_history import History
from tests.postgres_server import create_schema, drop_schemas, postgres_url  # noqa: F401
from tests.server.test_analytics import ALERTS, HOOK, history, seeded  # noqa: F401 - fixtures


@dataclass
class Pair:
    sqlite: SqliteAnalyticsStore
    postgres: PostgresAnalyticsStore
    pg: PostgresDatabase
    url: str
    schema: str


@pytest.fixture
async def pair(seeded: Path, tmp_path: Path, postgres_url: str) -> AsyncIterator[Pair]:  # noqa: F811
    path = tmp_path / "var" / "inspect.db"
    path.parent.mkdir()
    shutil.copy(seeded, path)
    schema = await create_schema(postgres_url)
    try:
        await migrate_data(path, postgres_url, schema=schema)
        lite = await Database.open(path)
        pg = await PostgresDatabase.open(postgres_url, schema=schema)
        try:
            yield Pair(
                SqliteAnalyticsStore(lite, rollups=False),
                PostgresAnalyticsStore(pg, webhook_urls=(HOOK,)),
                pg,
                postgres_url,
                schema,
            )
        finally:
            await pg.aclose()
            await lite.aclose()
    finally:
        await drop_schemas(postgres_url, [schema])


async def test_postgresql_sums_what_sqlite_sums(pair: Pair) -> None:
    slices = [
        Slice(date(2024, 7, 1), date(2025, 6, 30)),
        Slice(date(2024, 7, 17), date(2025, 1, 3)),
        Slice(date(2024, 12, 30), date(2025, 1, 5), grade="B"),
        Slice(date(2024, 11, 2), date(2025, 2, 27), country="IT", grade="C"),
        Slice(date(2025, 2, 3), date(2025, 3, 30), category="home", carrier="gls"),
        Slice(date(2024, 9, 1), date(2025, 5, 31), claimed_reason="damaged_in_transit"),
    ]
    for where in slices:
        for dimension in Dimension:
            lite = await pair.sqlite.return_groups(dimension, where)
            pg = await pair.postgres.return_groups(dimension, where)
            assert lite, (dimension, where)
            key = lambda g: (g.key, g.currency)  # noqa: E731
            assert sorted(pg, key=key) == sorted(lite, key=key), (dimension, where)
        for sales in (None, Dimension.SKU, Dimension.COUNTRY, Dimension.MONTH, Dimension.WEEK):
            units = await pair.postgres.units(sales, where)
            assert units == await pair.sqlite.units(sales, where), (sales, where)


async def test_alerts_are_raised_once_from_two_nodes(pair: Pair, history: History) -> None:  # noqa: F811
    other = await PostgresDatabase.open(pair.url, schema=pair.schema)
    try:
        nodes = [
            AnalyticsService(pair.postgres, clock=lambda: history.now),
            AnalyticsService(
                PostgresAnalyticsStore(other, webhook_urls=(HOOK,)), clock=lambda: history.now
            ),
        ]
        first, second = await asyncio.gather(
            *(node.evaluate_alerts(ALERTS, version=3) for node in nodes)
        )
        raised = first + second
        # Each (rule, subject) once, whichever node raised it, each with one webhook delivery.
        subjects = [(a.rule_id, a.subject) for a in raised]
        assert subjects and len(subjects) == len(set(subjects))
        assert {r for r, _ in subjects} == {"sku-rate", "sku-jump", "carrier-damage"}
        outbox = await pair.pg.fetch("SELECT url FROM webhook_outbox WHERE event = 'returns.alert'")
        assert len(outbox) == len(raised) and {row["url"] for row in outbox} == {HOOK}
        assert await nodes[0].evaluate_alerts(ALERTS, version=3) == []
        assert {a.id for a in await nodes[1].alerts()} == {a.id for a in raised}
    finally:
        await other.aclose()
