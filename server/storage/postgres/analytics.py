""":class:`~server.storage.analytics.AnalyticsStore` on PostgreSQL: return cases and sales
summed from the rows themselves, by the same measures as the SQLite backend's rollups (so the
figures agree), with PostgreSQL's aggregates over the ``cases_returns`` and
``cases_returns_sku`` indexes. There is nothing precomputed, so :meth:`refresh` has nothing
to do; the figures are those of the committed cases at the moment of the query, whichever
node wrote them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from server.cases import WebhookEvent
from server.storage._analytics_rows import group_rows
from server.storage.analytics import (
    BUCKET_BASE_S,
    BUCKETS,
    SALES_DIMENSIONS,
    AlertRecord,
    Dimension,
    ReturnGroup,
    SalesRow,
    Slice,
)

from .._rows import alert_record as _alert
from .database import Connection, PostgresDatabase
from .webhooks import enqueue

__all__ = ["PostgresAnalyticsStore"]

_UTC: Final = "(to_timestamp(created_at) AT TIME ZONE 'UTC')"

#: A case's decision-time bucket (server.storage.analytics.decision_bucket in SQL); -1: open.
_BUCKET_SQL: Final = (
    "CASE WHEN decided_at IS NULL THEN -1"
    f" WHEN decided_at - created_at < {BUCKET_BASE_S} THEN 0"
    f" ELSE LEAST({BUCKETS - 1},"
    f" trunc(2 * ln((decided_at - created_at) / {BUCKET_BASE_S}) / ln(2.0))::integer + 1) END"
)
#: The sums of a group of cases, in the order of COUNTS and VALUES (_analytics_rows).
_MEASURES_SQL: Final = ", ".join(
    (
        "COUNT(*)",
        "COUNT(*) FILTER (WHERE claimed_reason IS NOT NULL AND verified_reason IS NOT NULL)",
        "COUNT(*) FILTER (WHERE verified_reason <> claimed_reason)",
        "COUNT(*) FILTER (WHERE COALESCE(verified_reason, claimed_reason) = 'damaged_in_transit')",
        *(
            "COALESCE(SUM(round(order_value::numeric * 10000))"
            f" FILTER (WHERE final_grade = '{grade}'), 0)::bigint"
            for grade in "ABCD"
        ),
    )
)
_CASE_KEY: Final[dict[str, str]] = {
    Dimension.SKU: "COALESCE(sku, '')",
    Dimension.CATEGORY: "COALESCE(category, '')",
    Dimension.CLAIMED_REASON: "COALESCE(claimed_reason, '')",
    Dimension.VERIFIED_REASON: "COALESCE(verified_reason, '')",
    Dimension.GRADE: "COALESCE(final_grade, '')",
    Dimension.COUNTRY: "COALESCE(country, '')",
    Dimension.CARRIER: "''",  # split from the carrier field in Python
    Dimension.MONTH: f"to_char({_UTC}, 'YYYY-MM')",
    # ISO weeks start on Monday, which date_trunc('week') gives.
    Dimension.WEEK: f"to_char(date_trunc('week', {_UTC}), 'YYYY-MM-DD')",
    Dimension.DAY: f"to_char({_UTC}, 'YYYY-MM-DD')",
}
_CASE_FILTERS: Final = {
    "sku": "sku",
    "category": "category",
    "country": "country",
    "claimed_reason": "claimed_reason",
    "verified_reason": "verified_reason",
    "grade": "final_grade",
}
_SALES_KEY: Final[dict[str, str]] = {
    "sku": "sku",
    "category": "COALESCE(category, '')",
    "country": "country",
    "month": "substr(day, 1, 7)",
    "week": "to_char(date_trunc('week', day::date), 'YYYY-MM-DD')",
    "day": "day",
    "all": "''",
}


def _start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _case_sql(dimension: Dimension, where: Slice) -> tuple[str, list[Any]]:
    """Sums of the cases of ``where`` by key, currency, carrier field (when carriers matter)
    and decision-time bucket: the rows :func:`group_rows` takes."""
    params: list[Any] = [_start(where.since), _start(where.until + timedelta(days=1))]
    clauses = ""
    for name, value in where.filters().items():
        if name in _CASE_FILTERS:
            params.append(value)
            clauses += f" AND {_CASE_FILTERS[name]} = ${len(params)}"
    if where.carrier is not None:
        # A cheap first cut; group_rows matches the carrier exactly.
        params.append(where.carrier.casefold())
        clauses += f" AND strpos(lower(carrier), ${len(params)}) > 0"
    split = dimension == Dimension.CARRIER or where.carrier is not None
    carrier = "COALESCE(carrier, '')" if split else "''"
    sql = (
        f"SELECT {_CASE_KEY[dimension]} AS k, COALESCE(order_currency, '') AS cur,"
        f" {carrier} AS cr, {_BUCKET_SQL} AS b, {_MEASURES_SQL} FROM cases"
        f" WHERE kind = 'return' AND created_at >= $1 AND created_at < $2{clauses}"
        " GROUP BY 1, 2, 3, 4"
    )
    return sql, params


def _sales_sql(dimension: str, where: Slice) -> tuple[str, list[Any]]:
    params: list[Any] = [where.since.isoformat(), where.until.isoformat()]
    clauses = ""
    for column in ("sku", "category", "country"):
        value = getattr(where, column)
        if value is not None:
            params.append(value)
            clauses += f" AND {column} = ${len(params)}"
    sql = (
        f"SELECT {_SALES_KEY[dimension]} AS k, SUM(units) FROM sales"
        f" WHERE day BETWEEN $1 AND $2{clauses} GROUP BY 1"
    )
    return sql, params


class PostgresAnalyticsStore:
    """:class:`~server.storage.analytics.AnalyticsStore` on a :class:`PostgresDatabase`;
    ``webhook_urls`` as for the case store (a raised alert's event goes to each of them and
    to every admin-configured target)."""

    def __init__(self, db: PostgresDatabase, *, webhook_urls: Sequence[str] = ()) -> None:
        self._db = db
        self._webhook_urls = tuple(webhook_urls)

    async def refresh(self) -> int:
        return 0  # nothing is precomputed

    async def return_groups(self, dimension: Dimension, where: Slice) -> list[ReturnGroup]:
        dimension = Dimension(dimension)
        sql, params = _case_sql(dimension, where)
        rows = await self._db.fetch(sql, params)
        return group_rows(
            rows, bucketed=True, split=dimension == Dimension.CARRIER, carrier=where.carrier
        )

    async def units(self, dimension: Dimension | None, where: Slice) -> dict[str, int]:
        name = "all" if dimension is None else str(Dimension(dimension))
        if dimension is not None and dimension not in SALES_DIMENSIONS:
            raise ValueError(f"sales are not kept by {name}")
        sql, params = _sales_sql(name, where)
        rows = await self._db.fetch(sql, params)
        return {str(row[0]): int(row[1]) for row in rows if row[1]}

    async def put_sales(self, rows: Sequence[SalesRow]) -> int:
        async def work(conn: Connection) -> int:
            await conn.executemany(
                "INSERT INTO sales (day, sku, category, country, units)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (sku, day, country) DO UPDATE SET"
                " category = excluded.category, units = excluded.units",
                [
                    (row.day.isoformat(), row.sku, row.category, row.country, row.units)
                    for row in rows
                ],
            )
            return len(rows)

        return await self._db.transaction(work)

    async def raise_alert(self, alert: AlertRecord, event: WebhookEvent) -> bool:
        async def work(conn: Connection) -> bool:
            # Two nodes checking the same rule at once: the second waits, then sees the first.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('inspectd.return_alerts'), hashtext($1))",
                f"{alert.rule_id}\n{alert.subject}",
            )
            covered = await conn.fetchval(
                "SELECT 1 FROM return_alerts WHERE rule_id = $1 AND subject = $2"
                " AND substr(period, 1, 10) <= $3 AND substr(period, 13, 10) >= $4 LIMIT 1",
                alert.rule_id,
                alert.subject,
                alert.until.isoformat(),
                alert.since.isoformat(),
            )
            if covered is not None:
                return False
            inserted = await conn.fetchval(
                "INSERT INTO return_alerts (id, rule_id, version, subject, period, data,"
                " raised_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (rule_id, subject, period) DO NOTHING RETURNING id",
                alert.id,
                alert.rule_id,
                alert.version,
                alert.subject,
                alert.period,
                json.dumps(dict(alert.data), separators=(",", ":")),
                alert.raised_at,
            )
            if inserted is None:
                return False
            await enqueue(conn, event, urls=self._webhook_urls)
            return True

        return await self._db.transaction(work)

    async def alerts(self, *, limit: int, since: float | None = None) -> list[AlertRecord]:
        rows = await self._db.fetch(
            "SELECT id, rule_id, version, subject, period, data, raised_at FROM return_alerts"
            " WHERE raised_at >= $1 ORDER BY raised_at DESC, id LIMIT $2",
            (since if since is not None else float("-inf"), limit),
        )
        return [_alert(row) for row in rows]
