"""Cases and their timelines on PostgreSQL (tables ``cases`` and ``case_events``); a change's
webhook event goes to ``webhook_outbox`` in the change's own transaction.

A change locks its case (``SELECT ... FOR UPDATE``) before ``decide`` sees it, so changes of
one case from any number of nodes run one after the other and none is lost."""

from __future__ import annotations

import json
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


async def _load(conn: Connection, case_id: str, *, lock: bool = False) -> Case:
    sql = f"SELECT {_COLUMNS} FROM cases WHERE id = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, case_id)
    if row is None:
        raise NotFound(f"no case {case_id!r}")
    return case_from_row(row)


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
        return case_from_row(row) if row is not None else None

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
        return [case_from_row(row) for row in rows]

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
        return [case_from_row(row) for row in rows]

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    # -- writes --------------------------------------------------------------------------------

    async def create(self, case: Case, *, event: CaseEvent, webhook: WebhookEvent | None) -> Case:
        values = [column_value(getattr(case, name)) for name in _INSERT_COLUMNS]

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
            params = [column_value(update.values[name]) for name in names]
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
