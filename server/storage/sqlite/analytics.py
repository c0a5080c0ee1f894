""":class:`~server.storage.analytics.AnalyticsStore` on SQLite: return cases and sales summed
from rollups or, for the few slices the rollups cannot answer, from the rows themselves (index
``cases_analytics`` covers every column read; ``cases_analytics_sku`` finds a SKU's cases).

The rollups hold sums per UTC day, ISO week and month: ``return_dim`` by each dimension alone
(charts with no filter), ``return_cube`` by every dimension but the SKU at once (whose values
repeat, so a month of a million-case year is a few thousand rows, and a filter is a WHERE),
``return_sku`` by SKU, category, country and grade (the SKUs of a category, a country or a
grade), the *SKU pairs* by SKU and one carrier field, claimed or verified reason (the SKUs of a
carrier or a reason: rows of ``return_dim`` under grains of their own, ``sku_day``,
``sku_week`` and ``sku_month``, so that no other chart reads past them; ``dimension`` names the
field and ``key`` is the JSON array ``[value, sku]``), ``sales_rollup`` by one sales dimension.
A query over a year reads the whole months inside it, then whole weeks, then days. A SKU
breakdown with two filters of which one is a reason or a carrier, and anything of one SKU, is
summed from the rows.

Triggers mark the day of every changed case or sale in ``analytics_dirty``; the next query
(or :meth:`SqliteAnalyticsStore.refresh`) sums those days again from their rows, with the same
SQL the unrolled path runs, and adds the difference to the day's, week's and month's rows, so
the two paths cannot disagree and a change costs one day's sums. Carriers are split in Python
("UPS, Amazon" counts under both) from the carrier field the rows keep. A database rolled up
before the SKU pairs were kept (no ``sku_pairs`` in ``analytics_state``) has every day summed
again once, at its first query.
"""

from __future__ import annotations

import calendar
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

from server.cases import WebhookEvent
from server.storage.analytics import (
    BUCKET_BASE_S,
    BUCKETS,
    SALES_DIMENSIONS,
    TIME_DIMENSIONS,
    AlertRecord,
    Dimension,
    ReturnGroup,
    SalesRow,
    Slice,
)

from .._analytics_rows import SUMMED as _SUMMED
from .._analytics_rows import group_rows as _groups
from .._rows import alert_record as _alert
from .database import Database
from .webhooks import enqueue

__all__ = ["SqliteAnalyticsStore"]

T = TypeVar("T")

#: Days summed again per transaction: the database thread is shared, so other work runs between.
_REFRESH_CHUNK: Final = 31
#: From this many dirty days on, weeks and months are summed again from their days rather
#: than added to.
_MANY_DAYS: Final = 8
_GRAINS: Final = ("day", "week", "month")

_BUCKET_SQL: Final = (
    "CASE WHEN decided_at IS NULL THEN -1"
    f" WHEN decided_at - created_at < {BUCKET_BASE_S} THEN 0"
    f" ELSE min({BUCKETS - 1},"
    f" CAST(2 * log2((decided_at - created_at) / {BUCKET_BASE_S}) AS INTEGER) + 1) END"
)
#: The sums of a group of cases, in the order of COUNTS and VALUES (server.storage._analytics_rows).
_MEASURES_SQL: Final = ", ".join(
    (
        "COUNT(*)",
        "SUM(claimed_reason IS NOT NULL AND verified_reason IS NOT NULL)",
        "COALESCE(SUM(verified_reason <> claimed_reason), 0)",
        "COALESCE(SUM(COALESCE(verified_reason, claimed_reason) = 'damaged_in_transit'), 0)",
        *(
            f"COALESCE(SUM(CASE WHEN final_grade = '{grade}'"
            " THEN CAST(round(order_value * 10000) AS INTEGER) END), 0)"
            for grade in "ABCD"
        ),
    )
)
#: A case's value of each rollup column.
_CASE_COLUMN: Final[dict[str, str]] = {
    "sku": "COALESCE(sku, '')",
    "category": "COALESCE(category, '')",
    "country": "COALESCE(country, '')",
    "carrier": "COALESCE(carrier, '')",
    "claimed_reason": "COALESCE(claimed_reason, '')",
    "verified_reason": "COALESCE(verified_reason, '')",
    "grade": "COALESCE(final_grade, '')",
    "currency": "COALESCE(order_currency, '')",
}


@dataclass(frozen=True, slots=True)
class _Rollup:
    """A rollup table: the columns that key a row after its grain and period, in the order of
    its primary key (``pk``), and the columns summed."""

    table: str
    keys: tuple[str, ...]
    pk: tuple[str, ...]
    sums: tuple[str, ...] = _SUMMED
    #: What its day's, week's and month's rows are called in ``grain``.
    grains: tuple[str, str, str] = _GRAINS

    def grain(self, name: str) -> str:
        """The ``grain`` of this rollup's rows of a day, week or month (``name``)."""
        return self.grains[_GRAINS.index(name)]

    def upsert(self) -> str:
        """Add a row's sums to the row of its key (made if there is none)."""
        columns = ("grain", "period", *self.keys, *self.sums)
        added = ", ".join(f"{column} = {column} + excluded.{column}" for column in self.sums)
        return (
            f"INSERT INTO {self.table} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT ({', '.join(self.pk)}) DO UPDATE SET {added}"
        )


_DIM: Final = _Rollup(
    "return_dim",
    ("dimension", "key", "currency"),
    ("grain", "period", "dimension", "key", "currency"),
)
_CUBE_KEYS: Final = (
    "category",
    "country",
    "carrier",
    "claimed_reason",
    "verified_reason",
    "grade",
    "currency",
)
_CUBE: Final = _Rollup("return_cube", _CUBE_KEYS, ("grain", "period", *_CUBE_KEYS))
#: A category's SKUs are next to each other: the filter most asked of a SKU breakdown.
_SKU_KEYS: Final = ("category", "sku", "country", "grade", "currency")
_SKUS: Final = _Rollup("return_sku", _SKU_KEYS, ("grain", "period", *_SKU_KEYS))
_SALES: Final = _Rollup(
    "sales_rollup", ("dimension", "key"), ("grain", "period", "dimension", "key"), ("units",)
)
#: The SKU pairs: a SKU's sums by one of these fields (the SKUs of a carrier or a reason),
#: in return_dim under grains of their own; dimension is the field, key ``[value, sku]``.
_PAIR_DIMENSIONS: Final = ("carrier", "claimed_reason", "verified_reason")
_PAIRS: Final = _Rollup(
    "return_dim", _DIM.keys, _DIM.pk, grains=("sku_day", "sku_week", "sku_month")
)
#: analytics_state's note that the SKU pairs are kept (a database without it sums every day
#: again once).
_PAIRS_STATE: Final = ("sku_pairs", "1")
_PAIR_VALUE: Final = "json_extract(key, '$[0]')"
_PAIR_SKU: Final = "json_extract(key, '$[1]')"
#: The dimensions return_dim keeps besides sku: a cube column each, and 'all' (every case
#: under key '').
_DIM_COLUMNS: Final = ("category", "country", "carrier", "claimed_reason", "verified_reason",
                       "grade")  # fmt: skip
_SALES_DIMENSIONS: Final = ("sku", "category", "country", "all")

# A case's key by dimension, from its row (the carrier field is split in Python).
_CASE_KEY: Final[dict[str, str]] = {
    **{column: _CASE_COLUMN[column] for column in ("sku", *_DIM_COLUMNS)},
    Dimension.CARRIER: "''",
    Dimension.MONTH: "strftime('%Y-%m', created_at, 'unixepoch')",
    # The Monday on or before the day: ISO weeks.
    Dimension.WEEK: "date(created_at, 'unixepoch', '-6 days', 'weekday 1')",
    Dimension.DAY: "date(created_at, 'unixepoch')",
}
# A time dimension's key from a rollup row's period (a week's is its Monday already).
_PERIOD_KEY: Final[dict[str, str]] = {
    Dimension.MONTH: "substr(period, 1, 7)",
    Dimension.WEEK: "date(period, '-6 days', 'weekday 1')",
    Dimension.DAY: "period",
}
_SALES_KEY: Final[dict[str, str]] = {
    "sku": "sku",
    "category": "COALESCE(category, '')",
    "country": "country",
    "month": "substr(day, 1, 7)",
    "week": "date(day, '-6 days', 'weekday 1')",
    "day": "day",
    "all": "''",
}


def _start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


Span = tuple[str, str, str]  # grain, first period, last period


def _spans(since: date, until: date, dimension: str) -> list[Span]:
    """``since``..``until`` as whole months, then whole weeks, then days (those a dimension
    can be read from: a week's sums cannot be split into days, nor a month's into weeks, and
    a week across two months belongs to neither)."""
    spans: list[Span] = []
    one = timedelta(days=1)
    segments = [(since, until)]
    if dimension not in ("week", "day"):
        first = since if since.day == 1 else _month_end(since) + one
        last = until if until == _month_end(until) else until.replace(day=1) - one
        if first <= last:
            spans.append(("month", first.isoformat()[:7], last.isoformat()[:7]))
            segments = [(since, first - one), (last + one, until)]
    if dimension == "month":
        # What is left lies in one or two months: cut it at their border.
        segments = [
            (max(low, cut), min(high, _month_end(cut)))
            for low, high in segments
            for cut in (low.replace(day=1), _month_end(low) + one)
            if max(low, cut) <= min(high, _month_end(cut))
        ]
    for low, high in segments:
        if low > high:
            continue
        if dimension != "day":
            monday = low + timedelta(days=(7 - low.weekday()) % 7)
            sunday = high - timedelta(days=(high.weekday() + 1) % 7)
            if monday <= sunday:
                spans.append(("week", monday.isoformat(), (sunday - 6 * one).isoformat()))
                if low < monday:
                    spans.append(("day", low.isoformat(), (monday - one).isoformat()))
                if sunday < high:
                    spans.append(("day", (sunday + one).isoformat(), high.isoformat()))
                continue
        spans.append(("day", low.isoformat(), high.isoformat()))
    return spans


# -- reading --------------------------------------------------------------------------------


def _filters(where: Slice, columns: Mapping[str, str]) -> tuple[str, list[Any]]:
    """``where``'s filters on ``columns`` (filter name -> column) as ``AND`` clauses; the
    carrier filter, when set, as a cheap first cut (the exact match is made in _groups)."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in where.filters().items():
        if name in columns:
            clauses.append(f" AND {columns[name]} = ?")
            params.append(value)
    if where.carrier is not None:
        clauses.append(" AND instr(lower(carrier), ?) > 0")
        params.append(where.carrier.casefold())
    return "".join(clauses), params


_CASE_FILTERS: Final = {
    "sku": "sku",
    "category": "category",
    "country": "country",
    "claimed_reason": "claimed_reason",
    "verified_reason": "verified_reason",
    "grade": "final_grade",
}


def _case_sql(dimension: Dimension, where: Slice) -> tuple[str, list[Any]]:
    """Sums of the cases of ``where`` by key, currency, carrier field (when carriers matter)
    and decision-time bucket, straight from the rows."""
    extra, params = _filters(where, _CASE_FILTERS)
    split = dimension == Dimension.CARRIER or where.carrier is not None
    carrier = "COALESCE(carrier, '')" if split else "''"
    # Without a hint the planner walks a year of the created_at index for one SKU's cases.
    index = "cases_analytics_sku" if where.sku is not None else "cases_analytics"
    sql = (
        f"SELECT {_CASE_KEY[dimension]} AS k, COALESCE(order_currency, '') AS cur,"
        f" {carrier} AS cr, {_BUCKET_SQL} AS b, {_MEASURES_SQL} FROM cases INDEXED BY {index}"
        f" WHERE kind = 'return' AND created_at >= ? AND created_at < ?{extra}"
        " GROUP BY k, cur, cr, b"
    )
    bounds = [_start(where.since), _start(where.until + timedelta(days=1))]
    return sql, [*bounds, *params]


def _rollup_for(dimension: Dimension, where: Slice) -> _Rollup | None:
    """The rollup that answers ``where`` by ``dimension``; None: only the cases can."""
    if where.sku is not None:
        return None  # a SKU's cases are few, and found by their index
    if not where.filtered:
        return _DIM
    if dimension == Dimension.SKU:
        filters = set(where.filters())
        if len(filters) == 1 and filters <= set(_PAIR_DIMENSIONS):
            return _PAIRS
        return None if filters - {"category", "country", "grade"} else _SKUS
    return _CUBE


def _rollup_sql(rollup: _Rollup, dimension: Dimension, where: Slice) -> tuple[str, list[Any]]:
    """The sums of :func:`_case_sql` read from a rollup."""
    split = dimension == Dimension.CARRIER or where.carrier is not None
    if rollup is _DIM:
        extra, filter_params = (
            " AND dimension = ?",
            ["all" if dimension in TIME_DIMENSIONS else str(dimension)],
        )
        key = _PERIOD_KEY.get(dimension, "key")
        carrier = "key" if split else "''"
    elif rollup is _PAIRS:
        # One filter, on the field of the pairs read (_rollup_for); the carrier field holds
        # lists: a cheap first cut here, the exact match in _groups.
        ((field, value),) = where.filters().items()
        if field == "carrier":
            extra = f" AND dimension = 'carrier' AND instr(lower({_PAIR_VALUE}), ?) > 0"
            filter_params = [value.casefold()]
        else:
            extra, filter_params = f" AND dimension = ? AND {_PAIR_VALUE} = ?", [field, value]
        key = _PAIR_SKU
        carrier = _PAIR_VALUE if split else "''"
    else:
        # The carrier field holds lists: _filters matches it apart.
        filtered = {name: name for name in rollup.keys if name in _CASE_FILTERS}
        extra, filter_params = _filters(where, filtered)
        key = _PERIOD_KEY.get(dimension) or (
            "''" if dimension == Dimension.CARRIER else str(dimension)
        )
        carrier = "carrier" if split else "''"
    # Only the columns read: a subquery of UNION ALL is made row by row.
    read = ", ".join(("period", *rollup.keys, *_SUMMED))
    parts: list[str] = []
    params: list[Any] = []
    for grain, first, last in _spans(where.since, where.until, dimension):
        parts.append(
            f"SELECT {read} FROM {rollup.table} WHERE grain = ? AND period BETWEEN ? AND ?{extra}"
        )
        params += [rollup.grain(grain), first, last, *filter_params]
    sums = ", ".join(f"SUM({column})" for column in _SUMMED)
    sql = (
        f"SELECT {key} AS k, currency AS cur, {carrier} AS cr, {sums}"
        f" FROM ({' UNION ALL '.join(parts)}) GROUP BY k, cur, cr"
    )
    return sql, params


def _sales_sql(dimension: str, where: Slice) -> tuple[str, list[Any]]:
    extra, params = "", []
    for column in ("sku", "category", "country"):
        value = getattr(where, column)
        if value is not None:
            extra += f" AND {column} = ?"
            params.append(value)
    sql = (
        f"SELECT {_SALES_KEY[dimension]} AS k, SUM(units) FROM sales"
        f" WHERE day BETWEEN ? AND ?{extra} GROUP BY k"
    )
    return sql, [where.since.isoformat(), where.until.isoformat(), *params]


def _sales_rollup_sql(dimension: str, where: Slice) -> tuple[str, list[Any]]:
    rollup = dimension if dimension in _SALES_DIMENSIONS else "all"
    parts: list[str] = []
    params: list[Any] = []
    for grain, first, last in _spans(where.since, where.until, dimension):
        parts.append(
            "SELECT period, key, units FROM sales_rollup"
            " WHERE grain = ? AND dimension = ? AND period BETWEEN ? AND ?"
        )
        params += [grain, rollup, first, last]
    key = _PERIOD_KEY.get(dimension, "key")
    sql = f"SELECT {key} AS k, SUM(units) FROM ({' UNION ALL '.join(parts)}) GROUP BY k"
    return sql, params


# -- rollup upkeep ----------------------------------------------------------------------------

Sums = dict[tuple[Any, ...], tuple[int, ...]]

_HIST_SQL: Final = ", ".join(f"SUM(b = {k})" for k in range(BUCKETS))
_SUMS_SQL: Final = ", ".join(f"SUM({column})" for column in _SUMMED)


def _case_rows_sql(columns: Sequence[tuple[str, str]]) -> str:
    """A day's cases summed by ``columns`` (each a rollup key and its value of a case),
    histogram included: a rollup's rows as they should be."""
    keys = ", ".join(f"{value} AS k_{key}" for key, value in columns)
    group = ", ".join(f"k_{key}" for key, _ in columns)
    return (
        f"SELECT {group}, {_MEASURES_SQL}, {_HIST_SQL} FROM (SELECT {keys}, claimed_reason,"
        f" verified_reason, final_grade, order_value, {_BUCKET_SQL} AS b"
        " FROM cases INDEXED BY cases_analytics"
        " WHERE kind = 'return' AND created_at >= ? AND created_at < ?)"
        f" GROUP BY {group}"
    )


# return_dim's rows of a day, from return_cube's and return_sku's (which are summed first).
_DIM_ROWS_SQL: Final = " UNION ALL ".join(
    f"SELECT '{column}', {column}, currency, {_SUMS_SQL} FROM return_cube"
    f" WHERE grain = 'day' AND period = :day GROUP BY {column}, currency"
    for column in _DIM_COLUMNS
) + (
    f" UNION ALL SELECT 'all', '', currency, {_SUMS_SQL} FROM return_cube"
    " WHERE grain = 'day' AND period = :day GROUP BY currency"
    f" UNION ALL SELECT 'sku', sku, currency, {_SUMS_SQL} FROM return_sku"
    " WHERE grain = 'day' AND period = :day GROUP BY sku, currency"
)
_SALES_ROWS_SQL: Final = " UNION ALL ".join(
    f"SELECT '{dimension}', {_SALES_KEY[dimension]}, SUM(units) FROM sales WHERE day = :day"
    f" GROUP BY {_SALES_KEY[dimension]}"
    for dimension in _SALES_DIMENSIONS
)


#: The SKU pairs' rows of a day, each field's from the cases.
_PAIR_ROWS_SQL: Final = " UNION ALL ".join(
    _case_rows_sql(
        (
            ("dimension", f"'{column}'"),
            ("key", f"json_array({_CASE_COLUMN[column]}, {_CASE_COLUMN['sku']})"),
            ("currency", _CASE_COLUMN["currency"]),
        )
    )
    for column in _PAIR_DIMENSIONS
)


def _sums(rows: Iterable[Sequence[Any]], width: int) -> Sums:
    return {tuple(row[:width]): tuple(row[width:]) for row in rows}


def _apply(conn: sqlite3.Connection, rollup: _Rollup, day: date, sums: Sums) -> None:
    """Make ``rollup``'s rows of ``day`` hold ``sums``, adding what changed to the day's,
    week's and month's rows."""
    width = len(rollup.keys)
    stored = _sums(
        conn.execute(
            f"SELECT {', '.join((*rollup.keys, *rollup.sums))} FROM {rollup.table}"
            " WHERE grain = ? AND period = ?",
            (rollup.grains[0], day.isoformat()),
        ),
        width,
    )
    zero = (0,) * len(rollup.sums)
    changes = [
        (
            key,
            [
                new - old
                for new, old in zip(sums.get(key, zero), stored.get(key, zero), strict=True)
            ],
        )
        for key in sums.keys() | stored.keys()
        if sums.get(key) != stored.get(key)
    ]
    if not changes:
        return
    periods = tuple(
        zip(
            rollup.grains,
            (day.isoformat(), _monday(day).isoformat(), day.isoformat()[:7]),
            strict=True,
        )
    )
    conn.executemany(
        rollup.upsert(),
        [(grain, period, *key, *delta) for grain, period in periods for key, delta in changes],
    )
    # A key the day no longer has may have nothing left in its week or month either.
    gone = stored.keys() - sums.keys()
    keyed = " AND ".join(f"{column} = ?" for column in rollup.keys)
    conn.executemany(
        f"DELETE FROM {rollup.table} WHERE grain = ? AND period = ? AND {keyed}"
        f" AND {rollup.sums[0]} = 0",
        [(grain, period, *key) for grain, period in periods for key in gone],
    )


def _day_sums(conn: sqlite3.Connection, rollup: _Rollup, day: date) -> Sums:
    """What ``rollup``'s rows of ``day`` should hold (return_dim's from return_cube's)."""
    if rollup is _DIM:
        return _sums(conn.execute(_DIM_ROWS_SQL, {"day": day.isoformat()}), 3)
    if rollup is _SALES:
        return _sums(conn.execute(_SALES_ROWS_SQL, {"day": day.isoformat()}), 2)
    bounds = (_start(day), _start(day + timedelta(days=1)))
    if rollup is _PAIRS:
        return _sums(conn.execute(_PAIR_ROWS_SQL, bounds * len(_PAIR_DIMENSIONS)), 3)
    columns = [(key, _CASE_COLUMN[key]) for key in rollup.keys]
    return _sums(conn.execute(_case_rows_sql(columns), bounds), len(rollup.keys))


#: In the order they are summed: return_dim is read from return_cube's new rows.
_ROLLUPS: Final = (_CUBE, _SKUS, _DIM, _PAIRS, _SALES)


def _resum(
    conn: sqlite3.Connection, rollup: _Rollup, grain: str, period: str, days: tuple[str, str]
) -> None:
    """A week's or month's rows summed again from its days'."""
    keys = ", ".join(rollup.keys)
    grain = rollup.grain(grain)
    conn.execute(f"DELETE FROM {rollup.table} WHERE grain = ? AND period = ?", (grain, period))
    conn.execute(
        f"INSERT INTO {rollup.table} (grain, period, {keys}, {', '.join(rollup.sums)})"
        f" SELECT ?, ?, {keys}, {', '.join(f'SUM({c})' for c in rollup.sums)}"
        f" FROM {rollup.table} WHERE grain = ? AND period BETWEEN ? AND ?"
        f" GROUP BY {keys}",
        (grain, period, rollup.grains[0], *days),
    )


def _refresh_many(conn: sqlite3.Connection, days: Sequence[date]) -> None:
    """Many days at once (a first build): their rows replaced, then their weeks' and months'
    summed again from the days, which costs less than adding up each day's changes."""
    for day in days:
        for rollup in _ROLLUPS:
            sums = _day_sums(conn, rollup, day)
            conn.execute(
                f"DELETE FROM {rollup.table} WHERE grain = ? AND period = ?",
                (rollup.grains[0], day.isoformat()),
            )
            columns = ("grain", "period", *rollup.keys, *rollup.sums)
            conn.executemany(
                f"INSERT INTO {rollup.table} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                [(rollup.grains[0], day.isoformat(), *key, *total) for key, total in sums.items()],
            )
    weeks = sorted({_monday(day) for day in days})
    months = sorted({day.replace(day=1) for day in days})
    for rollup in _ROLLUPS:
        for monday in weeks:
            span = (monday.isoformat(), (monday + timedelta(days=6)).isoformat())
            _resum(conn, rollup, "week", monday.isoformat(), span)
        for first in months:
            span = (first.isoformat(), _month_end(first).isoformat())
            _resum(conn, rollup, "month", first.isoformat()[:7], span)


def _refresh_some(conn: sqlite3.Connection, limit: int) -> int:
    """Sum up to ``limit`` dirty days again, inside the caller's transaction; returns how many
    were marked."""
    marked = [
        str(row[0])
        for row in conn.execute("SELECT day FROM analytics_dirty ORDER BY day LIMIT ?", (limit,))
    ]
    days: list[date] = []
    for text in marked:
        try:
            days.append(date.fromisoformat(text))
        except (TypeError, ValueError):
            pass  # a sale written with a malformed day: nothing a rollup can hold
    if len(days) >= _MANY_DAYS:
        _refresh_many(conn, days)
    else:
        for day in days:
            for rollup in _ROLLUPS:
                _apply(conn, rollup, day, _day_sums(conn, rollup, day))
    conn.executemany("DELETE FROM analytics_dirty WHERE day = ?", [(text,) for text in marked])
    return len(marked)


def _keep_pairs(conn: sqlite3.Connection) -> None:
    """In a database rolled up before the SKU pairs were kept, mark every day of a return
    case (its pairs are made with the next refresh), once."""
    name, value = _PAIRS_STATE
    noted = conn.execute(
        "SELECT 1 FROM analytics_state WHERE name = ? AND value = ?", (name, value)
    ).fetchone()
    if noted is not None:
        return
    conn.execute(
        f"DELETE FROM {_PAIRS.table} WHERE grain IN ({', '.join('?' * len(_PAIRS.grains))})",
        _PAIRS.grains,
    )
    conn.execute(
        "INSERT OR IGNORE INTO analytics_dirty (day) SELECT date(created_at, 'unixepoch')"
        " FROM cases WHERE kind = 'return' GROUP BY 1"
    )
    conn.execute(
        "INSERT OR REPLACE INTO analytics_state (name, value) VALUES (?, ?)", (name, value)
    )


def _dirty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM analytics_dirty LIMIT 1").fetchone() is not None


class SqliteAnalyticsStore:
    """:class:`~server.storage.analytics.AnalyticsStore` on the SQLite :class:`Database`.

    ``webhook_urls`` are the webhook targets from the configuration (as for cases): a raised
    alert's event gets a delivery to each of them and to every admin-configured target.
    ``rollups=False`` answers everything from the rows (``bench/analytics.py`` compares).
    """

    def __init__(
        self, db: Database, *, webhook_urls: Sequence[str] = (), rollups: bool = True
    ) -> None:
        self._db = db
        self._webhook_urls = tuple(webhook_urls)
        #: False: every answer summed from the rows (what the rollups are measured against).
        self._rollups = rollups
        #: Whether this store saw the SKU pairs kept (_keep_pairs), once.
        self._pairs_kept = False

    async def _keep_pairs(self) -> None:
        if not self._pairs_kept:
            await self._db.transaction(_keep_pairs)
            self._pairs_kept = True

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` once no day waits for its rollup rows (rebuilt first, a chunk
        of days per transaction, so other work on the database thread runs in between)."""
        box: list[T] = []
        await self._keep_pairs()

        def attempt(conn: sqlite3.Connection) -> bool:
            if _dirty(conn):
                return False
            box.append(fn(conn))
            return True

        while not await self._db.run(attempt):
            await self._db.transaction(lambda conn: _refresh_some(conn, _REFRESH_CHUNK))
        return box[0]

    async def refresh(self) -> int:
        await self._keep_pairs()
        total = 0
        while True:
            count = await self._db.transaction(lambda conn: _refresh_some(conn, _REFRESH_CHUNK))
            total += count
            if count == 0:
                return total

    async def return_groups(self, dimension: Dimension, where: Slice) -> list[ReturnGroup]:
        dimension = Dimension(dimension)
        split = dimension == Dimension.CARRIER
        rollup = _rollup_for(dimension, where) if self._rollups else None
        if rollup is None:
            sql, params = _case_sql(dimension, where)
            found = await self._db.fetchall(sql, params)
            return _groups(found, bucketed=True, split=split, carrier=where.carrier)
        sql, params = _rollup_sql(rollup, dimension, where)
        rolled = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return _groups(rolled, bucketed=False, split=split, carrier=where.carrier)

    async def units(self, dimension: Dimension | None, where: Slice) -> dict[str, int]:
        name = "all" if dimension is None else str(Dimension(dimension))
        if dimension is not None and dimension not in SALES_DIMENSIONS:
            raise ValueError(f"sales are not kept by {name}")
        if where.sales_filtered or not self._rollups:
            sql, params = _sales_sql(name, where)
            rows = await self._db.fetchall(sql, params)
        else:
            sql, params = _sales_rollup_sql(name, where)
            rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return {str(row[0]): int(row[1]) for row in rows if row[1]}

    async def put_sales(self, rows: Sequence[SalesRow]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO sales (day, sku, category, country, units) VALUES (?, ?, ?, ?, ?)"
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
        def work(conn: sqlite3.Connection) -> bool:
            covered = conn.execute(
                "SELECT 1 FROM return_alerts WHERE rule_id = ? AND subject = ?"
                " AND substr(period, 1, 10) <= ? AND substr(period, 13, 10) >= ? LIMIT 1",
                (alert.rule_id, alert.subject, alert.until.isoformat(), alert.since.isoformat()),
            ).fetchone()
            if covered is not None:
                return False
            inserted = conn.execute(
                "INSERT INTO return_alerts (id, rule_id, version, subject, period, data,"
                " raised_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (rule_id, subject, period) DO NOTHING",
                (
                    alert.id,
                    alert.rule_id,
                    alert.version,
                    alert.subject,
                    alert.period,
                    json.dumps(dict(alert.data), separators=(",", ":")),
                    alert.raised_at,
                ),
            ).rowcount
            if inserted == 0:
                return False
            enqueue(conn, event, urls=self._webhook_urls)
            return True

        return await self._db.transaction(work)

    async def alerts(self, *, limit: int, since: float | None = None) -> list[AlertRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM return_alerts WHERE raised_at >= ? ORDER BY raised_at DESC, id LIMIT ?",
            (since if since is not None else float("-inf"), limit),
        )
        return [_alert(row) for row in rows]
