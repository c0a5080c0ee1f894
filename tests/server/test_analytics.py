"""Returns analytics on a generated year (tests/fakes/returns_history.py): every figure held
against what the generator wrote (counted straight from its cases and sales), its built-in
trends found, alerts raised once with their webhooks, CSV and SVG that parse, and the routes'
answers to good and bad requests on a small app that serves them with the real auth."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import statistics
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.http import Edge, setup_http
from server.http import analytics as analytics_routes
from server.http.keys import ANALYTICS_KEY
from server.returns.analytics import (
    RECOVERY_SHARES,
    AlertLoop,
    AnalyticsService,
    Breakdown,
    Dimension,
    breakdown_csv,
)
from server.settings import Settings
from server.storage.analytics import SalesRow, Slice, split_carriers
from server.storage.sqlite.analytics import SqliteAnalyticsStore
from server.storage.sqlite.database import Database
from server.wiring.services import Services
from signaling import Role
from tests.fakes.returns_history import (
    DAMAGE_CARRIER,
    DECISION_MEDIAN_H,
    HIGH_SKU,
    JUMP_DAYS,
    JUMP_SKU,
    GeneratedCase,
    History,
    generate,
    write,
)

HOOK = "https://hooks.example/returns"
ALERTS = [
    {"id": "sku-rate", "kind": "sku_return_rate", "threshold": 0.25, "min_units": 20,
     "window_days": 30},
    {"id": "sku-jump", "kind": "sku_rate_jump", "percent": 50, "window_days": 7,
     "min_units": 20},
    {"id": "carrier-damage", "kind": "carrier_damage_share", "threshold": 0.3,
     "window_days": 30, "min_returns": 10},
]  # fmt: skip


@pytest.fixture(scope="module")
def history() -> History:
    return generate()


@pytest.fixture(scope="module")
def seeded(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding the history with its rollups built, made once and copied per test."""
    path = tmp_path_factory.mktemp("analytics") / "seeded.db"

    async def build() -> None:
        db = await Database.open(path)
        try:
            await db.transaction(lambda conn: write(conn, history))
            await SqliteAnalyticsStore(db).refresh()
        finally:
            await db.aclose()

    asyncio.run(build())
    return path


@dataclass
class Stack:
    db: Database
    store: SqliteAnalyticsStore
    service: AnalyticsService
    clock: list[float]


@pytest.fixture
async def stack(seeded: Path, history: History, tmp_path: Path) -> AsyncIterator[Stack]:
    path = tmp_path / "db" / "inspect.db"
    path.parent.mkdir()
    shutil.copy(seeded, path)
    db = await Database.open(path)
    store = SqliteAnalyticsStore(db, webhook_urls=(HOOK,))
    clock = [history.now]
    yield Stack(db, store, AnalyticsService(store, clock=lambda: clock[0]), clock)
    await db.aclose()


# -- what the generator wrote, counted in Python ------------------------------------------------


def _cases(history: History, since: date, until: date, **filters: str) -> list[GeneratedCase]:
    def keep(case: GeneratedCase) -> bool:
        if not since <= case.day <= until:
            return False
        for name, value in filters.items():
            if name == "carrier":
                if value.casefold() not in {c.casefold() for c in split_carriers(case.carrier)}:
                    return False
            elif (getattr(case, name) or "") != value:
                return False
        return True

    return [case for case in history.cases if keep(case)]


def _units(history: History, since: date, until: date, key: int | None = None, **f: str) -> Any:
    """Units sold in the days (by column ``key`` of the sales rows: 1 sku, 2 category, 3
    country), filtered by sku, category or country."""
    columns = {"sku": 1, "category": 2, "country": 3}
    totals: Counter[str] = Counter()
    for row in history.sales:
        if not since.isoformat() <= row[0] <= until.isoformat():
            continue
        if any(row[columns[name]] != value for name, value in f.items()):
            continue
        totals[row[key] if key is not None else ""] += row[4]
    return totals


def _recovered(cases: Iterable[GeneratedCase]) -> dict[str, str]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for case in cases:
        if case.decided_at is not None and case.grade is not None:
            totals[case.currency] += case.order_value * RECOVERY_SHARES[case.grade]
    return {currency: str(amount.quantize(Decimal("0.01"))) for currency, amount in totals.items()}


def _by(cases: Iterable[GeneratedCase], key: Callable[[GeneratedCase], Iterable[str]]) -> Any:
    grouped: dict[str, list[GeneratedCase]] = defaultdict(list)
    for case in cases:
        for name in key(case):
            grouped[name].append(case)
    return grouped


KEYS: dict[Dimension, Callable[[GeneratedCase], Iterable[str]]] = {
    Dimension.SKU: lambda c: [c.sku],
    Dimension.CATEGORY: lambda c: [c.category],
    Dimension.CLAIMED_REASON: lambda c: [c.claimed_reason],
    Dimension.VERIFIED_REASON: lambda c: [c.verified_reason or ""],
    Dimension.GRADE: lambda c: [c.grade or ""],
    Dimension.COUNTRY: lambda c: [c.country],
    Dimension.CARRIER: lambda c: split_carriers(c.carrier),
    Dimension.MONTH: lambda c: [c.day.isoformat()[:7]],
    Dimension.WEEK: lambda c: [(c.day - timedelta(days=c.day.weekday())).isoformat()],
    Dimension.DAY: lambda c: [c.day.isoformat()],
}


def _assert_matches(breakdown: Breakdown, history: History, filters: dict[str, str]) -> None:
    """Every row of ``breakdown`` against the cases the generator wrote into its slice."""
    where = breakdown.where
    cases = _cases(history, where.since, where.until, **filters)
    expected = _by(cases, KEYS[breakdown.dimension])
    rows = {row.key: row for row in breakdown.rows if row.returns}
    assert set(rows) == set(expected), breakdown.dimension
    for key, members in expected.items():
        row = rows[key]
        compared = [c for c in members if c.verified_reason is not None]
        assert row.returns == len(members), key
        assert row.compared == len(compared), key
        assert row.mismatched == sum(c.verified_reason != c.claimed_reason for c in compared)
        reason = [c.verified_reason or c.claimed_reason for c in members]
        assert row.damaged == reason.count("damaged_in_transit"), key
        assert row.decided == sum(c.decided_at is not None for c in members), key
        assert row.to_json()["value_recovered"] == _recovered(members), key
    assert breakdown.total.returns == len(cases)


# -- figures ------------------------------------------------------------------------------------


async def test_each_dimension_counts_what_the_generator_wrote(
    stack: Stack, history: History
) -> None:
    year = stack.service.slice(since=history.start, until=history.end)
    for dimension in Dimension:
        where = year if dimension != Dimension.DAY else year.days(date(2025, 4, 1), history.end)
        _assert_matches(await stack.service.breakdown(dimension, where), history, {})


@pytest.mark.parametrize(
    "filters",
    [
        {"grade": "C"},
        {"country": "DE"},
        {"category": "shoes", "country": "FR"},
        {"sku": JUMP_SKU},
        {"carrier": "ups"},
        {"claimed_reason": "defective", "grade": "D"},
        {"verified_reason": "unwanted"},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
@pytest.mark.parametrize(
    "dimension",
    [Dimension.SKU, Dimension.CARRIER, Dimension.MONTH, Dimension.WEEK, Dimension.GRADE],
)
async def test_filtered_slices_count_what_the_generator_wrote(
    stack: Stack, history: History, filters: dict[str, str], dimension: Dimension
) -> None:
    # Odd days at both ends: the rollups' months, weeks and days all take part.
    where = stack.service.slice(since=date(2024, 8, 13), until=date(2025, 5, 20), **filters)
    _assert_matches(await stack.service.breakdown(dimension, where), history, filters)


async def test_the_rollups_answer_as_the_rows_do(stack: Stack) -> None:
    rows_only = SqliteAnalyticsStore(stack.db, rollups=False)
    slices = [
        Slice(date(2024, 7, 1), date(2025, 6, 30)),
        Slice(date(2024, 7, 17), date(2025, 1, 3)),
        Slice(date(2024, 12, 30), date(2025, 1, 5), grade="B"),
        Slice(date(2024, 11, 2), date(2025, 2, 27), country="IT", grade="C"),
        Slice(date(2025, 2, 3), date(2025, 3, 30), category="home", carrier="gls"),
        # The SKUs of a carrier or a reason (the SKU pairs); "UPS, Amazon" counts under both.
        Slice(date(2024, 8, 13), date(2025, 5, 20), carrier=DAMAGE_CARRIER),
        Slice(date(2024, 7, 1), date(2025, 6, 30), carrier="amazon"),
        Slice(date(2024, 12, 30), date(2025, 1, 5), claimed_reason="defective"),
        Slice(date(2024, 9, 2), date(2025, 4, 17), verified_reason="damaged_in_transit"),
        Slice(date(2025, 6, 29), date(2025, 6, 30), verified_reason="unwanted"),
    ]
    for where in slices:
        for dimension in Dimension:
            rolled = await stack.store.return_groups(dimension, where)
            summed = await rows_only.return_groups(dimension, where)
            order = sorted(rolled, key=lambda g: (g.key, g.currency))
            assert order == sorted(summed, key=lambda g: (g.key, g.currency)), (dimension, where)
            if dimension in (Dimension.SKU, Dimension.COUNTRY, Dimension.MONTH, Dimension.WEEK):
                assert await stack.store.units(dimension, where) == await rows_only.units(
                    dimension, where
                )


PAIRED = [
    {"carrier": DAMAGE_CARRIER},
    {"carrier": "Amazon"},
    {"claimed_reason": "size_too_small"},
    {"verified_reason": "damaged_in_transit"},
]


async def _sku_groups(store: SqliteAnalyticsStore, where: Slice) -> list[Any]:
    groups = await store.return_groups(Dimension.SKU, where)
    return sorted(groups, key=lambda g: (g.key, g.currency))


async def test_the_skus_of_a_carrier_or_a_reason_are_read_from_the_sku_pairs(
    stack: Stack, history: History
) -> None:
    rows_only = SqliteAnalyticsStore(stack.db, rollups=False)
    kept = await stack.db.fetchone(
        "SELECT COUNT(*) FROM return_dim WHERE grain = 'sku_month' AND dimension = 'carrier'"
    )
    assert kept is not None and kept[0] > 0
    for filters in PAIRED:
        where = stack.service.slice(since=date(2024, 8, 13), until=date(2025, 5, 20), **filters)
        assert await _sku_groups(stack.store, where) == await _sku_groups(rows_only, where)
        _assert_matches(await stack.service.breakdown(Dimension.SKU, where), history, filters)


async def test_the_sku_pairs_follow_a_changed_case(stack: Stack, history: History) -> None:
    rows_only = SqliteAnalyticsStore(stack.db, rollups=False)
    case = next(c for c in history.cases if c.carrier == "DHL" and c.day.month == 3)
    await stack.db.execute(
        "UPDATE cases SET carrier = ?, claimed_reason = 'color', verified_reason = 'wrong_item'"
        " WHERE id = ?",
        (DAMAGE_CARRIER, case.id),
    )
    # Its day, week and month all moved: the one day and the year read the change.
    for where in (
        Slice(case.day, case.day, carrier=DAMAGE_CARRIER),
        Slice(history.start, history.end, carrier="dhl"),
        Slice(history.start, history.end, claimed_reason="color"),
        Slice(history.start, history.end, verified_reason="wrong_item"),
    ):
        assert await _sku_groups(stack.store, where) == await _sku_groups(rows_only, where), where
    mine = Slice(history.start, history.end, verified_reason="wrong_item")
    before = {g.key: g.returns for g in await _sku_groups(rows_only, mine)}
    await stack.db.execute("DELETE FROM cases WHERE id = ?", (case.id,))
    after = {g.key: g.returns for g in await _sku_groups(stack.store, mine)}
    assert after.get(case.sku, 0) == before[case.sku] - 1


async def test_a_database_rolled_up_before_the_sku_pairs_gets_them(
    stack: Stack, history: History
) -> None:
    # As made by the version before: the rollups built, no pairs, no note of them.
    await stack.db.execute("DELETE FROM return_dim WHERE grain LIKE 'sku_%'")
    await stack.db.execute("DELETE FROM analytics_state WHERE name = 'sku_pairs'")
    store = SqliteAnalyticsStore(stack.db)
    rows_only = SqliteAnalyticsStore(stack.db, rollups=False)
    where = Slice(history.start, history.end, carrier=DAMAGE_CARRIER)
    assert await _sku_groups(store, where) == await _sku_groups(rows_only, where)
    noted = await stack.db.fetchone("SELECT value FROM analytics_state WHERE name = 'sku_pairs'")
    assert noted is not None and noted[0] == "1"
    # Once: the next store finds the note and nothing to sum again.
    assert await SqliteAnalyticsStore(stack.db).refresh() == 0


async def test_rates_divide_by_the_units_of_the_same_slice(stack: Stack, history: History) -> None:
    since, until = date(2024, 9, 1), date(2025, 2, 28)
    breakdown = await stack.service.breakdown(
        Dimension.SKU, stack.service.slice(since=since, until=until, country="GB")
    )
    sold = _units(history, since, until, 1, country="GB")
    returned = Counter(c.sku for c in _cases(history, since, until, country="GB"))
    for row in breakdown.rows:
        assert row.units == sold[row.key]
        assert row.rate == pytest.approx(returned[row.key] / sold[row.key])
    # A reason's rate is its share of the return rate: the shares add up to it.
    reasons = await stack.service.breakdown(
        Dimension.CLAIMED_REASON, stack.service.slice(since=since, until=until)
    )
    total = _units(history, since, until)[""]
    assert all(row.units == total for row in reasons.rows)
    assert sum(row.rate or 0 for row in reasons.rows) == pytest.approx(reasons.total.rate)
    assert reasons.total.rate == pytest.approx(len(_cases(history, since, until)) / total)


async def test_the_built_in_trends_show(stack: Stack, history: History) -> None:
    service = stack.service
    year = service.slice(since=history.start, until=history.end)
    skus = {row.key: row for row in (await service.breakdown(Dimension.SKU, year)).rows}
    assert skus[HIGH_SKU].rate == pytest.approx(0.35, abs=0.03)
    assert max(skus.values(), key=lambda row: row.rate or 0).key == HIGH_SKU
    # The jump: the last week against the month before it.
    week = service.slice(since=history.end - timedelta(days=6), until=history.end)
    before = service.slice(
        since=history.end - timedelta(days=36), until=history.end - timedelta(days=JUMP_DAYS)
    )
    recent = {r.key: r for r in (await service.breakdown(Dimension.SKU, week)).rows}[JUMP_SKU]
    earlier = {r.key: r for r in (await service.breakdown(Dimension.SKU, before)).rows}[JUMP_SKU]
    assert (recent.rate or 0) > 2.5 * (earlier.rate or 1)
    carriers = {row.key: row for row in (await service.breakdown(Dimension.CARRIER, year)).rows}
    assert (carriers[DAMAGE_CARRIER].damaged_share or 0) > 0.4
    assert all(
        (row.damaged_share or 0) < 0.1 for key, row in carriers.items() if key != DAMAGE_CARRIER
    )
    # "UPS, Amazon" counts under both, and once in the total.
    assert {"UPS", "Amazon", "DHL"} <= set(carriers)
    carrier_total = (await service.breakdown(Dimension.CARRIER, year)).total
    assert carrier_total.returns == len(history.cases)
    # Seasons: more sold in November and December, more returned in January.
    months = {row.key: row for row in (await service.breakdown(Dimension.MONTH, year)).rows}
    assert (months["2024-12"].units or 0) > 1.5 * (months["2024-10"].units or 0)
    assert (months["2025-01"].rate or 0) > (months["2024-10"].rate or 0)
    # Defects are claimed more often than they are found.
    reasons = {r.key: r for r in (await service.breakdown(Dimension.CLAIMED_REASON, year)).rows}
    assert reasons["defective"].mismatched_share == pytest.approx(0.4, abs=0.06)
    assert reasons["size_too_small"].mismatched_share == pytest.approx(0.1, abs=0.04)


async def test_the_median_time_to_decision_is_within_a_few_per_cent(
    stack: Stack, history: History
) -> None:
    year = stack.service.slice(since=history.start, until=history.end)
    summary = await stack.service.summary(year)
    hours = [(c.decided_at - c.created_at) / 3600 for c in history.cases if c.decided_at]
    assert summary.total.median_hours == pytest.approx(statistics.median(hours), rel=0.04)
    assert summary.total.median_hours == pytest.approx(DECISION_MEDIAN_H, rel=0.1)
    by_country = await stack.service.breakdown(Dimension.COUNTRY, year)
    for row in by_country.rows:
        exact = statistics.median(
            (c.decided_at - c.created_at) / 3600
            for c in history.cases
            if c.decided_at and c.country == row.key
        )
        assert row.median_hours == pytest.approx(exact, rel=0.06), row.key


async def test_the_value_recovered_by_resale_channel(stack: Stack, history: History) -> None:
    summary = await stack.service.summary(
        stack.service.slice(since=history.start, until=history.end)
    )
    assert [c.grade for c in summary.channels] == ["A", "B", "C", "D"]
    for channel in summary.channels:
        decided = [c for c in history.cases if c.decided_at and c.grade == channel.grade]
        assert channel.cases == len(decided)
        assert channel.to_json()["value_recovered"] == _recovered(decided)
        assert channel.to_json()["order_value"] == {
            currency: str(
                sum(
                    (c.order_value for c in decided if c.currency == currency), Decimal(0)
                ).quantize(Decimal("0.01"))
            )
            for currency in {c.currency for c in decided}
        }
    parts = next(c for c in summary.channels if c.grade == "D")
    assert parts.value_recovered and not any(parts.value_recovered.values())
    assert summary.total.to_json()["value_recovered"] == _recovered(history.cases)


async def test_the_most_returned_products_rank_by_rate_times_returns(
    stack: Stack, history: History
) -> None:
    where = stack.service.slice(since=history.start, until=history.end)
    ranked = await stack.service.top_products(where, limit=5)
    assert [item.rank for item in ranked] == [1, 2, 3, 4, 5]
    assert ranked[0].figures.key == HIGH_SKU
    scores = [item.figures.score for item in ranked]
    assert scores == sorted(scores, reverse=True)
    sold = _units(history, history.start, history.end, 1)
    returned = Counter(c.sku for c in history.cases)
    expected = sorted(sold, key=lambda sku: -(returned[sku] / sold[sku]) * returned[sku])[:5]
    assert [item.figures.key for item in ranked] == expected


async def test_a_changed_case_or_sale_shows_in_the_next_answer(
    stack: Stack, history: History
) -> None:
    case = next(c for c in history.cases if c.grade == "A" and c.day.month == 3)
    march = stack.service.slice(since=date(2025, 3, 1), until=date(2025, 3, 31))
    before = {
        r.key: r.returns for r in (await stack.service.breakdown(Dimension.GRADE, march)).rows
    }
    await stack.db.execute("UPDATE cases SET final_grade = 'D' WHERE id = ?", (case.id,))
    after = {r.key: r.returns for r in (await stack.service.breakdown(Dimension.GRADE, march)).rows}
    assert after["A"] == before["A"] - 1 and after["D"] == before["D"] + 1
    # The month and the year read the change through the month's and week's rows too.
    year = stack.service.slice(since=history.start, until=history.end)
    grades = {r.key: r.returns for r in (await stack.service.breakdown(Dimension.GRADE, year)).rows}
    assert grades["D"] == sum(c.grade == "D" for c in history.cases) + 1
    await stack.db.execute("DELETE FROM cases WHERE id = ?", (case.id,))
    total = (await stack.service.summary(year)).total
    assert total.returns == len(history.cases) - 1
    day = case.day
    one_day = Slice(day, day)
    before_day = (await stack.store.units(Dimension.SKU, one_day))[case.sku]
    year_slice = Slice(history.start, history.end)
    before_month = (await stack.store.units(Dimension.MONTH, year_slice))[day.isoformat()[:7]]
    await stack.service.put_sales([SalesRow(day=day, sku=case.sku, units=1000, country="ZZ")])
    assert (await stack.store.units(Dimension.SKU, one_day))[case.sku] == before_day + 1000
    after_month = (await stack.store.units(Dimension.MONTH, year_slice))[day.isoformat()[:7]]
    assert after_month == before_month + 1000
    # One upload with several rows of that day, one of them twice (the later wins): the day
    # is marked for a rebuild once, whatever the triggers meet inside the upsert.
    await stack.service.put_sales(
        [
            SalesRow(day=day, sku=case.sku, units=10, country="ZZ"),
            SalesRow(day=day, sku="SKU-OTHER", units=5, country="ZZ"),
            SalesRow(day=day, sku=case.sku, units=20, country="ZZ"),
        ]
    )
    assert (await stack.store.units(Dimension.SKU, one_day))[case.sku] == before_day + 20


# -- alerts -------------------------------------------------------------------------------------


def _window(history: History, days: int, end_offset: int = 0) -> tuple[date, date]:
    until = history.end - timedelta(days=end_offset)
    return until - timedelta(days=days - 1), until


async def test_alerts_are_raised_once_with_their_webhooks(stack: Stack, history: History) -> None:
    raised = await stack.service.evaluate_alerts(ALERTS, version=3)
    by_rule: dict[str, set[str]] = defaultdict(set)
    for alert in raised:
        by_rule[alert.rule_id].add(alert.subject)
        assert alert.version == 3
        assert (alert.since, alert.until) == _window(
            history, 7 if alert.rule_id == "sku-jump" else 30
        )
    # What the rules should find, counted from the generated cases and sales.
    since, until = _window(history, 30)
    sold = _units(history, since, until, 1)
    returned = Counter(c.sku for c in _cases(history, since, until))
    expected_rate = {
        sku for sku, units in sold.items() if units >= 20 and returned[sku] / units > 0.25
    }
    assert by_rule["sku-rate"] == expected_rate and HIGH_SKU in expected_rate
    w_since, w_until = _window(history, 7)
    b_since, b_until = w_since - timedelta(days=30), w_since - timedelta(days=1)
    recent_units, base_units = (
        _units(history, w_since, w_until, 1),
        _units(history, b_since, b_until, 1),
    )
    recent = Counter(c.sku for c in _cases(history, w_since, w_until))
    base = Counter(c.sku for c in _cases(history, b_since, b_until))
    expected_jump = {
        sku
        for sku in recent_units
        if recent_units[sku] >= 20 and base_units[sku] >= 20 and base[sku]
        and (recent[sku] / recent_units[sku]) / (base[sku] / base_units[sku]) >= 1.5
    }  # fmt: skip
    assert by_rule["sku-jump"] == expected_jump and JUMP_SKU in expected_jump
    window = _cases(history, since, until)
    by_carrier = _by(window, KEYS[Dimension.CARRIER])
    expected_damage = {
        name
        for name, cases in by_carrier.items()
        if len(cases) >= 10
        and sum((c.verified_reason or c.claimed_reason) == "damaged_in_transit" for c in cases)
        / len(cases) > 0.3
    }  # fmt: skip
    assert by_rule["carrier-damage"] == expected_damage == {DAMAGE_CARRIER}

    outbox = await stack.db.fetchall(
        "SELECT event, case_id, url, body FROM webhook_outbox ORDER BY id"
    )
    assert len(outbox) == len(raised)
    for row, alert in zip(outbox, raised, strict=True):
        assert (row["event"], row["case_id"], row["url"]) == (
            "returns.alert", f"alert:{alert.rule_id}", HOOK,
        )  # fmt: skip
        body = json.loads(row["body"])
        assert body["event"] == "returns.alert"
        assert body["alert"]["subject"] == alert.subject
        assert body["alert"]["period"] == {"since": str(alert.since), "until": str(alert.until)}
    damage = next(a for a in raised if a.rule_id == "carrier-damage")
    assert damage.figures["damaged_share"] > 0.3 and DAMAGE_CARRIER in damage.message

    # Again: nothing new. The next day (a window that overlaps) raises none of them again.
    assert await stack.service.evaluate_alerts(ALERTS, version=3) == []
    assert {a.id for a in await stack.service.alerts()} == {a.id for a in raised}
    stack.clock[0] += 86400
    later = await stack.service.evaluate_alerts(ALERTS, version=4)
    assert not {(a.rule_id, a.subject) for a in later} & {(a.rule_id, a.subject) for a in raised}
    outbox = await stack.db.fetchall("SELECT id FROM webhook_outbox")
    assert len(outbox) == len(raised) + len(later)


async def test_a_rule_table_runs_on_a_schedule(stack: Stack) -> None:
    class Table:
        version = 9
        alerts = ALERTS[2:]

    evaluated = asyncio.Event()

    class Rules:
        asked = 0

        async def table(self) -> Table:
            # Asked again: the round before it is done.
            self.asked += 1
            if self.asked == 2:
                evaluated.set()
            return Table()

    loop = AlertLoop(stack.service, Rules(), interval_s=0.01)
    loop.start()
    try:
        async with asyncio.timeout(10):
            await evaluated.wait()
    finally:
        await loop.aclose()
        await loop.aclose()
    (alert,) = await stack.service.alerts()
    assert (alert.rule_id, alert.subject, alert.version) == ("carrier-damage", DAMAGE_CARRIER, 9)


# -- CSV and SVG -----------------------------------------------------------------------------


async def test_the_csv_has_a_row_per_key_and_the_totals(stack: Stack, history: History) -> None:
    await stack.db.execute("UPDATE cases SET sku = '=HYPERLINK(1)' WHERE sku = ?", (HIGH_SKU,))
    where = stack.service.slice(since=history.start, until=history.end)
    breakdown = await stack.service.breakdown(Dimension.SKU, where)
    rows = list(csv.reader(io.StringIO(breakdown_csv(breakdown))))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[:4] == ["sku", "label", "returns", "units"]
    assert {"value_recovered_EUR", "value_recovered_GBP", "value_recovered_USD"} <= set(header)
    assert len(body) == len(breakdown.rows)
    assert total[0] == "(all)" and int(total[2]) == len(history.cases)
    keys = [row[0] for row in body]
    # A cell a spreadsheet would run as a formula is written as text.
    assert "'=HYPERLINK(1)" in keys and "=HYPERLINK(1)" not in keys


# -- the routes ---------------------------------------------------------------------------------


@dataclass
class Routes:
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    history: History
    db: Database

    async def get(self, path: str, role: str = "reviewer", **params: Any) -> Any:
        return await self.client.get(
            path, params=params, headers={"Authorization": f"Bearer {self.tokens[role]}"}
        )


@pytest.fixture
async def routes(
    services: Services, settings: Settings, history: History, aiohttp_client: Any
) -> Routes:
    await services.db.transaction(lambda conn: write(conn, history))
    app = web.Application()
    setup_http(
        app,
        Edge(
            settings=settings,
            db=services.db,
            cases=services.cases,
            accounts=services.accounts,
            auth=services.auth,
            webhooks=services.webhooks,
            metrics=services.metrics,
            returns=services.returns,
        ),
        routes=analytics_routes.routes(),
    )
    app[ANALYTICS_KEY] = AnalyticsService(
        SqliteAnalyticsStore(services.db), clock=lambda: history.now
    )
    tokens = {
        role.value: (await services.accounts.create_api_token(role.value, role=role)).token
        for role in (Role.ADMIN, Role.REVIEWER)
    }
    return Routes(await aiohttp_client(app), tokens, history, services.db)


async def test_the_routes_answer_with_figures_csv_and_svg(routes: Routes) -> None:
    history = routes.history
    span = {"since": str(history.start), "until": str(history.end)}
    response = await routes.get("/api/analytics/returns", dimension="carrier", **span)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["dimension"] == "carrier" and body["total"]["returns"] == len(history.cases)
    assert DAMAGE_CARRIER in {row["key"] for row in body["rows"]}
    response = await routes.get("/api/analytics/summary", country="us", **span)
    summary = await response.json()
    assert summary["filters"] == {"country": "US"}
    assert set(summary["total"]["value_recovered"]) == {"USD"}
    response = await routes.get("/api/analytics/top-products", limit="3", **span)
    assert [p["key"] for p in (await response.json())["products"]][0] == HIGH_SKU

    response = await routes.get("/api/analytics/returns.csv", dimension="grade", **span)
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="returns-by-grade-{history.start}-{history.end}.csv"'
    )
    assert (await response.text()).startswith("grade,label,returns,units,rate")

    for params in (
        {"chart": "bar", "dimension": "sku", "metric": "rate"},
        {"chart": "bar", "dimension": "carrier", "metric": "damaged_share"},
        {"chart": "line", "dimension": "week", "metric": "rate"},
        {"chart": "line", "metric": "median_hours"},
        {"chart": "top"},
        {"chart": "channels"},
        {"chart": "bar", "dimension": "grade", "metric": "value_recovered"},
        {"chart": "bar", "sku": "no such sku"},
    ):
        response = await routes.get("/api/analytics/chart.svg", **params, **span)
        assert response.status == 200, (params, await response.text())
        assert response.content_type == "image/svg+xml"
        root = ET.fromstring(await response.text())
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.get("role") == "img"
        assert root.findtext("{http://www.w3.org/2000/svg}title")


async def test_chart_text_is_escaped(routes: Routes) -> None:
    history = routes.history
    evil = '<script>alert("x")</script>&amp'
    await routes.db.execute("UPDATE cases SET sku = ? WHERE sku = ?", (evil, HIGH_SKU))
    await routes.db.execute("UPDATE sales SET sku = ? WHERE sku = ?", (evil, HIGH_SKU))
    response = await routes.get(
        "/api/analytics/chart.svg", chart="top", since=str(history.start), until=str(history.end)
    )
    text = await response.text()
    assert "<script" not in text
    root = ET.fromstring(text)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(title and title.startswith(evil) for title in titles)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"dimension": "colour"}, "dimension", "Input should be"),
        ({"since": "2025-02-30"}, "since", "valid date"),
        ({"since": "2025-03-01", "until": "2025-02-01"}, "since", "is after until"),
        ({"since": "2020-01-01", "until": "2025-01-01"}, "since", "at most"),
        ({"claimed_reason": "broken"}, "claimed_reason", "Input should be"),
        ({"grade": "E"}, "grade", "Input should be"),
        ({"country": "Germany"}, "country", "pattern"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"until": "9999-12-31"}, "until", "less than or equal"),
        ({"sku": "SKU\x01"}, "sku", "control characters"),
        ({"dimension": "day", "since": "2024-07-01", "until": "2025-06-30"}, "dimension", "week"),
    ],
)
async def test_bad_filters_are_refused_naming_the_field(
    routes: Routes, params: dict[str, str], field: str, words: str
) -> None:
    response = await routes.get("/api/analytics/returns", **params)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert field in error["fields"] and words in error["message"], error


async def test_the_routes_are_for_staff_and_sales_for_admins(routes: Routes) -> None:
    anon = await routes.client.get("/api/analytics/summary")
    assert anon.status == 401
    rows = {"rows": [{"day": "2025-07-01", "sku": "NEW-1", "units": 40, "country": "de"}]}
    denied = await routes.client.post(
        "/api/analytics/sales",
        json=rows,
        headers={"Authorization": f"Bearer {routes.tokens['reviewer']}"},
    )
    assert denied.status == 403
    admin = {"Authorization": f"Bearer {routes.tokens['admin']}"}
    done = await routes.client.post("/api/analytics/sales", json=rows, headers=admin)
    assert done.status == 200, await done.text()
    assert await done.json() == {"rows": 1}
    stored = await routes.db.fetchall("SELECT day, country, units FROM sales WHERE sku = 'NEW-1'")
    assert [tuple(row) for row in stored] == [("2025-07-01", "DE", 40)]

    sent = "day,sku,category,country,units\n2025-07-01,NEW-2,home,FR,3\n2025-07-02,NEW-2,,FR,x\n"
    bad = await routes.client.post(
        "/api/analytics/sales", data=sent, headers={**admin, "Content-Type": "text/csv"}
    )
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert error["message"].startswith("line 3, units: ") and error["fields"] == ["line 3.units"]
    good = await routes.client.post(
        "/api/analytics/sales", data=sent.replace(",x", ",7"),
        headers={**admin, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert await good.json() == {"rows": 2}
    wrong = await routes.client.post(
        "/api/analytics/sales", data="a;b", headers={**admin, "Content-Type": "text/plain"}
    )
    assert wrong.status == 415
    missing = await routes.client.post(
        "/api/analytics/sales", json={"rows": [{"day": "2025-07-01", "units": -1}]}, headers=admin
    )
    error = (await missing.json())["error"]
    assert missing.status == 400 and {"rows.0.sku", "rows.0.units"} <= set(error["fields"])
    odd = await routes.client.post(
        "/api/analytics/sales",
        data='{"rows": [{"day": "2025-07-01", "sku": "\\ud800", "units": 1}]}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert odd.status == 400 and (await odd.json())["error"]["fields"] == ["rows.0.sku"]
