"""A case as both database backends store it: a row (any mapping by column name: sqlite3.Row,
asyncpg.Record) read into a :class:`~server.cases.Case`, and a field's value as its column holds
it. One mapping, so the backends cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from server.cases import Case, CaseKind, CaseState

__all__ = ["Row", "case_from_row", "column_value"]


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def case_from_row(row: Row) -> Case:
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


def column_value(value: Any) -> Any:
    """A field's value as its column holds it: money as decimal text (never a float at rest),
    mappings as JSON, enums by value."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return value
