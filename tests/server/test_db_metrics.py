"""The SQLite store and the per-app metrics registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.metrics import Metrics
from server.storage.sqlite import Database


async def test_database_schema_wal_and_rollback(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "sub" / "inspect.db")
    try:
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
        tables = {r["name"] for r in await db.fetchall("SELECT name FROM sqlite_master")}
        assert {
            "users",
            "api_tokens",
            "cases",
            "case_events",
            "webhooks",
            "webhook_outbox",
        } <= tables

        def failing(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO webhooks (id, url, secret, created_at) VALUES ('w', 'u', 's', 0)"
            )
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await db.transaction(failing)
        assert await db.fetchall("SELECT * FROM webhooks") == []
        assert await db.ping()
    finally:
        await db.aclose()
        await db.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        await db.fetchone("SELECT 1")
    # reopening keeps the data and the schema
    again = await Database.open(tmp_path / "sub" / "inspect.db")
    await again.aclose()


async def test_metrics_registries_are_per_app() -> None:
    first, second = Metrics(), Metrics()  # no duplicate-registration error
    first.ws_connected(+1)
    first.ws_connected(+1)
    first.ws_connected(-1)
    first.ws_message("in", "chat")
    first.ws_message("in", "Robert'); DROP TABLE")
    first.watch("live_calls", lambda: 3)
    first.watch("peers", lambda: 5)

    async def counts() -> dict[str, int]:
        return {"waiting": 4}

    first.set_case_counts(counts)
    text = (await first.render()).decode()
    assert "inspect_ws_connections 1.0" in text
    assert 'inspect_ws_messages_total{direction="in",type="chat"} 1.0' in text
    assert 'inspect_ws_messages_total{direction="in",type="other"} 1.0' in text
    assert "inspect_live_calls 3.0" in text
    assert "inspect_peers 5.0" in text
    assert 'inspect_cases{state="waiting"} 4.0' in text
    assert "inspect_ws_connections 0.0" in (await second.render()).decode()
    for index in range(100):
        first.ws_message("out", f"t{index}")
    text = (await first.render()).decode()
    assert text.count("inspect_ws_messages_total{") <= 65
