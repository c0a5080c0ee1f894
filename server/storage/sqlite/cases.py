"""Cases and their timelines on SQLite (tables ``cases`` and ``case_events``); a change's webhook
event goes to ``webhook_outbox`` in the change's own transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import fields

from server.cases import (
    Case,
    CaseEvent,
    CaseState,
    CaseUpdate,
    WebhookEvent,
)
from server.errors import NotFound
from server.storage._case_rows import case_from_row, column_value

from .database import Database
from .webhooks import enqueue

__all__ = ["SqliteCaseStore"]

# Column names are written into the UPDATE statement: only a case's own fields may be.
_MUTABLE = frozenset(f.name for f in fields(Case)) - {"id", "kind", "created_at"}


def _load(conn: sqlite3.Connection, case_id: str) -> Case:
    row = conn.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
    if row is None:
        raise NotFound(f"no case {case_id!r}")
    return case_from_row(row)


class SqliteCaseStore:
    """:class:`~server.storage.cases.CaseStore` on the SQLite :class:`Database`.

    ``webhook_urls`` are the webhook targets from the configuration: every webhook event gets a
    delivery to each of them besides the admin-configured targets of the ``webhooks`` table.
    """

    def __init__(self, db: Database, *, webhook_urls: Sequence[str] = ()) -> None:
        self._db = db
        self._webhook_urls = tuple(webhook_urls)

    def _append(
        self, conn: sqlite3.Connection, case_id: str, event: CaseEvent, webhook: WebhookEvent | None
    ) -> None:
        conn.execute(
            "INSERT INTO case_events (case_id, at, type, actor, data) VALUES (?, ?, ?, ?, ?)",
            (case_id, event.at, event.type, event.actor, json.dumps(dict(event.data))),
        )
        if webhook is not None:
            enqueue(conn, webhook, urls=self._webhook_urls)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, case_id: str) -> Case | None:
        row = await self._db.fetchone("SELECT * FROM cases WHERE id = ?", (case_id,))
        return case_from_row(row) if row is not None else None

    async def list_cases(self, state: CaseState | None, *, limit: int, offset: int) -> list[Case]:
        if state is None:
            rows = await self._db.fetchall(
                "SELECT * FROM cases ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM cases WHERE state = ? ORDER BY created_at DESC, rowid DESC"
                " LIMIT ? OFFSET ?",
                (state.value, limit, offset),
            )
        return [case_from_row(row) for row in rows]

    async def events(self, case_id: str) -> list[CaseEvent]:
        rows = await self._db.fetchall(
            "SELECT at, type, actor, data FROM case_events WHERE case_id = ? ORDER BY id",
            (case_id,),
        )
        return [
            CaseEvent(
                at=row["at"], type=row["type"], actor=row["actor"], data=json.loads(row["data"])
            )
            for row in rows
        ]

    async def count_returns(self, contact: str, *, before: float) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n FROM cases WHERE customer_contact = ? AND kind = 'return'"
            " AND created_at < ?",
            (contact, before),
        )
        return int(row["n"]) if row is not None else 0

    async def list_returns(self, *, since: float, until: float, limit: int) -> list[Case]:
        rows = await self._db.fetchall(
            "SELECT * FROM cases WHERE kind = 'return' AND created_at >= ? AND created_at < ?"
            " ORDER BY created_at, rowid LIMIT ?",
            (since, until, limit),
        )
        return [case_from_row(row) for row in rows]

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    # -- writes --------------------------------------------------------------------------------

    async def create(self, case: Case, *, event: CaseEvent, webhook: WebhookEvent | None) -> Case:
        def work(conn: sqlite3.Connection) -> Case:
            conn.execute(
                "INSERT INTO cases (id, kind, state, customer_name, customer_contact, order_id,"
                " sku, reason, tracking_number, unit_id, carrier, shipped_at, delivered_at,"
                " customer_locale, customer_time_zone, claimed_reason, category, order_value,"
                " order_currency, country, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case.id,
                    case.kind.value,
                    case.state.value,
                    case.customer_name,
                    case.customer_contact,
                    case.order_id,
                    case.sku,
                    case.reason,
                    case.tracking_number,
                    case.unit_id,
                    case.carrier,
                    case.shipped_at,
                    case.delivered_at,
                    case.customer_locale,
                    case.customer_time_zone,
                    case.claimed_reason,
                    case.category,
                    column_value(case.order_value),
                    case.order_currency,
                    case.country,
                    case.created_at,
                    case.updated_at,
                ),
            )
            self._append(conn, case.id, event, webhook)
            return _load(conn, case.id)

        return await self._db.transaction(work)

    async def mutate(
        self, case_id: str, decide: Callable[[Case], CaseUpdate | None]
    ) -> tuple[Case, bool]:
        def work(conn: sqlite3.Connection) -> tuple[Case, bool]:
            case = _load(conn, case_id)
            update = decide(case)
            if update is None:
                return case, False
            unknown = set(update.values) - _MUTABLE
            if unknown:
                raise ValueError(f"not a field a case change may set: {sorted(unknown)}")
            columns = ", ".join(f"{name} = ?" for name in update.values)
            params = [column_value(value) for value in update.values.values()]
            conn.execute(f"UPDATE cases SET {columns} WHERE id = ?", (*params, case_id))
            self._append(conn, case_id, update.event, update.webhook)
            return _load(conn, case_id), True

        return await self._db.transaction(work)

    async def note(self, case_id: str, decide: Callable[[Case], CaseEvent]) -> Case:
        def work(conn: sqlite3.Connection) -> Case:
            case = _load(conn, case_id)
            self._append(conn, case_id, decide(case), None)
            return case

        return await self._db.transaction(work)

    async def append_once(self, case_id: str, event: CaseEvent, *, dedup_key: str | None) -> bool:
        written = await self._db.execute(
            "INSERT OR IGNORE INTO case_events (case_id, at, type, actor, data, dedup_key)"
            " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM cases WHERE id = ?)",
            (
                case_id,
                event.at,
                event.type,
                event.actor,
                json.dumps(dict(event.data)),
                dedup_key,
                case_id,
            ),
        )
        return written > 0
