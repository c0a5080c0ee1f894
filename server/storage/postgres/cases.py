"""Cases and their timelines on PostgreSQL (tables ``cases`` and ``case_events``); a change's
webhook event goes to ``webhook_outbox`` in the change's own transaction.

A change locks its case (``SELECT ... FOR UPDATE``) before ``decide`` sees it, so changes of
one case from any number of nodes run one after the other and none is lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from server.cases import (
    Case,
    CaseEvent,
    CaseKind,
    CaseState,
    CaseUpdate,
    WebhookEvent,
)
from server.errors import NotFound

from .database import Connection, PostgresDatabase
from .webhooks import enqueue

__all__ = ["PostgresCaseStore"]

# Column names are written into the UPDATE statement: only a case's own fields may be.
_MUTABLE = frozenset(f.name for f in fields(Case)) - {"id", "kind", "created_at"}

# Everything but seq, which is the store's own (creation order).
_COLUMNS = ", ".join(f.name for f in fields(Case))

_INSERT_COLUMNS = (
    "id",
    "kind",
    "state",
    "customer_name",
    "customer_contact",
    "order_id",
    "sku",
    "reason",
    "tracking_number",
    "unit_id",
    "carrier",
    "shipped_at",
    "delivered_at",
    "customer_locale",
    "customer_time_zone",
    "claimed_reason",
    "category",
    "order_value",
    "order_currency",
    "country",
    "created_at",
    "updated_at",
)
_INSERT = (
    f"INSERT INTO cases ({', '.join(_INSERT_COLUMNS)}) VALUES "
    f"({', '.join(f'${n}' for n in range(1, len(_INSERT_COLUMNS) + 1))})"
)

_APPEND = "INSERT INTO case_events (case_id, at, type, actor, data) VALUES ($1, $2, $3, $4, $5)"
_APPEND_ONCE = (
    "INSERT INTO case_events (case_id, at, type, actor, data, dedup_key)"
    " SELECT $1::text, $2::double precision, $3::text, $4::text, $5::text, $6::text"
    " WHERE EXISTS (SELECT 1 FROM cases WHERE id = $1::text)"
    " ON CONFLICT (case_id, dedup_key) DO NOTHING"
)


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _case(row: asyncpg.Record) -> Case:
    return Case(
        id=row["id"],
        kind=CaseKind(row["kind"]),
        state=CaseState(row["state"]),
        customer_name=row["customer_name"],
        customer_contact=row["customer_contact"],
        order_id=row["order_id"],
        sku=row["sku"],
        reason=row["reason"],
        tracking_number=row["tracking_number"],
        unit_id=row["unit_id"],
        carrier=row["carrier"],
        shipped_at=row["shipped_at"],
        delivered_at=row["delivered_at"],
        customer_locale=row["customer_locale"],
        customer_time_zone=row["customer_time_zone"],
        claimed_reason=row["claimed_reason"],
        verified_reason=row["verified_reason"],
        category=row["category"],
        order_value=Decimal(row["order_value"]) if row["order_value"] else None,
        order_currency=row["order_currency"],
        country=row["country"],
        intake=_json(row["intake"]),
        refund_state=row["refund_state"] or "none",
        disposition=row["disposition"],
        approval=_json(row["approval"]),
        final_grade=row["final_grade"],
        agent_id=row["agent_id"],
        decision=row["decision"],
        refund_amount=Decimal(row["refund_amount"]) if row["refund_amount"] else None,
        currency=row["currency"],
        facts=_json(row["facts"]),
        note=row["note"],
        outcome=row["outcome"],
        resolution_note=row["resolution_note"],
        grading=_json(row["grading"]),
        created_at=row["created_at"],
        waiting_at=row["waiting_at"],
        in_call_at=row["in_call_at"],
        decided_at=row["decided_at"],
        closed_at=row["closed_at"],
        updated_at=row["updated_at"],
    )


def _column(value: Any) -> Any:
    """A field's value as its column holds it: money as decimal text (never a float at rest),
    mappings as JSON, enums by value."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return value


async def _load(conn: Connection, case_id: str, *, lock: bool = False) -> Case:
    sql = f"SELECT {_COLUMNS} FROM cases WHERE id = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, case_id)
    if row is None:
        raise NotFound(f"no case {case_id!r}")
    return _case(row)


class PostgresCaseStore:
    """:class:`~server.storage.cases.CaseStore` on a :class:`PostgresDatabase`.

    ``webhook_urls`` are the webhook targets from the configuration: every webhook event gets a
    delivery to each of them besides the admin-configured targets of the ``webhooks`` table.
    """

    def __init__(self, db: PostgresDatabase, *, webhook_urls: Sequence[str] = ()) -> None:
        self._db = db
        self._webhook_urls = tuple(webhook_urls)

    async def _append(
        self,
        conn: Connection,
        case_id: str,
        event: CaseEvent,
        webhook: WebhookEvent | None,
    ) -> None:
        await conn.execute(
            _APPEND, case_id, event.at, event.type, event.actor, json.dumps(dict(event.data))
        )
        if webhook is not None:
            await enqueue(conn, webhook, urls=self._webhook_urls)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, case_id: str) -> Case | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM cases WHERE id = $1", (case_id,))
        return _case(row) if row is not None else None

    async def list_cases(self, state: CaseState | None, *, limit: int, offset: int) -> list[Case]:
        if state is None:
            rows = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM cases ORDER BY created_at DESC, seq DESC"
                " LIMIT $1 OFFSET $2",
                (limit, offset),
            )
        else:
            rows = await self._db.fetch(
                f"SELECT {_COLUMNS} FROM cases WHERE state = $1"
                " ORDER BY created_at DESC, seq DESC LIMIT $2 OFFSET $3",
                (state.value, limit, offset),
            )
        return [_case(row) for row in rows]

    async def events(self, case_id: str) -> list[CaseEvent]:
        rows = await self._db.fetch(
            "SELECT at, type, actor, data FROM case_events WHERE case_id = $1 ORDER BY id",
            (case_id,),
        )
        return [
            CaseEvent(
                at=row["at"], type=row["type"], actor=row["actor"], data=json.loads(row["data"])
            )
            for row in rows
        ]

    async def count_returns(self, contact: str, *, before: float) -> int:
        count = await self._db.fetchval(
            "SELECT COUNT(*) FROM cases WHERE customer_contact = $1 AND kind = 'return'"
            " AND created_at < $2",
            (contact, before),
        )
        return int(count)

    async def list_returns(self, *, since: float, until: float, limit: int) -> list[Case]:
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM cases WHERE kind = 'return' AND created_at >= $1"
            " AND created_at < $2 ORDER BY created_at, seq LIMIT $3",
            (since, until, limit),
        )
        return [_case(row) for row in rows]

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    # -- writes --------------------------------------------------------------------------------

    async def create(self, case: Case, *, event: CaseEvent, webhook: WebhookEvent | None) -> Case:
        values = [_column(getattr(case, name)) for name in _INSERT_COLUMNS]

        async def work(conn: Connection) -> Case:
            await conn.execute(_INSERT, *values)
            await self._append(conn, case.id, event, webhook)
            return await _load(conn, case.id)

        return await self._db.transaction(work)

    async def mutate(
        self, case_id: str, decide: Callable[[Case], CaseUpdate | None]
    ) -> tuple[Case, bool]:
        async def work(conn: Connection) -> tuple[Case, bool]:
            case = await _load(conn, case_id, lock=True)
            update = decide(case)
            if update is None:
                return case, False
            unknown = set(update.values) - _MUTABLE
            if unknown:
                raise ValueError(f"not a field a case change may set: {sorted(unknown)}")
            names = list(update.values)
            columns = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=1))
            params = [_column(update.values[name]) for name in names]
            await conn.execute(
                f"UPDATE cases SET {columns} WHERE id = ${len(names) + 1}", *params, case_id
            )
            await self._append(conn, case_id, update.event, update.webhook)
            return await _load(conn, case_id), True

        return await self._db.transaction(work)

    async def note(self, case_id: str, decide: Callable[[Case], CaseEvent]) -> Case:
        async def work(conn: Connection) -> Case:
            # Locked too: the entry is written against the case as decide saw it.
            case = await _load(conn, case_id, lock=True)
            await self._append(conn, case_id, decide(case), None)
            return case

        return await self._db.transaction(work)

    async def append_once(self, case_id: str, event: CaseEvent, *, dedup_key: str | None) -> bool:
        written = await self._db.execute(
            _APPEND_ONCE,
            (case_id, event.at, event.type, event.actor, json.dumps(dict(event.data)), dedup_key),
        )
        return written > 0
