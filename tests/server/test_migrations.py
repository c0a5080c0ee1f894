from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.storage.accounts import SessionRecord
from server.storage.sqlite import SCHEMA_VERSION, Database, SchemaTooNew
from server.storage.sqlite.accounts import SqliteAccountStore


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


async def test_a_schema_3_database_gains_sites_and_cameras(tmp_path: Path) -> None:
    path = tmp_path / "inspect.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE cases (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,
            customer_name TEXT NOT NULL, customer_contact TEXT, order_id TEXT, sku TEXT,
            reason TEXT, tracking_number TEXT, unit_id TEXT, carrier TEXT, shipped_at REAL,
            delivered_at REAL, agent_id TEXT, decision TEXT, refund_amount TEXT, currency TEXT,
            facts TEXT, note TEXT, outcome TEXT, resolution_note TEXT, grading TEXT,
            created_at REAL NOT NULL, waiting_at REAL, in_call_at REAL, decided_at REAL,
            closed_at REAL, updated_at REAL NOT NULL);
        INSERT INTO cases (id, kind, state, customer_name, carrier, created_at, updated_at)
            VALUES ('c3', 'return', 'decided', 'Schema Three', 'UPS', 3.0, 3.0);
        PRAGMA user_version=3;
        """
    )
    old.close()

    db = await Database.open(path)
    try:
        version = await db.fetchone("PRAGMA user_version")
        assert version is not None and version[0] == SCHEMA_VERSION
        row = await db.fetchone("SELECT customer_name, carrier FROM cases WHERE id = 'c3'")
        assert row is not None and (row["customer_name"], row["carrier"]) == ("Schema Three", "UPS")
        # The new tables exist and work, foreign keys included.
        await db.execute(
            "INSERT INTO sites (id, name, created_at, updated_at) VALUES ('s1', 'Dock', 1, 1)"
        )
        await db.execute(
            "INSERT INTO cameras (id, site_id, name, kind, created_at, updated_at)"
            " VALUES ('k1', 's1', 'Door', 'phone', 1, 1)"
        )
        await db.execute(
            "INSERT INTO camera_tokens (id, camera_id, token_hash, created_at)"
            " VALUES ('t1', 'k1', 'h', 1)"
        )
        await db.execute("DELETE FROM sites WHERE id = 's1'")
        gone = await db.fetchone("SELECT COUNT(*) AS n FROM camera_tokens")
        assert gone is not None and gone["n"] == 0, "deleting a site removes its cameras' tokens"
        links = await db.fetchone("SELECT COUNT(*) AS n FROM site_evidence")
        assert links is not None and links["n"] == 0
    finally:
        await db.aclose()


async def test_a_schema_4_database_gains_sessions_and_keeps_its_accounts(tmp_path: Path) -> None:
    path = tmp_path / "inspect.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT NOT NULL,
            created_at REAL NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE, created_by TEXT, created_at REAL NOT NULL,
            revoked_at REAL);
        INSERT INTO users (id, username, name, role, password_hash, created_at)
            VALUES ('u1', 'ana', 'Ana', 'admin', 'scrypt$16384$8$1$c2FsdA$aGFzaA', 1.0);
        INSERT INTO api_tokens (id, name, role, token_hash, created_at)
            VALUES ('t1', 'shop', 'admin', 'digest', 1.0);
        PRAGMA user_version=4;
        """
    )
    old.close()

    db = await Database.open(path)
    try:
        version = await db.fetchone("PRAGMA user_version")
        assert version is not None and version[0] == SCHEMA_VERSION
        store = SqliteAccountStore(db)
        ana = await store.get_user("u1")
        assert ana is not None and ana.role == "admin"
        token = await store.get_api_token("t1")
        assert token is not None and token.role == "admin"  # an old token keeps its role
        await store.add_session(
            SessionRecord(id="s1", user_id="u1", token_hash="h", created_at=2.0, expires_at=9.0)
        )
        found = await store.find_session("h")
        assert found is not None and found[1].id == "u1"
        await db.execute("DELETE FROM users WHERE id = 'u1'")
        left = await db.fetchone("SELECT COUNT(*) AS n FROM sessions")
        assert left is not None and left["n"] == 0, "deleting a user removes their sessions"
    finally:
        await db.aclose()


async def test_a_schema_6_database_gains_the_returns_columns_and_keeps_its_grades(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inspect.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE cases (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,
            customer_name TEXT NOT NULL, customer_contact TEXT, order_id TEXT, sku TEXT,
            reason TEXT, tracking_number TEXT, unit_id TEXT, carrier TEXT, shipped_at REAL,
            delivered_at REAL, customer_locale TEXT, customer_time_zone TEXT, agent_id TEXT,
            decision TEXT, refund_amount TEXT, currency TEXT, facts TEXT, note TEXT,
            outcome TEXT, resolution_note TEXT, grading TEXT, created_at REAL NOT NULL,
            waiting_at REAL, in_call_at REAL, decided_at REAL, closed_at REAL,
            updated_at REAL NOT NULL);
        INSERT INTO cases (id, kind, state, customer_name, grading, created_at, updated_at)
            VALUES ('c1', 'return', 'decided', 'Old', '{"final_grade": "B"}', 1.0, 1.0);
        PRAGMA user_version=6;
        """
    )
    old.close()
    db = await Database.open(path)
    try:
        row = await db.fetchone(
            "SELECT final_grade, refund_state, claimed_reason FROM cases WHERE id = 'c1'"
        )
        assert row is not None
        assert (row["final_grade"], row["refund_state"], row["claimed_reason"]) == (
            "B",
            "none",
            None,
        )
        assert await db.fetchall("SELECT * FROM return_rules") == []
    finally:
        await db.aclose()


async def test_a_schema_7_outbox_gains_delivery_leases_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "inspect.db"
    db = await Database.open(path)
    await db.aclose()
    # Back to version 7: the outbox as it was (no lease column), with a pending delivery.
    old = sqlite3.connect(path)
    old.executescript(
        """
        DROP TABLE webhook_outbox;
        CREATE TABLE webhook_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE,
            event_id TEXT NOT NULL, event TEXT NOT NULL, case_id TEXT NOT NULL, webhook_id TEXT,
            url TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
            last_error TEXT, created_at REAL NOT NULL, finished_at REAL);
        INSERT INTO webhook_outbox (delivery_id, event_id, event, case_id, url, body,
            next_attempt_at, created_at)
            VALUES ('d1', 'e1', 'case.created', 'c1', 'https://h.example/', '{}', 5.0, 5.0);
        PRAGMA user_version=7;
        """
    )
    old.close()
    db = await Database.open(path)
    try:
        version = await db.fetchone("PRAGMA user_version")
        assert version is not None and version[0] == SCHEMA_VERSION
        row = await db.fetchone("SELECT delivery_id, claimed_until FROM webhook_outbox")
        assert row is not None and tuple(row) == ("d1", None)
    finally:
        await db.aclose()


async def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "inspect.db"
    db = await Database.open(path)
    await db.aclose()
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        await Database.open(path)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    check.close()
