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


async def test_claim_deadlines_show_on_the_case(tmp_path: Path) -> None:
    from aiohttp import ClientSession

    from server.app import running_service
    from server.settings import Settings
    from signaling import Role

    settings = Settings(data_dir=tmp_path / "var", port=0, grading=False)
    async with running_service(settings) as service, ClientSession() as session:
        token, _ = await service.state.auth.create_api_token("t", role=Role.ADMIN)
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "kind": "return",
            "customer_name": "C",
            "carrier": "UPS, Amazon A-to-z",
            "delivered_at": "2026-11-01T12:00:00+00:00",
        }
        async with session.post(f"{service.base_url}/api/cases", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            case_id = (await r.json())["case"]["id"]
        async with session.get(f"{service.base_url}/api/cases/{case_id}", headers=headers) as r:
            case = (await r.json())["case"]
        deadlines = case["claim_deadlines"]
        assert {d["name"] for d in deadlines} >= {"UPS"} or len(deadlines) >= 1
        assert all(d["deadline"] > "2026-11-01" for d in deadlines)
        assert [d["deadline"] for d in deadlines] == sorted(d["deadline"] for d in deadlines)
        assert case["carrier"] == "UPS, Amazon A-to-z"
