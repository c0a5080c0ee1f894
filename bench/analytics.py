"""Returns analytics benchmark: a year of a million return cases (tests/fakes/returns_history.py,
with its sales) in a temporary SQLite database, then every chart's query timed on N cores.

    python bench/analytics.py [--cases 1000000] [--threads 2] [--runs 7] [--json]

Each figure is the whole answer the API gives (the store's sums and the service's figures;
the SVG drawing for the charts). Baseline, measured in the same run on the same database: the
same answers summed from the rows (``SqliteAnalyticsStore(rollups=False)``: the covering index
``cases_analytics``, no rollups). Alert evaluation (three rules) and the rollups' upkeep (the
first build, and the next query after one case changed) are timed too. Prints figures and
whether each chart answers in under 300 ms; it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if not __package__:
    # Run by path (python bench/analytics.py): import from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._stats import percentile  # noqa: E402
from server.http.analytics import ChartQuery, chart_svg  # noqa: E402
from server.returns.analytics import AnalyticsService, Dimension  # noqa: E402
from server.storage.analytics import Slice  # noqa: E402
from server.storage.sqlite.analytics import SqliteAnalyticsStore  # noqa: E402
from server.storage.sqlite.database import Database  # noqa: E402
from tests.fakes.returns_history import DAMAGE_CARRIER, JUMP_SKU, generate, write  # noqa: E402

BUDGET_MS = 300.0
#: The generator's units a SKU sells a day for about a million cases a year with 300 SKUs.
_UNITS_PER_MILLION = 87.3
ALERTS = [
    {"id": "sku-rate", "kind": "sku_return_rate", "threshold": 0.25},
    {"id": "sku-jump", "kind": "sku_rate_jump", "percent": 50},
    {"id": "carrier-damage", "kind": "carrier_damage_share", "threshold": 0.3},
]

Query = Callable[[AnalyticsService, Slice], Awaitable[Any]]


def _chart(chart: str, metric: str = "returns", dimension: str | None = None) -> Query:
    query = ChartQuery.model_validate(
        {"chart": chart, "metric": metric}
        | ({"dimension": dimension} if dimension is not None else {})
    )
    return lambda service, where: chart_svg(service, query, where)


def _breakdown(dimension: Dimension) -> Query:
    return lambda service, where: service.breakdown(dimension, where)


#: (name, what it asks, the slice's filters)
CHARTS: list[tuple[str, Query, dict[str, str]]] = [
    ("summary + value by channel", lambda s, w: s.summary(w), {}),
    ("chart: channels (SVG)", _chart("channels"), {}),
    ("top products (SVG)", _chart("top"), {}),
    ("returns by sku (SVG)", _chart("bar", "returns", "sku"), {}),
    ("rate by month (SVG line)", _chart("line", "rate", "month"), {}),
    ("rate by week (SVG line)", _chart("line", "rate", "week"), {}),
    ("mismatch by claimed reason", _chart("bar", "mismatched_share", "claimed_reason"), {}),
    ("damage share by carrier", _chart("bar", "damaged_share", "carrier"), {}),
    ("returns by country", _breakdown(Dimension.COUNTRY), {}),
    ("returns by category", _breakdown(Dimension.CATEGORY), {}),
    ("returns by verified reason", _breakdown(Dimension.VERIFIED_REASON), {}),
    ("median hours by grade", _chart("bar", "median_hours", "grade"), {}),
    ("sku | category=shoes", _breakdown(Dimension.SKU), {"category": "shoes"}),
    ("top products | country=DE", _chart("top"), {"country": "DE"}),
    ("month | grade=C", _breakdown(Dimension.MONTH), {"grade": "C"}),
    ("rate by month | country=DE", _chart("line", "rate", "month"), {"country": "DE"}),
    ("week | carrier=DHL", _breakdown(Dimension.WEEK), {"carrier": "DHL"}),
    ("carrier | claimed=defective", _breakdown(Dimension.CARRIER),
     {"claimed_reason": "defective"}),
    ("month | sku", _breakdown(Dimension.MONTH), {"sku": JUMP_SKU}),
    ("sku | grade=A", _breakdown(Dimension.SKU), {"grade": "A"}),
    ("sku | carrier", _breakdown(Dimension.SKU), {"carrier": DAMAGE_CARRIER}),
    ("sku | claimed=defective", _breakdown(Dimension.SKU), {"claimed_reason": "defective"}),
    ("sku | verified=damaged_in_transit", _breakdown(Dimension.SKU),
     {"verified_reason": "damaged_in_transit"}),
    ("sku | category+carrier (the rows)", _breakdown(Dimension.SKU),
     {"category": "shoes", "carrier": DAMAGE_CARRIER}),
]  # fmt: skip


async def _seed(path: Path, cases: int) -> dict[str, Any]:
    """The history written the fast way: the schema made, its indexes and triggers dropped,
    every row inserted in one transaction, then the database opened again (which makes the
    indexes and triggers again and marks every day for the rollups)."""
    await (await Database.open(path)).aclose()
    started = time.perf_counter()
    history = generate(skus=300, units_per_day=_UNITS_PER_MILLION * cases / 1e6, keep=False)
    generated = time.perf_counter() - started
    conn = sqlite3.connect(path, isolation_level=None)
    for name, kind in conn.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('index', 'trigger')"
        " AND tbl_name IN ('cases', 'sales') AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f"DROP {kind} {name}")
    started = time.perf_counter()
    conn.execute("BEGIN")
    write(conn, history)
    conn.execute("DELETE FROM analytics_state")  # every day to be rolled up again
    conn.execute("COMMIT")
    conn.close()
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    await (await Database.open(path)).aclose()
    return {
        "cases": history.case_count,
        "sales_rows": len(history.sales),
        "generate_s": round(generated, 1),
        "insert_s": round(inserted, 1),
        "index_s": round(time.perf_counter() - started, 1),
        "start": history.start,
        "end": history.end,
        "now": history.now,
    }


async def _time(call: Callable[[], Awaitable[Any]], runs: int) -> dict[str, float]:
    await call()  # warm: the pages it reads in the cache, as a service that answers often
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50": round(percentile(samples, 50), 1), "p95": round(percentile(samples, 95), 1)}


async def run(cases: int, runs: int, baseline_runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as folder:
        path = Path(folder) / "inspect.db"
        seed = await _seed(path, cases)
        db = await Database.open(path)
        try:
            store = SqliteAnalyticsStore(db)
            clock = seed["now"]
            service = AnalyticsService(store, clock=lambda: clock)
            started = time.perf_counter()
            days = await store.refresh()
            built = time.perf_counter() - started
            rows_only = AnalyticsService(
                SqliteAnalyticsStore(db, rollups=False), clock=lambda: clock
            )
            default = service.slice()  # the page's: this month and the eleven before
            charts = []
            for name, query, filters in CHARTS:
                where = service.slice(since=default.since, until=default.until, **filters)
                fast = await _time(functools.partial(query, service, where), runs)
                slow = await _time(functools.partial(query, rows_only, where), baseline_runs)
                charts.append({"chart": name, "rollups": fast, "rows": slow,
                               "under_budget": fast["p95"] < BUDGET_MS})  # fmt: skip
            alerts = await _time(lambda: service.evaluate_alerts(ALERTS, version=1), runs)
            raised = len(await service.alerts(limit=500))
            # The next answer after one case changed: the day summed again first.
            changed = []
            for index in range(runs):
                await db.execute(
                    "UPDATE cases SET final_grade = CASE final_grade WHEN 'A' THEN 'B' ELSE 'A'"
                    " END WHERE id = (SELECT id FROM cases WHERE kind = 'return'"
                    " AND decided_at IS NOT NULL LIMIT 1 OFFSET ?)",
                    (1000 * index,),
                )
                started = time.perf_counter()
                await service.breakdown(Dimension.GRADE, default)
                changed.append((time.perf_counter() - started) * 1000)
            sizes = {}
            for table, where_rows in (
                ("return_dim", "grain IN ('day', 'week', 'month')"),
                ("return_cube", "1"),
                ("return_sku", "1"),
                ("sku pairs", "grain IN ('sku_day', 'sku_week', 'sku_month')"),
                ("sales_rollup", "1"),
            ):
                name = "return_dim" if table == "sku pairs" else table
                counted = await db.fetchone(f"SELECT COUNT(*) FROM {name} WHERE {where_rows}")
                sizes[table] = counted[0] if counted is not None else 0
        finally:
            await db.aclose()
        return {
            "cases": seed["cases"],
            "sales_rows": seed["sales_rows"],
            "database_mb": round(path.stat().st_size / 2**20),
            "seed": {k: seed[k] for k in ("generate_s", "insert_s", "index_s")},
            "rollup_build": {"days": days, "seconds": round(built, 1), "rows": sizes},
            "slice": f"{default.since}..{default.until}",
            "charts": charts,
            "alerts": {**alerts, "rules": len(ALERTS), "raised": raised},
            "after_a_change_ms": {
                "p50": round(percentile(changed, 50), 1),
                "p95": round(percentile(changed, 95), 1),
            },
        }


def _print(result: dict[str, Any], threads: int) -> None:
    print(
        f"{result['cases']:,} return cases and {result['sales_rows']:,} sales rows over a year "
        f"({result['database_mb']} MB), on {threads} cores"
    )
    seed, build = result["seed"], result["rollup_build"]
    print(
        f"seeded in {seed['generate_s']} s (generate) + {seed['insert_s']} s (insert) + "
        f"{seed['index_s']} s (indexes); rollups built in {build['seconds']} s for "
        f"{build['days']} days: "
        + ", ".join(f"{table} {rows:,} rows" for table, rows in build["rows"].items())
    )
    print(f"slice {result['slice']} (the page's default: this month and the eleven before)\n")
    head = (
        f"{'chart':36} {'rollups p50':>11} {'p95':>7} {'rows p50':>10} {'p95':>7} {'x':>6}"
        "  < 300 ms"
    )
    print(head)
    print("-" * len(head))
    for chart in result["charts"]:
        fast, slow = chart["rollups"], chart["rows"]
        times = slow["p50"] / fast["p50"] if fast["p50"] else float("inf")
        print(
            f"{chart['chart']:36} {fast['p50']:>11.1f} {fast['p95']:>7.1f} {slow['p50']:>10.1f}"
            f" {slow['p95']:>7.1f} {times:>6.1f}  {'yes' if chart['under_budget'] else 'NO'}"
        )
    alerts, after = result["alerts"], result["after_a_change_ms"]
    print(
        f"\nalert evaluation ({alerts['rules']} rules, {alerts['raised']} raised): "
        f"p50 {alerts['p50']} ms, p95 {alerts['p95']} ms"
    )
    print(f"first answer after a case changed (its day summed again): p50 {after['p50']} ms, "
          f"p95 {after['p95']} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="about this many cases")
    parser.add_argument("--threads", type=int, default=2, help="cores the process may use")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each query")
    parser.add_argument("--baseline-runs", type=int, default=3, help="runs of the baseline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(available[: max(1, args.threads)]))
    threads = len(os.sched_getaffinity(0))
    result = asyncio.run(run(args.cases, args.runs, args.baseline_runs))
    result["threads"] = threads
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print(result, threads)


if __name__ == "__main__":
    main()
