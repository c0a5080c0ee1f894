from __future__ import annotations

import sqlite3
from pathlib import Path

from server.db import SCHEMA_VERSION, Database


async def test_a_database_from_the_first_version_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "inspect.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE cases (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,
            customer_name TEXT NOT NULL, customer_contact TEXT, order_id TEXT, sku TEXT,
            reason TEXT, tracking_number TEXT, agent_id TEXT, decision TEXT, refund_amount TEXT,
            currency TEXT, facts TEXT, note TEXT, outcome TEXT, resolution_note TEXT,
            created_at REAL NOT NULL, waiting_at REAL, in_call_at REAL, decided_at REAL,
            closed_at REAL, updated_at REAL NOT NULL);
        INSERT INTO cases (id, kind, state, customer_name, created_at, updated_at)
            VALUES ('c1', 'return', 'created', 'Old Customer', 1.0, 1.0);
        PRAGMA user_version=1;
        """
    )
    old.close()

    db = await Database.open(path)
    try:
        row = await db.fetchone("SELECT customer_name, unit_id, grading FROM cases WHERE id='c1'")
        assert row is not None
        assert (row["customer_name"], row["unit_id"], row["grading"]) == (
            "Old Customer",
            None,
            None,
        )
        version = await db.fetchone("PRAGMA user_version")
        assert version is not None and version[0] == SCHEMA_VERSION
    finally:
        await db.aclose()

    # Opening again is a no-op.
    again = await Database.open(path)
    await again.aclose()
