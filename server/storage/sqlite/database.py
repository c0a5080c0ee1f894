"""SQLite storage: one connection, used only from a dedicated single-thread executor so the event
loop never blocks on disk. WAL mode; the schema is created at open."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..database import SchemaTooNew

__all__ = ["SCHEMA_VERSION", "Database", "SchemaTooNew"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    REAL NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
-- A signed-in browser. The cookie carries a secret whose digest is kept here, so that signing
-- out, signing out everywhere, a disabled account or a changed password or role ends it on
-- every process at once: each request looks its session up by that digest.
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,   -- SHA-256 hex of the cookie's secret
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    revoked_at  REAL                    -- set when signed out or ended by an account change
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, revoked_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,   -- SHA-256 hex of the token; the token itself is not kept
    created_by  TEXT,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE TABLE IF NOT EXISTS cases (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    customer_name    TEXT NOT NULL,
    customer_contact TEXT,
    order_id         TEXT,
    sku              TEXT,
    reason           TEXT,
    tracking_number  TEXT,
    unit_id          TEXT,              -- per-unit QR / serial the item should carry
    carrier          TEXT,              -- carriers / marketplaces involved, comma-separated
    shipped_at       REAL,
    delivered_at     REAL,
    customer_locale  TEXT,              -- catalogue code of the customer's language (web/i18n)
    customer_time_zone TEXT,            -- IANA zone name
    claimed_reason   TEXT,              -- server.returns.ReturnReason value
    verified_reason  TEXT,
    category         TEXT,
    order_value      TEXT,              -- decimal as text
    order_currency   TEXT,
    country          TEXT,              -- ISO 3166-1 alpha-2
    intake           TEXT,              -- JSON: the customer's answers before the call
    refund_state     TEXT NOT NULL DEFAULT 'none',
    disposition      TEXT,
    approval         TEXT,              -- JSON: a second approval a rule asked for
    final_grade      TEXT,              -- A-D, from grading (kept apart for analytics)
    agent_id         TEXT,
    decision         TEXT,
    refund_amount    TEXT,              -- decimal as text: money is never a float at rest
    currency         TEXT,
    facts            TEXT,              -- JSON
    note             TEXT,
    outcome          TEXT,
    resolution_note  TEXT,
    grading          TEXT,              -- JSON: the model's view, the derived and final grade
    created_at       REAL NOT NULL,
    waiting_at       REAL,
    in_call_at       REAL,
    decided_at       REAL,
    closed_at        REAL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_state ON cases (state, created_at);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at);
CREATE INDEX IF NOT EXISTS cases_order ON cases (order_id);
CREATE INDEX IF NOT EXISTS cases_tracking ON cases (tracking_number);
CREATE TABLE IF NOT EXISTS case_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id   TEXT NOT NULL REFERENCES cases (id),
    at        REAL NOT NULL,
    type      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    data      TEXT NOT NULL,            -- JSON object
    dedup_key TEXT,                     -- e.g. chat seq: a repeat is not stored twice
    UNIQUE (case_id, dedup_key)
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, id);
CREATE TABLE IF NOT EXISTS webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_by TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT NOT NULL UNIQUE,
    event_id        TEXT NOT NULL,
    event           TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    webhook_id      TEXT,               -- NULL: a target from settings (INSPECT_WEBHOOK_URLS)
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed | cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    -- Until when a process holds this delivery (SqliteWebhookStore.claim_due); NULL: nobody.
    claimed_until   REAL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (status, url, case_id, id);
CREATE TABLE IF NOT EXISTS sites (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    address    TEXT,
    note       TEXT,
    created_by TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cameras (
    id                     TEXT PRIMARY KEY,
    site_id                TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    kind                   TEXT NOT NULL,     -- phone | whip | rtsp
    rtsp_url               TEXT,              -- without credentials
    rtsp_username          TEXT,
    rtsp_password          TEXT,              -- encrypted (Fernet, key derived from the secret key)
    station_stage          TEXT,              -- receiving | packing | returns_qc; NULL: no station
    station_idle_timeout_s REAL,
    enabled                INTEGER NOT NULL DEFAULT 1,
    created_by             TEXT,
    created_at             REAL NOT NULL,
    updated_at             REAL NOT NULL,
    last_seen_at           REAL               -- last time the camera was connected
);
CREATE INDEX IF NOT EXISTS cameras_site ON cameras (site_id, created_at);
CREATE TABLE IF NOT EXISTS camera_tokens (
    id           TEXT PRIMARY KEY,
    camera_id    TEXT NOT NULL REFERENCES cameras (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,        -- SHA-256 hex; the token itself is not kept
    created_by   TEXT,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL
);
CREATE INDEX IF NOT EXISTS camera_tokens_camera ON camera_tokens (camera_id, created_at);
CREATE TABLE IF NOT EXISTS site_evidence (
    item_id    TEXT PRIMARY KEY,              -- the evidence archive's item id
    site_id    TEXT NOT NULL,
    camera_id  TEXT NOT NULL,
    case_id    TEXT,                          -- the case it was filed under, if any
    operator   TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS site_evidence_site ON site_evidence (site_id, created_at);
CREATE TABLE IF NOT EXISTS return_rules (
    version    INTEGER PRIMARY KEY,       -- return-rules/<version>; every change is a new one
    body       TEXT NOT NULL,             -- JSON: {rules: [...], alerts: [...]}
    author     TEXT NOT NULL,
    note       TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sales (
    day      TEXT NOT NULL,               -- YYYY-MM-DD (UTC)
    sku      TEXT NOT NULL,
    category TEXT,
    country  TEXT NOT NULL DEFAULT '',
    units    INTEGER NOT NULL,
    PRIMARY KEY (sku, day, country)
);
CREATE INDEX IF NOT EXISTS sales_day ON sales (day);
CREATE TABLE IF NOT EXISTS return_alerts (
    id         TEXT PRIMARY KEY,
    rule_id    TEXT NOT NULL,
    version    INTEGER NOT NULL,
    subject    TEXT NOT NULL,             -- what it is about: a SKU, a carrier
    period     TEXT NOT NULL,             -- the window it was raised for (YYYY-MM-DD..)
    data       TEXT NOT NULL,             -- JSON: the figures that raised it
    raised_at  REAL NOT NULL,
    UNIQUE (rule_id, subject, period)
);
-- Returns analytics (server/storage/sqlite/analytics.py): sums of the return cases per UTC day,
-- ISO week (period: its Monday) and month (YYYY-MM), so that a chart over a year reads a few
-- thousand rows rather than every case. Derived data: a day marked in analytics_dirty is
-- summed again from its cases and sales, and the difference added to its week and month.
-- return_dim holds each dimension alone (a chart with no filter), return_cube every dimension
-- but the SKU together (any filter on them), return_sku the SKU with its category, country and
-- grade (the SKUs of a category, a country or a grade).
-- Keys are '' where the cases have none; carrier is the cases' field as written ("UPS,
-- Amazon"); h00..h25 count decided cases by time to decision (storage.analytics buckets).
CREATE TABLE IF NOT EXISTS return_dim (
    grain      TEXT NOT NULL,             -- day | week | month
    period     TEXT NOT NULL,
    dimension  TEXT NOT NULL,             -- sku category country carrier claimed_reason
                                          --   verified_reason grade, or all (key '')
    key        TEXT NOT NULL,
    currency   TEXT NOT NULL,
    returns    INTEGER NOT NULL,
    compared   INTEGER NOT NULL,          -- with a claimed and a verified reason
    mismatched INTEGER NOT NULL,          -- ... that differ
    damaged    INTEGER NOT NULL,          -- reason (verified, else claimed) damaged_in_transit
    value_a    INTEGER NOT NULL,          -- order value by final grade, ten-thousandths
    value_b    INTEGER NOT NULL,
    value_c    INTEGER NOT NULL,
    value_d    INTEGER NOT NULL,
    h00 INTEGER NOT NULL, h01 INTEGER NOT NULL, h02 INTEGER NOT NULL, h03 INTEGER NOT NULL,
    h04 INTEGER NOT NULL, h05 INTEGER NOT NULL, h06 INTEGER NOT NULL, h07 INTEGER NOT NULL,
    h08 INTEGER NOT NULL, h09 INTEGER NOT NULL, h10 INTEGER NOT NULL, h11 INTEGER NOT NULL,
    h12 INTEGER NOT NULL, h13 INTEGER NOT NULL, h14 INTEGER NOT NULL, h15 INTEGER NOT NULL,
    h16 INTEGER NOT NULL, h17 INTEGER NOT NULL, h18 INTEGER NOT NULL, h19 INTEGER NOT NULL,
    h20 INTEGER NOT NULL, h21 INTEGER NOT NULL, h22 INTEGER NOT NULL, h23 INTEGER NOT NULL,
    h24 INTEGER NOT NULL, h25 INTEGER NOT NULL,
    PRIMARY KEY (grain, period, dimension, key, currency)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS return_cube (
    grain TEXT NOT NULL, period TEXT NOT NULL, category TEXT NOT NULL, country TEXT NOT NULL,
    carrier TEXT NOT NULL, claimed_reason TEXT NOT NULL, verified_reason TEXT NOT NULL,
    grade TEXT NOT NULL, currency TEXT NOT NULL,
    returns INTEGER NOT NULL, compared INTEGER NOT NULL, mismatched INTEGER NOT NULL,
    damaged INTEGER NOT NULL, value_a INTEGER NOT NULL, value_b INTEGER NOT NULL,
    value_c INTEGER NOT NULL, value_d INTEGER NOT NULL,
    h00 INTEGER NOT NULL, h01 INTEGER NOT NULL, h02 INTEGER NOT NULL, h03 INTEGER NOT NULL,
    h04 INTEGER NOT NULL, h05 INTEGER NOT NULL, h06 INTEGER NOT NULL, h07 INTEGER NOT NULL,
    h08 INTEGER NOT NULL, h09 INTEGER NOT NULL, h10 INTEGER NOT NULL, h11 INTEGER NOT NULL,
    h12 INTEGER NOT NULL, h13 INTEGER NOT NULL, h14 INTEGER NOT NULL, h15 INTEGER NOT NULL,
    h16 INTEGER NOT NULL, h17 INTEGER NOT NULL, h18 INTEGER NOT NULL, h19 INTEGER NOT NULL,
    h20 INTEGER NOT NULL, h21 INTEGER NOT NULL, h22 INTEGER NOT NULL, h23 INTEGER NOT NULL,
    h24 INTEGER NOT NULL, h25 INTEGER NOT NULL,
    PRIMARY KEY (grain, period, category, country, carrier, claimed_reason, verified_reason,
                 grade, currency)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS return_sku (
    grain TEXT NOT NULL, period TEXT NOT NULL, category TEXT NOT NULL, sku TEXT NOT NULL,
    country TEXT NOT NULL, grade TEXT NOT NULL, currency TEXT NOT NULL,
    returns INTEGER NOT NULL, compared INTEGER NOT NULL, mismatched INTEGER NOT NULL,
    damaged INTEGER NOT NULL, value_a INTEGER NOT NULL, value_b INTEGER NOT NULL,
    value_c INTEGER NOT NULL, value_d INTEGER NOT NULL,
    h00 INTEGER NOT NULL, h01 INTEGER NOT NULL, h02 INTEGER NOT NULL, h03 INTEGER NOT NULL,
    h04 INTEGER NOT NULL, h05 INTEGER NOT NULL, h06 INTEGER NOT NULL, h07 INTEGER NOT NULL,
    h08 INTEGER NOT NULL, h09 INTEGER NOT NULL, h10 INTEGER NOT NULL, h11 INTEGER NOT NULL,
    h12 INTEGER NOT NULL, h13 INTEGER NOT NULL, h14 INTEGER NOT NULL, h15 INTEGER NOT NULL,
    h16 INTEGER NOT NULL, h17 INTEGER NOT NULL, h18 INTEGER NOT NULL, h19 INTEGER NOT NULL,
    h20 INTEGER NOT NULL, h21 INTEGER NOT NULL, h22 INTEGER NOT NULL, h23 INTEGER NOT NULL,
    h24 INTEGER NOT NULL, h25 INTEGER NOT NULL,
    PRIMARY KEY (grain, period, category, sku, country, grade, currency)
) WITHOUT ROWID;
-- Units sold the same way, by one dimension (sku, category, country, or all under key '').
CREATE TABLE IF NOT EXISTS sales_rollup (
    grain     TEXT NOT NULL,
    period    TEXT NOT NULL,
    dimension TEXT NOT NULL,
    key       TEXT NOT NULL,
    units     INTEGER NOT NULL,
    PRIMARY KEY (grain, period, dimension, key)
) WITHOUT ROWID;
-- Days whose cases or sales changed since their rollup rows were made (set by triggers).
CREATE TABLE IF NOT EXISTS analytics_dirty (
    day TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS analytics_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


#: Changes to databases made by an earlier version, by the version they lead to.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE cases ADD COLUMN unit_id TEXT",
        "ALTER TABLE cases ADD COLUMN grading TEXT",
    ),
    3: (
        "ALTER TABLE cases ADD COLUMN carrier TEXT",
        "ALTER TABLE cases ADD COLUMN shipped_at REAL",
        "ALTER TABLE cases ADD COLUMN delivered_at REAL",
    ),
    # 4: sites, cameras, camera tokens and site evidence are new tables, which the schema
    # script above creates (CREATE TABLE IF NOT EXISTS) before migrations run: nothing to alter.
    4: (),
    # 5: sessions are a new table (signed-in browsers kept server-side): nothing to alter.
    # Cookies made by earlier versions name no session and are refused: users sign in again.
    5: (),
    6: (
        "ALTER TABLE cases ADD COLUMN customer_locale TEXT",
        "ALTER TABLE cases ADD COLUMN customer_time_zone TEXT",
    ),
    7: (
        "ALTER TABLE cases ADD COLUMN claimed_reason TEXT",
        "ALTER TABLE cases ADD COLUMN verified_reason TEXT",
        "ALTER TABLE cases ADD COLUMN category TEXT",
        "ALTER TABLE cases ADD COLUMN order_value TEXT",
        "ALTER TABLE cases ADD COLUMN order_currency TEXT",
        "ALTER TABLE cases ADD COLUMN country TEXT",
        "ALTER TABLE cases ADD COLUMN intake TEXT",
        "ALTER TABLE cases ADD COLUMN refund_state TEXT NOT NULL DEFAULT 'none'",
        "ALTER TABLE cases ADD COLUMN disposition TEXT",
        "ALTER TABLE cases ADD COLUMN approval TEXT",
        "ALTER TABLE cases ADD COLUMN final_grade TEXT",
        # Decided cases graded before this version: their grade was only in the JSON.
        "UPDATE cases SET final_grade = json_extract(grading, '$.final_grade')"
        " WHERE grading IS NOT NULL",
    ),
    # 8: deliveries are leased to the process sending them (several processes, one outbox).
    8: ("ALTER TABLE webhook_outbox ADD COLUMN claimed_until REAL",),
}


#: Made after the migrations, since they name columns an older database gains only there.
_AFTER_MIGRATIONS = """
-- Returns analytics: the filtered queries scan this index alone (it covers every column they
-- read); a SKU's cases are found by the second. cases_returns was the first without the
-- decision time and order value.
DROP INDEX IF EXISTS cases_returns;
CREATE INDEX IF NOT EXISTS cases_analytics ON cases (kind, created_at, sku, category,
    claimed_reason, verified_reason, final_grade, country, carrier, state, decided_at,
    order_value, order_currency);
CREATE INDEX IF NOT EXISTS cases_analytics_sku ON cases (kind, sku, created_at);
CREATE INDEX IF NOT EXISTS cases_contact ON cases (customer_contact, created_at);
-- Units of a category's or a country's SKUs, read in SKU order (no sort to group them).
CREATE INDEX IF NOT EXISTS sales_category ON sales (category, sku, day, country, units);
CREATE INDEX IF NOT EXISTS sales_country ON sales (country, sku, day, category, units);
-- A change to what analytics count marks the day of the case (or sale) for a rebuild.
-- (Dropped and made again at every start: a trigger's body may change between versions.
-- Inside an upsert SQLite applies the outer statement's conflict rule to a trigger's own
-- inserts, so "OR IGNORE" cannot be relied on there: the inserts check first.)
DROP TRIGGER IF EXISTS analytics_case_insert;
DROP TRIGGER IF EXISTS analytics_case_update;
DROP TRIGGER IF EXISTS analytics_case_delete;
DROP TRIGGER IF EXISTS analytics_sales_insert;
DROP TRIGGER IF EXISTS analytics_sales_update;
DROP TRIGGER IF EXISTS analytics_sales_delete;
CREATE TRIGGER IF NOT EXISTS analytics_case_insert AFTER INSERT ON cases
WHEN NEW.kind = 'return'
BEGIN
    INSERT INTO analytics_dirty (day) SELECT date(NEW.created_at, 'unixepoch')
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty
                          WHERE day = date(NEW.created_at, 'unixepoch'));
END;
CREATE TRIGGER IF NOT EXISTS analytics_case_update AFTER UPDATE OF kind, created_at, sku,
    category, claimed_reason, verified_reason, final_grade, country, carrier, order_value,
    order_currency, decided_at ON cases
WHEN (NEW.kind = 'return' OR OLD.kind = 'return') AND (NEW.kind IS NOT OLD.kind
    OR NEW.created_at IS NOT OLD.created_at OR NEW.sku IS NOT OLD.sku
    OR NEW.category IS NOT OLD.category OR NEW.claimed_reason IS NOT OLD.claimed_reason
    OR NEW.verified_reason IS NOT OLD.verified_reason OR NEW.final_grade IS NOT OLD.final_grade
    OR NEW.country IS NOT OLD.country OR NEW.carrier IS NOT OLD.carrier
    OR NEW.order_value IS NOT OLD.order_value OR NEW.order_currency IS NOT OLD.order_currency
    OR NEW.decided_at IS NOT OLD.decided_at)
BEGIN
    INSERT INTO analytics_dirty (day) SELECT date(OLD.created_at, 'unixepoch')
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty
                          WHERE day = date(OLD.created_at, 'unixepoch'));
    INSERT INTO analytics_dirty (day) SELECT date(NEW.created_at, 'unixepoch')
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty
                          WHERE day = date(NEW.created_at, 'unixepoch'));
END;
CREATE TRIGGER IF NOT EXISTS analytics_case_delete AFTER DELETE ON cases
WHEN OLD.kind = 'return'
BEGIN
    INSERT INTO analytics_dirty (day) SELECT date(OLD.created_at, 'unixepoch')
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty
                          WHERE day = date(OLD.created_at, 'unixepoch'));
END;
CREATE TRIGGER IF NOT EXISTS analytics_sales_insert AFTER INSERT ON sales
BEGIN
    INSERT INTO analytics_dirty (day) SELECT NEW.day
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty WHERE day = NEW.day);
END;
CREATE TRIGGER IF NOT EXISTS analytics_sales_update AFTER UPDATE ON sales
BEGIN
    INSERT INTO analytics_dirty (day) SELECT OLD.day
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty WHERE day = OLD.day);
    INSERT INTO analytics_dirty (day) SELECT NEW.day
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty WHERE day = NEW.day);
END;
CREATE TRIGGER IF NOT EXISTS analytics_sales_delete AFTER DELETE ON sales
BEGIN
    INSERT INTO analytics_dirty (day) SELECT OLD.day
        WHERE NOT EXISTS (SELECT 1 FROM analytics_dirty WHERE day = OLD.day);
END;
-- Rollups of another format (or none yet, in a database that has cases): rebuild every day.
DELETE FROM return_dim
    WHERE NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1');
DELETE FROM return_cube
    WHERE NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1');
DELETE FROM return_sku
    WHERE NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1');
DELETE FROM sales_rollup
    WHERE NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1');
INSERT OR IGNORE INTO analytics_dirty (day)
    SELECT date(created_at, 'unixepoch') FROM cases WHERE kind = 'return'
    AND NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1')
    GROUP BY 1;
INSERT OR IGNORE INTO analytics_dirty (day)
    SELECT day FROM sales
    WHERE NOT EXISTS (SELECT 1 FROM analytics_state WHERE name = 'rollup' AND value = '1')
    GROUP BY day;
INSERT OR REPLACE INTO analytics_state (name, value) VALUES ('rollup', '1');
"""


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database made by an earlier version up to :data:`SCHEMA_VERSION`."""
    if version == 0:
        return  # created just now from the current schema
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS.get(target, ()):
            added = _ADD_COLUMN.match(statement)
            if added is not None and added.group(2) in _columns(conn, added.group(1)):
                # A table this version's schema script just made already has it.
                continue
            conn.execute(statement)
        logger.info("database migrated to schema %d", target)


_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+) ADD COLUMN (\w+)\b")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _make_private(path: Path, mode: int) -> None:
    """Take group and other permissions off ``path`` (if it exists), saying so."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        try:
            path.chmod(mode)
        except PermissionError:
            logger.warning(
                "%s is open to other users (mode %o) and cannot be changed", path, current
            )
            return
        logger.warning("%s was open to other users (mode %o); made it %o", path, current, mode)


class Database:
    """An SQLite file behind an async API. Every statement runs on the one database thread, so
    calls are serialised; :meth:`transaction` runs a function atomically on that thread."""

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating the file, its folder and the schema if needed)."""
        db = cls(path)
        try:
            await db._call(db._open_sync)
        except BaseException:
            db._executor.shutdown(wait=False)
            raise
        logger.info("database open at %s", path)
        return db

    def _open_sync(self) -> None:
        # The file holds password hashes and webhook secrets: the folder is the owner's only
        # (0700) and the database 0600 before SQLite first writes to it; SQLite gives its -wal
        # and -shm files the database's mode. Looser modes left by an older start are tightened.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(self.path.parent, 0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        _make_private(self.path, 0o600)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        for suffix in ("-wal", "-shm"):
            _make_private(self.path.with_name(self.path.name + suffix), 0o600)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            conn.close()
            raise SchemaTooNew(f"the database {self.path}", version, SCHEMA_VERSION)
        conn.executescript(_SCHEMA)
        _migrate(conn, version)
        conn.executescript(_AFTER_MIGRATIONS)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread (autocommit: one statement each)."""
        return await self._call(lambda: fn(self._connection()))

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back if it
        raises), on the database thread."""

        def work() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._call(work)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return await self.run(lambda conn: conn.execute(sql, params).rowcount)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self.run(lambda conn: conn.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: list(conn.execute(sql, params).fetchall()))

    async def ping(self) -> bool:
        """True if the database answers a trivial query (for ``/healthz``)."""
        try:
            row = await self.fetchone("SELECT 1")
        except (sqlite3.Error, RuntimeError):
            logger.exception("database ping failed")
            return False
        return row is not None

    async def aclose(self) -> None:
        """Close the connection and stop the database thread. Idempotent."""
        if self._closed:
            return

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._call(close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)
