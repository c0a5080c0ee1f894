"""What returns analytics needs of persistence: return cases counted by one dimension over a
slice of them, units sold (the denominator of return rates), the sales upload, and raised
alerts with their webhook.

Counts cross the seam as additive groups (:class:`ReturnGroup`): a key and a currency with
sums and a histogram of decision times. Every figure the analytics show (rates, shares,
medians, value recovered) is derived from such sums by the domain
(``server.returns.analytics``), so a backend may answer from rollups or from the rows
themselves and the figures are the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from typing import Any, Final, Protocol

from server.cases import WebhookEvent

__all__ = [
    "BUCKETS",
    "BUCKET_BASE_S",
    "CASE_ONLY_DIMENSIONS",
    "GRADES",
    "SALES_DIMENSIONS",
    "TIME_DIMENSIONS",
    "AlertRecord",
    "AnalyticsStore",
    "Dimension",
    "ReturnGroup",
    "SalesRow",
    "Slice",
    "bucket_bounds",
    "decision_bucket",
    "split_carriers",
]


class Dimension(StrEnum):
    """What return figures are broken down by."""

    SKU = "sku"
    CATEGORY = "category"
    CLAIMED_REASON = "claimed_reason"
    VERIFIED_REASON = "verified_reason"
    GRADE = "grade"
    COUNTRY = "country"
    CARRIER = "carrier"
    MONTH = "month"  # YYYY-MM (UTC)
    WEEK = "week"  # the Monday that starts the ISO week, YYYY-MM-DD (UTC)
    DAY = "day"  # YYYY-MM-DD (UTC)


TIME_DIMENSIONS: Final = frozenset({Dimension.MONTH, Dimension.WEEK, Dimension.DAY})
#: Dimensions the sales carry too: units sold are counted by the same key.
SALES_DIMENSIONS: Final = frozenset(
    {Dimension.SKU, Dimension.CATEGORY, Dimension.COUNTRY} | TIME_DIMENSIONS
)
#: Dimensions only a case has: a key's rate is its returns over all units sold in the slice.
CASE_ONLY_DIMENSIONS: Final = frozenset(Dimension) - SALES_DIMENSIONS
GRADES: Final = ("A", "B", "C", "D")

#: Decision-time buckets: 0 is under 15 minutes; bucket k (1..24) is
#: [15 min × 2^((k-1)/2), 15 min × 2^(k/2)), half an octave wide (41 %); 25 is 1024 hours or
#: more. A median read from them (interpolated inside its bucket) is within a few per cent.
BUCKETS: Final = 26
BUCKET_BASE_S: Final = 900.0


def decision_bucket(seconds: float) -> int:
    """The bucket of a time from request to decision (the backends compute the same in SQL)."""
    if seconds < BUCKET_BASE_S:
        return 0
    return min(BUCKETS - 1, int(2 * math.log2(seconds / BUCKET_BASE_S)) + 1)


def bucket_bounds(bucket: int) -> tuple[float, float | None]:
    """(low, high) seconds of a bucket; ``high`` is None for the last, open one."""
    if bucket <= 0:
        return (0.0, BUCKET_BASE_S)
    low = BUCKET_BASE_S * 2 ** ((bucket - 1) / 2)
    return (low, None if bucket >= BUCKETS - 1 else BUCKET_BASE_S * 2 ** (bucket / 2))


def split_carriers(text: str | None) -> list[str]:
    """The carriers and marketplaces of a case's ``carrier`` field ("UPS, Amazon"), each once,
    trimmed, in order; none for an empty field."""
    parts: list[str] = []
    for part in (text or "").split(","):
        name = " ".join(part.split())
        if name and name not in parts:
            parts.append(name)
    return parts


@dataclass(frozen=True, slots=True)
class Slice:
    """Which return cases (and sales) count: created (sold) on a UTC day from ``since`` to
    ``until``, both included, matching every filter that is set. ``carrier`` matches a case
    whose carriers include it (case-insensitively)."""

    since: date
    until: date
    sku: str | None = None
    category: str | None = None
    country: str | None = None
    carrier: str | None = None
    claimed_reason: str | None = None
    verified_reason: str | None = None
    grade: str | None = None

    @property
    def filtered(self) -> bool:
        """Whether anything but the days narrows it."""
        return any(
            value is not None
            for value in (
                self.sku,
                self.category,
                self.country,
                self.carrier,
                self.claimed_reason,
                self.verified_reason,
                self.grade,
            )
        )

    @property
    def sales_filtered(self) -> bool:
        """Whether a filter the sales carry narrows it (the others do not change units)."""
        return any(value is not None for value in (self.sku, self.category, self.country))

    def days(self, since: date, until: date) -> Slice:
        """The same filters over other days."""
        return replace(self, since=since, until=until)

    def filters(self) -> dict[str, str]:
        """The filters that are set, by name."""
        named = {
            "sku": self.sku,
            "category": self.category,
            "country": self.country,
            "carrier": self.carrier,
            "claimed_reason": self.claimed_reason,
            "verified_reason": self.verified_reason,
            "grade": self.grade,
        }
        return {name: value for name, value in named.items() if value is not None}


@dataclass(frozen=True, slots=True)
class ReturnGroup:
    """Sums over the return cases of one key and currency."""

    key: str  # '' where the cases have no value for the dimension
    currency: str  # '' where the cases have none
    returns: int
    #: Cases with both a claimed and a verified reason, and those where the two differ.
    compared: int = 0
    mismatched: int = 0
    #: Cases whose reason (verified, else claimed) is damaged_in_transit.
    damaged: int = 0
    #: Order value of the cases by final grade A..D, in ten-thousandths of the currency unit.
    value: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: Decided cases by decision-time bucket (:data:`BUCKETS` counts).
    decisions: tuple[int, ...] = (0,) * BUCKETS

    @property
    def decided(self) -> int:
        return sum(self.decisions)

    def plus(self, other: ReturnGroup) -> ReturnGroup:
        return ReturnGroup(
            key=self.key,
            currency=self.currency,
            returns=self.returns + other.returns,
            compared=self.compared + other.compared,
            mismatched=self.mismatched + other.mismatched,
            damaged=self.damaged + other.damaged,
            value=(
                self.value[0] + other.value[0],
                self.value[1] + other.value[1],
                self.value[2] + other.value[2],
                self.value[3] + other.value[3],
            ),
            decisions=tuple(a + b for a, b in zip(self.decisions, other.decisions, strict=True)),
        )


@dataclass(frozen=True, slots=True)
class SalesRow:
    """Units of a SKU sold on a UTC day (in a country; '' where sales are not split by one)."""

    day: date
    sku: str
    units: int
    category: str | None = None
    country: str = ""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert raised by a rule for a subject (a SKU, a carrier) over a window of days."""

    id: str
    rule_id: str
    version: int
    subject: str
    since: date
    until: date
    data: Mapping[str, Any] = field(default_factory=dict)
    raised_at: float = 0.0

    @property
    def period(self) -> str:
        return f"{self.since.isoformat()}..{self.until.isoformat()}"


class AnalyticsStore(Protocol):
    async def return_groups(self, dimension: Dimension, where: Slice) -> list[ReturnGroup]:
        """The return cases of ``where`` summed by ``dimension``'s key and currency, one group
        each. A case carried by several carriers counts once under each of them."""
        ...

    async def units(self, dimension: Dimension | None, where: Slice) -> dict[str, int]:
        """Units sold in ``where`` (its sku, category and country filters; the others do not
        apply to sales) by ``dimension``'s key, which must be one of
        :data:`SALES_DIMENSIONS`; ``None``: the total, under ``''``. Keys with no sales are
        absent."""
        ...

    async def put_sales(self, rows: Sequence[SalesRow]) -> int:
        """Keep ``rows`` (a row for the same sku, day and country replaces the one before),
        in one transaction; returns how many were written."""
        ...

    async def raise_alert(self, alert: AlertRecord, event: WebhookEvent) -> bool:
        """Keep ``alert`` and enqueue ``event`` for every webhook target, in one transaction,
        unless an alert of the same rule and subject already covers a day of its window
        (then nothing is written and this returns False)."""
        ...

    async def alerts(self, *, limit: int, since: float | None = None) -> list[AlertRecord]:
        """Raised alerts, newest first (raised at or after ``since``, if given)."""
        ...

    async def refresh(self) -> int:
        """Bring whatever the backend precomputes up to date with the cases and sales; returns
        how many days were recomputed. Queries do it themselves; this lets start-up do it
        early."""
        ...
