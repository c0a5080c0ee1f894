"""A year of return cases and sales with known trends, written straight into a database, for the
analytics tests (a few thousand cases) and ``bench/analytics.py`` (a million).

What is built in (and what the tests check the figures against):

- every SKU sells every day in six countries (Poisson, more in November and December) and
  returns at its own base rate (binomially, per day and country), 30 % more in January;
- :data:`HIGH_SKU` returns at 35 % all year (over a 25 % threshold);
- :data:`JUMP_SKU` returns at 8 % until the last :data:`JUMP_DAYS` days, then at 32 %;
- :data:`DAMAGE_CARRIER` damages: about half its returns are ``damaged_in_transit``, against
  4 % for the other carriers;
- claims of ``defective`` are verified as something else 40 % of the time, other claims 10 %;
- decisions come a log-normal time after the request (median :data:`DECISION_MEDIAN_H`
  hours); the cases of the last two days are half of them undecided.

:attr:`History.cases` keeps every case as written (unless ``keep=False``), so a test can
count anything it likes straight from them.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import numpy as np

__all__ = [
    "CATEGORIES",
    "COUNTRIES",
    "DAMAGE_CARRIER",
    "DECISION_MEDIAN_H",
    "END",
    "HIGH_SKU",
    "JUMP_DAYS",
    "JUMP_SKU",
    "GeneratedCase",
    "History",
    "generate",
    "write",
]

#: The last day of the history (UTC); the clock of the tests reads the next morning.
END: Final = date(2025, 6, 30)
DAYS: Final = 365
HIGH_SKU: Final = "SKU-HIGH"
JUMP_SKU: Final = "SKU-JUMP"
JUMP_DAYS: Final = 14
DAMAGE_CARRIER: Final = "FastFreight"
DECISION_MEDIAN_H: Final = 20.0

#: (country, share of sales, currency, carriers with their weights)
COUNTRIES: Final[tuple[tuple[str, float, str, tuple[tuple[str, float], ...]], ...]] = (
    ("DE", 0.35, "EUR", (("DHL", 0.6), ("DPD", 0.2), (DAMAGE_CARRIER, 0.2))),
    ("FR", 0.20, "EUR", (("DPD", 0.5), ("UPS", 0.3), (DAMAGE_CARRIER, 0.2))),
    ("GB", 0.15, "GBP", (("Royal Mail", 0.6), ("DPD", 0.4))),
    ("US", 0.15, "USD", (("UPS", 0.6), ("UPS, Amazon", 0.4))),
    ("IT", 0.10, "EUR", (("GLS", 0.7), (DAMAGE_CARRIER, 0.3))),
    ("PL", 0.05, "EUR", (("DHL", 0.5), ("GLS", 0.5))),
)
#: (category, price range, reasons a customer claims with their weights)
CATEGORIES: Final[tuple[tuple[str, tuple[int, int], tuple[tuple[str, float], ...]], ...]] = (
    ("apparel", (15, 120), (("size_too_small", 0.3), ("size_too_large", 0.25), ("style", 0.15),
                            ("color", 0.1), ("unwanted", 0.1), ("defective", 0.1))),
    ("shoes", (40, 180), (("size_too_small", 0.35), ("size_too_large", 0.3), ("style", 0.1),
                          ("defective", 0.15), ("unwanted", 0.1))),
    ("electronics", (30, 600), (("defective", 0.45), ("not_as_described", 0.2),
                                ("missing_parts", 0.15), ("unwanted", 0.15), ("wrong_item", 0.05))),
    ("home", (10, 250), (("defective", 0.25), ("not_as_described", 0.25), ("unwanted", 0.3),
                         ("wrong_item", 0.1), ("other", 0.1))),
)  # fmt: skip
_GRADES_BY_REASON: Final = {
    "damaged_in_transit": (("C", 0.5), ("D", 0.5)),
    "defective": (("C", 0.3), ("D", 0.7)),
    "missing_parts": (("B", 0.4), ("C", 0.6)),
}
_GRADES_OTHERWISE: Final = (("A", 0.6), ("B", 0.3), ("C", 0.1))
_OTHER_REASON: Final = ("unwanted", "style", "not_as_described", "size_too_small", "defective")

_CASE_COLUMNS: Final = (
    "id, kind, state, customer_name, sku, reason, category, claimed_reason, verified_reason,"
    " final_grade, country, carrier, order_value, order_currency, decision, refund_state,"
    " created_at, decided_at, closed_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class GeneratedCase:
    id: str
    sku: str
    category: str
    country: str
    carrier: str
    claimed_reason: str
    verified_reason: str | None
    grade: str | None
    order_value: Decimal
    currency: str
    created_at: float
    decided_at: float | None

    @property
    def day(self) -> date:
        return datetime.fromtimestamp(self.created_at, UTC).date()


@dataclass(slots=True)
class History:
    """What :func:`generate` made: sales rows ``(day, sku, category, country, units)`` and
    case rows ready for :func:`write` (and :attr:`cases` when kept)."""

    start: date
    end: date
    #: Unix seconds of the morning after :attr:`end`: the clock the tests give the service.
    now: float
    skus: dict[str, tuple[str, Decimal, float]]  # sku -> (category, price, base rate)
    sales: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    cases: list[GeneratedCase] = field(default_factory=list)

    @property
    def case_count(self) -> int:
        return len(self.rows)


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    point = rng.random() * sum(weight for _, weight in weighted)
    for value, weight in weighted:
        point -= weight
        if point < 0:
            return value
    return weighted[-1][0]


def _rate(sku: str, base: float, day: date, end: date) -> float:
    if sku == HIGH_SKU:
        return 0.35
    if sku == JUMP_SKU:
        return 0.32 if (end - day).days < JUMP_DAYS else 0.08
    return base * (1.3 if day.month == 1 else 1.0)


def _season(day: date) -> float:
    return 1.8 if day.month in (11, 12) else 1.0


def generate(
    *, seed: int = 7, skus: int = 30, units_per_day: float = 5.0, keep: bool = True
) -> History:
    """A year (``DAYS`` days ending :data:`END`) of sales and returns of ``skus`` SKUs
    (two of them :data:`HIGH_SKU` and :data:`JUMP_SKU`), about ``units_per_day`` units of each
    sold a day in all. The defaults make about 6,000 cases; ``skus=300,
    units_per_day=87.3`` about a million."""
    rng = random.Random(seed)
    counts = np.random.default_rng(seed)
    start = END - timedelta(days=DAYS - 1)
    now = datetime(END.year, END.month, END.day, 8, tzinfo=UTC).timestamp() + 86400
    catalogue: dict[str, tuple[str, Decimal, float]] = {}
    for index in range(skus):
        name = HIGH_SKU if index == 0 else JUMP_SKU if index == 1 else f"SKU-{index:04d}"
        category, (low, high), _ = CATEGORIES[index % len(CATEGORIES)]
        price = Decimal(rng.randrange(low * 100, high * 100)) / 100
        catalogue[name] = (category, price.quantize(Decimal("0.01")), rng.uniform(0.04, 0.14))
    reasons = {category: weighted for category, _, weighted in CATEGORIES}
    history = History(start=start, end=END, now=now, skus=catalogue)
    days = [start + timedelta(days=offset) for offset in range(DAYS)]
    names = list(catalogue)
    shares = np.array([share for _, share, _, _ in COUNTRIES])
    season = np.array([_season(day) for day in days])
    # units[day, sku, country]
    lam = units_per_day * season[:, None, None] * shares[None, None, :]
    units = counts.poisson(np.broadcast_to(lam, (len(days), len(names), len(COUNTRIES))))
    rates = np.array([[_rate(sku, catalogue[sku][2], day, END) for sku in names] for day in days])
    returned = counts.binomial(units, rates[:, :, None])
    serial = 0
    for d, day in enumerate(days):
        text = day.isoformat()
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        for s, sku in enumerate(names):
            category, price, _ = catalogue[sku]
            for c, (country, _, currency, carriers) in enumerate(COUNTRIES):
                sold = int(units[d, s, c])
                if sold:
                    history.sales.append((text, sku, category, country, sold))
                for _ in range(int(returned[d, s, c])):
                    serial += 1
                    case = _case(
                        rng, serial, sku, category, price, country, currency, carriers,
                        reasons[category], midnight, now,
                    )  # fmt: skip
                    history.rows.append(_row(case))
                    if keep:
                        history.cases.append(case)
    return history


def _case(
    rng: random.Random,
    serial: int,
    sku: str,
    category: str,
    price: Decimal,
    country: str,
    currency: str,
    carriers: Sequence[tuple[str, float]],
    reasons: Sequence[tuple[str, float]],
    midnight: float,
    now: float,
) -> GeneratedCase:
    carrier = _pick(rng, carriers)
    damage = 0.5 if DAMAGE_CARRIER in carrier else 0.04
    claimed = "damaged_in_transit" if rng.random() < damage else _pick(rng, reasons)
    created = midnight + rng.random() * 86400
    decided: float | None = created + 3600 * DECISION_MEDIAN_H * math.exp(rng.gauss(0, 0.8))
    recent = now - created < 2 * 86400
    if (decided or 0) > now or (recent and rng.random() < 0.5):
        decided = None
    verified: str | None = None
    grade: str | None = None
    if decided is not None:
        verified = claimed
        if rng.random() < (0.4 if claimed == "defective" else 0.1):
            verified = rng.choice([r for r in _OTHER_REASON if r != claimed])
        grade = _pick(rng, _GRADES_BY_REASON.get(verified, _GRADES_OTHERWISE))
    return GeneratedCase(
        id=f"rc-{serial:07d}",
        sku=sku,
        category=category,
        country=country,
        carrier=carrier,
        claimed_reason=claimed,
        verified_reason=verified,
        grade=grade,
        order_value=price,
        currency=currency,
        created_at=created,
        decided_at=decided,
    )


def _row(case: GeneratedCase) -> tuple[Any, ...]:
    decided = case.decided_at is not None
    return (
        case.id,
        "return",
        "closed" if decided else "waiting",
        "Generated Customer",
        case.sku,
        case.claimed_reason,
        case.category,
        case.claimed_reason,
        case.verified_reason,
        case.grade,
        case.country,
        case.carrier,
        str(case.order_value),
        case.currency,
        ("reject" if case.grade == "D" else "refund") if decided else None,
        "refunded" if decided and case.grade != "D" else "none",
        case.created_at,
        case.decided_at,
        case.decided_at + 3600 if case.decided_at is not None else None,
        case.decided_at or case.created_at,
    )


def _chunks(rows: Sequence[tuple[Any, ...]], size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def write(conn: sqlite3.Connection, history: History) -> None:
    """Insert the history's cases and sales on ``conn`` (the caller's transaction)."""
    marks = ", ".join("?" * len(_CASE_COLUMNS.split(",")))
    for chunk in _chunks(history.rows, 50_000):
        conn.executemany(f"INSERT INTO cases ({_CASE_COLUMNS}) VALUES ({marks})", chunk)
    for sales in _chunks(history.sales, 50_000):
        conn.executemany(
            "INSERT INTO sales (day, sku, category, country, units) VALUES (?, ?, ?, ?, ?)",
            sales,
        )
