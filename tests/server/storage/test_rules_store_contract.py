"""The RulesStore contract, run against every backend: versions are consecutive, append-only
and read back as saved, also when several writers save at once."""

from __future__ import annotations

import asyncio

from server.storage.database import DatabaseHandle
from server.storage.postgres import PostgresDatabase, PostgresRulesStore
from server.storage.returns import RulesStore
from server.storage.sqlite import Database
from server.storage.sqlite.returns import SqliteRulesStore


def _store(database: DatabaseHandle) -> RulesStore:
    if isinstance(database, PostgresDatabase):
        return PostgresRulesStore(database)
    assert isinstance(database, Database)
    return SqliteRulesStore(database)


async def test_versions_are_kept_as_saved_newest_first(database: DatabaseHandle) -> None:
    store = _store(database)
    assert await store.latest() is None
    assert await store.versions() == []
    body = {"rules": [{"id": "r1", "when": {"grade": ["D"]}, "then": [{"action": "hold"}]}]}
    first = await store.add(body, author="u_admin", note="first", at=100.0)
    second = await store.add({"rules": []}, author="u_other", note=None, at=200.0)
    assert (first.version, second.version) == (1, 2)
    again = await store.get(1)
    assert again is not None
    assert again.body == body and again.author == "u_admin" and again.note == "first"
    assert again.created_at == 100.0
    latest = await store.latest()
    assert latest is not None and latest.version == 2 and latest.note is None
    assert [v.version for v in await store.versions()] == [2, 1]
    assert await store.get(3) is None


async def test_writers_at_once_get_consecutive_versions(database: DatabaseHandle) -> None:
    """Twenty saves at once (on PostgreSQL, over several connections): twenty versions, 1 to
    20, none lost, each with its own body."""
    store = _store(database)
    saved = await asyncio.gather(
        *(
            store.add({"rules": [], "n": n}, author=f"u{n}", note=None, at=float(n))
            for n in range(20)
        )
    )
    assert sorted(v.version for v in saved) == list(range(1, 21))
    kept = {v.version: v.body["n"] for v in await store.versions()}
    assert kept == {v.version: v.body["n"] for v in saved}
