"""Returns analytics: return rates and counts by SKU, category, reason (claimed and verified),
grade, country, carrier and time; the share of mismatched reasons; the time from request to
decision; the value recovered by resale channel; the most returned products; and alert rules
that raise an alert once per subject and window, with its webhook.

Every figure is derived here from the additive sums the store hands back
(:class:`~server.storage.analytics.ReturnGroup`), whichever way the store summed them:

- **rate**: returns over units sold in the same days and slice. A key the sales carry too
  (SKU, category, country, a period) is divided by its own units; a key only a case has
  (reason, grade, carrier) by every unit of the slice, so its rate is its share of the return
  rate (the rates of a dimension's keys add up to it). Filters on reason, grade or carrier do
  not change units sold. ``None`` where nothing was sold.
- **mismatched share**: of the cases with both a claimed and a verified reason, those where
  the two differ.
- **median hours to decision**: read from a histogram of half-octave buckets, interpolated
  (geometrically) inside the bucket that holds the middle case: within a few per cent.
- **value recovered**: a decided case's order value times the middle of its grade's resale
  price range (``inference.resale_channel``; parts and recycling count 0), per currency.

Wiring: ``AnalyticsService(SqliteAnalyticsStore(db, webhook_urls=settings.webhook_urls),
sink=webhooks)``; the alert loop is :class:`AlertLoop` (``start()`` in a cleanup context,
``aclose()`` at its end) fed by the rule table's owner (``ReturnsService.table()``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from aioutil import cancel_and_wait
from inference import resale_channel
from server.cases import WebhookEvent
from server.errors import InvalidRequest
from server.storage.analytics import (
    GRADES,
    SALES_DIMENSIONS,
    TIME_DIMENSIONS,
    AlertRecord,
    AnalyticsStore,
    Dimension,
    ReturnGroup,
    SalesRow,
    Slice,
    bucket_bounds,
)
from server.timefmt import iso_time

from .reasons import REASONS, ReturnReason

__all__ = [
    "ALERT_EVENT",
    "FIRST_DAY",
    "LAST_DAY",
    "MAX_DAYS",
    "MAX_DAYS_BY_DAY",
    "RECOVERY_SHARES",
    "Alert",
    "AlertLoop",
    "AlertRules",
    "AnalyticsService",
    "Breakdown",
    "Channel",
    "Dimension",
    "Figures",
    "OutboxSink",
    "Ranked",
    "Summary",
    "breakdown_csv",
    "label_of",
    "median_hours",
    "parse_sales_csv",
]

logger = logging.getLogger(__name__)

ALERT_EVENT: Final = "returns.alert"
#: The longest slice a query may ask for, and for a chart by day.
MAX_DAYS: Final = 1096
MAX_DAYS_BY_DAY: Final = 186
#: The days a slice may cover.
FIRST_DAY: Final = date(2000, 1, 1)
LAST_DAY: Final = date(2199, 12, 31)
_TEN_THOUSAND: Final = Decimal(10000)
_CENT: Final = Decimal("0.01")


def _share(grade: str) -> Decimal:
    price = resale_channel(grade).price_range
    return Decimal(0) if price is None else (Decimal(str(price[0])) + Decimal(str(price[1]))) / 2


#: The share of an order's value a decided case of each grade recovers: the middle of its
#: resale channel's price range (A 0.90, B 0.775, C 0.60, D 0).
RECOVERY_SHARES: Final[dict[str, Decimal]] = {grade: _share(grade) for grade in GRADES}

#: Alert kinds (``server.returns.rules.ALERT_KINDS``): the defaults of their optional values.
_ALERT_DEFAULTS: Final[dict[str, dict[str, int]]] = {
    "sku_return_rate": {"min_units": 20, "window_days": 30},
    "sku_rate_jump": {"min_units": 20, "window_days": 7},
    "carrier_damage_share": {"min_returns": 10, "window_days": 30},
}
#: A rate jump is held against the days before its window.
JUMP_BASELINE_DAYS: Final = 30


def median_hours(decisions: Sequence[int]) -> float | None:
    """The median time to decision (hours) of a histogram of decision-time buckets."""
    count = sum(decisions)
    if count == 0:
        return None
    middle = count / 2
    below = 0
    for bucket, number in enumerate(decisions):
        if number and below + number >= middle:
            low, high = bucket_bounds(bucket)
            fraction = (middle - below) / number
            if high is None:
                seconds = low
            elif low == 0:
                seconds = high * fraction
            else:
                seconds = low * (high / low) ** fraction
            return seconds / 3600
        below += number
    return None  # not reached: the counts add up to count


def _ratio(part: int, whole: int | None) -> float | None:
    return part / whole if whole else None


def _money(amounts: Mapping[str, Decimal]) -> dict[str, str]:
    return {
        currency or "XXX": str(amount.quantize(_CENT))
        for currency, amount in sorted(amounts.items())
    }


def label_of(dimension: Dimension, key: str) -> str:
    """How a key reads on a chart: reasons by their label, grades with their channel."""
    if key == "":
        return "(none)"
    if dimension in (Dimension.CLAIMED_REASON, Dimension.VERIFIED_REASON):
        try:
            return REASONS[ReturnReason(key)][3]
        except ValueError:
            return key
    if dimension == Dimension.GRADE and key in GRADES:
        return f"{key} · {resale_channel(key).description}"
    return key


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of one key (or of the whole slice: key ``''``)."""

    key: str
    label: str
    returns: int
    units: int | None
    compared: int
    mismatched: int
    damaged: int
    decided: int
    median_hours: float | None
    #: Order value of the decided cases by grade (ten-thousandths) and currency.
    order_value: Mapping[str, tuple[int, int, int, int]]

    @property
    def rate(self) -> float | None:
        return _ratio(self.returns, self.units)

    @property
    def mismatched_share(self) -> float | None:
        return _ratio(self.mismatched, self.compared)

    @property
    def damaged_share(self) -> float | None:
        return _ratio(self.damaged, self.returns)

    @property
    def value_recovered(self) -> dict[str, Decimal]:
        return {
            currency: sum(
                (
                    Decimal(v) / _TEN_THOUSAND * RECOVERY_SHARES[g]
                    for g, v in zip(GRADES, values, strict=True)
                ),
                Decimal(0),
            )
            for currency, values in self.order_value.items()
        }

    @property
    def score(self) -> float:
        """What "most returned" ranks by: rate × returns (a high rate on few sales, or many
        returns of a best seller at a low rate, rank below both together)."""
        return (self.rate or 0.0) * self.returns

    def to_json(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int = 6) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "key": self.key,
            "label": self.label,
            "returns": self.returns,
            "units": self.units,
            "rate": rounded(self.rate),
            "compared": self.compared,
            "mismatched": self.mismatched,
            "mismatched_share": rounded(self.mismatched_share),
            "damaged": self.damaged,
            "damaged_share": rounded(self.damaged_share),
            "decided": self.decided,
            "median_hours_to_decision": rounded(self.median_hours, 2),
            "value_recovered": _money(self.value_recovered),
        }


def _figures(
    dimension: Dimension, key: str, groups: Iterable[ReturnGroup], units: int | None
) -> Figures:
    returns = compared = mismatched = damaged = 0
    histogram: list[int] = []
    values: dict[str, list[int]] = {}
    for group in groups:
        returns += group.returns
        compared += group.compared
        mismatched += group.mismatched
        damaged += group.damaged
        if not histogram:
            histogram = [0] * len(group.decisions)
        for index, number in enumerate(group.decisions):
            histogram[index] += number
        if any(group.value):
            slot = values.setdefault(group.currency, [0, 0, 0, 0])
            for index, number in enumerate(group.value):
                slot[index] += number
    return Figures(
        key=key,
        label=label_of(dimension, key) if key else "All returns",
        returns=returns,
        units=units,
        compared=compared,
        mismatched=mismatched,
        damaged=damaged,
        decided=sum(histogram),
        median_hours=median_hours(histogram),
        order_value={currency: (v[0], v[1], v[2], v[3]) for currency, v in values.items()},
    )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A slice's figures by one dimension, and in all."""

    dimension: Dimension
    where: Slice
    rows: list[Figures]
    total: Figures


@dataclass(frozen=True, slots=True)
class Channel:
    """What the decided cases of one grade are worth in its resale channel."""

    grade: str
    name: str
    description: str
    price_range: tuple[float, float] | None
    cases: int
    order_value: dict[str, Decimal]
    value_recovered: dict[str, Decimal]

    def to_json(self) -> dict[str, Any]:
        return {
            "grade": self.grade,
            "channel": self.name,
            "description": self.description,
            "price_range": list(self.price_range) if self.price_range else None,
            "share": float(RECOVERY_SHARES[self.grade]),
            "cases": self.cases,
            "order_value": _money(self.order_value),
            "value_recovered": _money(self.value_recovered),
        }


@dataclass(frozen=True, slots=True)
class Summary:
    where: Slice
    total: Figures
    channels: list[Channel]


@dataclass(frozen=True, slots=True)
class Ranked:
    rank: int
    figures: Figures

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "score": round(self.figures.score, 4)} | self.figures.to_json()


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised alert as the API and its webhook show it."""

    id: str
    rule_id: str
    kind: str
    version: int
    subject: str
    since: date
    until: date
    message: str
    figures: Mapping[str, Any]
    raised_at: float

    @classmethod
    def of(cls, record: AlertRecord) -> Alert:
        data = record.data
        return cls(
            id=record.id,
            rule_id=record.rule_id,
            kind=str(data.get("kind", "")),
            version=record.version,
            subject=record.subject,
            since=record.since,
            until=record.until,
            message=str(data.get("message", "")),
            figures=dict(data.get("figures") or {}),
            raised_at=record.raised_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "kind": self.kind,
            "version": self.version,
            "subject": self.subject,
            "period": {"since": self.since.isoformat(), "until": self.until.isoformat()},
            "message": self.message,
            "figures": dict(self.figures),
            "raised_at": iso_time(self.raised_at),
        }


class OutboxSink(Protocol):
    """Told that the outbox has new deliveries (the webhook dispatcher)."""

    def notify(self) -> None: ...


class _RuleTable(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def alerts(self) -> Sequence[Mapping[str, Any]]: ...


class AlertRules(Protocol):
    """Where the alert rules in force come from (``server.returns.ReturnsService``)."""

    async def table(self) -> _RuleTable: ...


def _utc_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


class AnalyticsService:
    """The analytics queries, the sales upload and the alert rules, over an
    :class:`~server.storage.analytics.AnalyticsStore`."""

    def __init__(
        self,
        store: AnalyticsStore,
        *,
        clock: Callable[[], float] = time.time,
        sink: OutboxSink | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sink = sink

    # -- slices --------------------------------------------------------------------------------

    def today(self) -> date:
        return _utc_day(self._clock())

    def slice(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        sku: str | None = None,
        category: str | None = None,
        country: str | None = None,
        carrier: str | None = None,
        claimed_reason: str | None = None,
        verified_reason: str | None = None,
        grade: str | None = None,
    ) -> Slice:
        """A checked slice; by default the current month and the eleven before it (UTC)."""
        until = until or self.today()
        for name, day in (("since", since), ("until", until)):
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                raise InvalidRequest(
                    f"{name}: {day} is not between {FIRST_DAY} and {LAST_DAY}", fields=(name,)
                )
        if since is None:
            since = max(FIRST_DAY, _months_back(until.replace(day=1), 11))
        if since > until:
            raise InvalidRequest(
                f"since: {since} is after until ({until})", fields=("since", "until")
            )
        if (until - since).days + 1 > MAX_DAYS:
            raise InvalidRequest(
                f"since: at most {MAX_DAYS} days at once ({since}..{until} is "
                f"{(until - since).days + 1})",
                fields=("since",),
            )
        for name, value in (
            ("claimed_reason", claimed_reason),
            ("verified_reason", verified_reason),
        ):
            if value is not None and value not in {reason.value for reason in ReturnReason}:
                codes = ", ".join(reason.value for reason in ReturnReason)
                raise InvalidRequest(
                    f"{name}: {value!r} is not a reason: one of {codes}", fields=(name,)
                )
        if grade is not None and grade.upper() not in GRADES:
            raise InvalidRequest(f"grade: {grade!r} is not one of A, B, C, D", fields=("grade",))
        if country is not None and not (
            len(country) == 2 and country.isalpha() and country.isascii()
        ):
            raise InvalidRequest(
                f"country: {country!r} is not an ISO 3166-1 alpha-2 code (like DE)",
                fields=("country",),
            )
        return Slice(
            since=since,
            until=until,
            sku=_text(sku),
            category=_text(category),
            country=country.upper() if country else None,
            carrier=_text(" ".join(carrier.split())) if carrier else None,
            claimed_reason=claimed_reason,
            verified_reason=verified_reason,
            grade=grade.upper() if grade else None,
        )

    # -- queries -------------------------------------------------------------------------------

    async def breakdown(self, dimension: Dimension | str, where: Slice) -> Breakdown:
        """The figures of ``where`` by ``dimension``: keys by returns (time in order)."""
        dimension = Dimension(dimension)
        if dimension == Dimension.DAY and (where.until - where.since).days + 1 > MAX_DAYS_BY_DAY:
            raise InvalidRequest(
                f"dimension: by day covers at most {MAX_DAYS_BY_DAY} days; use week or month",
                fields=("dimension",),
            )
        groups = await self._store.return_groups(dimension, where)
        if dimension in SALES_DIMENSIONS:
            units = await self._store.units(dimension, where)
            slice_units = sum(units.values())  # every sale has one key of these
        else:
            units = {}
            slice_units = (await self._store.units(None, where)).get("", 0)
        by_key: dict[str, list[ReturnGroup]] = {}
        for group in groups:
            by_key.setdefault(group.key, []).append(group)
        # Keys that sold and had no returns have a rate too: 0.
        for key in units:
            by_key.setdefault(key, [])
        rows = [
            _figures(
                dimension,
                key,
                members,
                units.get(key, 0) if dimension in SALES_DIMENSIONS else slice_units,
            )
            for key, members in by_key.items()
        ]
        if dimension in TIME_DIMENSIONS:
            rows.sort(key=lambda row: row.key)
        else:
            rows.sort(key=lambda row: (-row.returns, row.key))
        if dimension == Dimension.CARRIER:
            # A case of several carriers is under each of them: the total counts it once.
            groups = await self._store.return_groups(Dimension.GRADE, where)
        total = _figures(dimension, "", groups, slice_units)
        return Breakdown(dimension=dimension, where=where, rows=rows, total=total)

    async def summary(self, where: Slice) -> Summary:
        """The slice's figures in all, and the value recovered by resale channel."""
        grades = await self.breakdown(Dimension.GRADE, where)
        channels: list[Channel] = []
        for index, grade in enumerate(GRADES):
            row = next((r for r in grades.rows if r.key == grade), None)
            channel = resale_channel(grade)
            order_value = {
                currency: Decimal(values[index]) / _TEN_THOUSAND
                for currency, values in (row.order_value.items() if row else ())
            }
            channels.append(
                Channel(
                    grade=grade,
                    name=channel.name,
                    description=channel.description,
                    price_range=channel.price_range,
                    cases=row.decided if row else 0,
                    order_value=order_value,
                    value_recovered={
                        currency: amount * RECOVERY_SHARES[grade]
                        for currency, amount in order_value.items()
                    },
                )
            )
        return Summary(where=where, total=grades.total, channels=channels)

    async def top_products(
        self, where: Slice, *, limit: int = 10, min_units: int = 1
    ) -> list[Ranked]:
        """The most returned SKUs by rate × returns (those with at least ``min_units`` sold)."""
        skus = await self.breakdown(Dimension.SKU, where)
        eligible = [
            row
            for row in skus.rows
            if row.units is not None and row.units >= max(min_units, 1) and row.returns
        ]
        eligible.sort(key=lambda row: (-row.score, -row.returns, row.key))
        return [Ranked(rank, row) for rank, row in enumerate(eligible[:limit], start=1)]

    async def put_sales(self, rows: Sequence[SalesRow]) -> int:
        return await self._store.put_sales(rows)

    async def refresh(self) -> int:
        """Bring the store's rollups up to date (queries do it too; start-up may do it early)."""
        return await self._store.refresh()

    # -- alerts --------------------------------------------------------------------------------

    async def alerts(self, *, limit: int = 50, since: float | None = None) -> list[Alert]:
        return [Alert.of(record) for record in await self._store.alerts(limit=limit, since=since)]

    async def evaluate_alerts(
        self, alerts: Sequence[Mapping[str, Any]], *, version: int
    ) -> list[Alert]:
        """Check each alert rule over its window (the last ``window_days`` whole UTC days) and
        raise what is new: once per rule and subject while its windows overlap, with its
        webhook (event ``returns.alert``) in the same transaction. Returns what was raised."""
        now = self._clock()
        until = _utc_day(now) - timedelta(days=1)
        raised: list[Alert] = []
        for rule in alerts:
            kind = str(rule.get("kind"))
            if kind not in _ALERT_DEFAULTS:
                logger.warning("alert rule of unknown kind skipped", extra={"rule": rule.get("id")})
                continue
            params = {**_ALERT_DEFAULTS[kind], **{k: v for k, v in rule.items() if v is not None}}
            since = until - timedelta(days=int(params["window_days"]) - 1)
            for subject, figures, message in await self._check(kind, params, since, until):
                record = AlertRecord(
                    id=uuid.uuid4().hex,
                    rule_id=str(rule["id"]),
                    version=version,
                    subject=subject,
                    since=since,
                    until=until,
                    data={"kind": kind, "rule": dict(rule), "figures": figures, "message": message},
                    raised_at=now,
                )
                alert = Alert.of(record)
                if await self._store.raise_alert(record, _alert_event(alert)):
                    logger.info(
                        "returns alert raised",
                        extra={"rule": alert.rule_id, "subject": subject, "period": record.period},
                    )
                    raised.append(alert)
        if raised and self._sink is not None:
            self._sink.notify()
        return raised

    async def _check(
        self, kind: str, params: Mapping[str, Any], since: date, until: date
    ) -> list[tuple[str, dict[str, Any], str]]:
        window = Slice(since, until)
        period = f"{since}..{until}"
        found: list[tuple[str, dict[str, Any], str]] = []
        if kind == "carrier_damage_share":
            threshold, least = float(params["threshold"]), int(params["min_returns"])
            for row in (await self.breakdown(Dimension.CARRIER, window)).rows:
                share = row.damaged_share
                if row.key and row.returns >= least and share is not None and share > threshold:
                    figures: dict[str, Any] = {
                        "returns": row.returns,
                        "damaged": row.damaged,
                        "damaged_share": round(share, 4),
                        "threshold": threshold,
                    }
                    found.append((row.key, figures, (
                        f"{row.key}: {share:.0%} of {row.returns} returns damaged in transit "
                        f"over {period} (threshold {threshold:.0%})"
                    )))  # fmt: skip
            return found
        least = int(params["min_units"])
        recent = {row.key: row for row in (await self.breakdown(Dimension.SKU, window)).rows}
        if kind == "sku_return_rate":
            threshold = float(params["threshold"])
            for key, row in sorted(recent.items()):
                rate = row.rate
                if (
                    key
                    and row.units
                    and row.units >= least
                    and rate is not None
                    and rate > threshold
                ):
                    figures = {
                        "returns": row.returns,
                        "units": row.units,
                        "rate": round(rate, 4),
                        "threshold": threshold,
                    }
                    found.append((key, figures, (
                        f"{key}: return rate {rate:.1%} ({row.returns} of {row.units} sold) "
                        f"over {period} (threshold {threshold:.0%})"
                    )))  # fmt: skip
            return found
        percent = float(params["percent"])
        before_until = since - timedelta(days=1)
        before_since = before_until - timedelta(days=JUMP_BASELINE_DAYS - 1)
        baseline = {
            row.key: row
            for row in (await self.breakdown(Dimension.SKU, Slice(before_since, before_until))).rows
        }
        for key, row in sorted(recent.items()):
            base = baseline.get(key)
            if not key or base is None or row.rate is None or base.rate is None:
                continue
            if (row.units or 0) < least or (base.units or 0) < least or base.rate == 0:
                continue  # no baseline to jump from (sku_return_rate covers a new high)
            jump = (row.rate / base.rate - 1) * 100
            if jump >= percent:
                figures = {
                    "returns": row.returns,
                    "units": row.units,
                    "rate": round(row.rate, 4),
                    "baseline_returns": base.returns,
                    "baseline_units": base.units,
                    "baseline_rate": round(base.rate, 4),
                    "baseline": {"since": str(before_since), "until": str(before_until)},
                    "jump_percent": round(jump, 1),
                    "percent": percent,
                }
                found.append((key, figures, (
                    f"{key}: return rate {row.rate:.1%} over {period}, up {jump:.0f}% on "
                    f"{base.rate:.1%} the {JUMP_BASELINE_DAYS} days before"
                )))  # fmt: skip
        return found

    async def run_alerts_every(self, seconds: float, rules: AlertRules) -> None:
        """Evaluate the rule table's alerts every ``seconds``, until cancelled (the rollups are
        brought up to date first). A failed round is logged and the next one runs."""
        try:
            await self.refresh()
        except Exception:
            logger.exception("analytics rollups could not be refreshed")
        while True:
            try:
                table = await rules.table()
                if table.alerts:
                    await self.evaluate_alerts(list(table.alerts), version=table.version)
            except Exception:
                logger.exception("returns alerts could not be evaluated")
            await asyncio.sleep(seconds)


def _months_back(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _alert_event(alert: Alert) -> WebhookEvent:
    event_id = uuid.uuid4().hex
    body = json.dumps(
        {"id": event_id, "event": ALERT_EVENT, "at": iso_time(alert.raised_at),
         "alert": alert.to_json()},
        separators=(",", ":"),
    )  # fmt: skip
    return WebhookEvent(
        event_id=event_id,
        event=ALERT_EVENT,
        case_id=f"alert:{alert.rule_id}",
        at=alert.raised_at,
        body=body,
    )


class AlertLoop:
    """Owns the task that runs :meth:`AnalyticsService.run_alerts_every`: ``start()`` when the
    app starts, ``aclose()`` (idempotent) when it stops."""

    def __init__(
        self, service: AnalyticsService, rules: AlertRules, *, interval_s: float = 300.0
    ) -> None:
        self._service = service
        self._rules = rules
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self._service.run_alerts_every(self._interval_s, self._rules),
                name="returns-alerts",
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


# -- CSV ---------------------------------------------------------------------------------------

_CSV_COLUMNS: Final = (
    "key", "label", "returns", "units", "rate", "compared", "mismatched", "mismatched_share",
    "damaged", "damaged_share", "decided", "median_hours_to_decision",
)  # fmt: skip
SALES_CSV_COLUMNS: Final = ("day", "sku", "category", "country", "units")
MAX_SALES_ROWS: Final = 200_000


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts with one of these as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def breakdown_csv(breakdown: Breakdown) -> str:
    """The breakdown as CSV: a row per key and a last row of the totals, value recovered in a
    column per currency."""
    rows = [*breakdown.rows, breakdown.total]
    currencies = sorted({currency for row in rows for currency in row.value_recovered})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            breakdown.dimension.value,
            *_CSV_COLUMNS[1:],
            *(f"value_recovered_{c or 'XXX'}" for c in currencies),
        ]
    )
    for row in rows:
        data = row.to_json()
        if row is breakdown.total:
            data["key"] = "(all)"
        writer.writerow(
            [_cell(data[column]) for column in _CSV_COLUMNS]
            + [data["value_recovered"].get(currency or "XXX", "") for currency in currencies]
        )
    return out.getvalue()


def parse_sales_csv(text: str) -> list[dict[str, str]]:
    """The records of a sales CSV (header ``day,sku,category,country,units``; category and
    country may be left out), each with its line number under ``"line"``."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not header:
        raise InvalidRequest("the CSV is empty: its first line names the columns "
                             f"({','.join(SALES_CSV_COLUMNS)})")  # fmt: skip
    missing = [name for name in ("day", "sku", "units") if name not in header]
    unknown = [name for name in header if name not in SALES_CSV_COLUMNS]
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise InvalidRequest(
            f"line 1: the columns are {','.join(SALES_CSV_COLUMNS)} ({'; '.join(problems)})"
        )
    reader.fieldnames = header
    records: list[dict[str, str]] = []
    for record in reader:
        if len(records) >= MAX_SALES_ROWS:
            raise InvalidRequest(f"at most {MAX_SALES_ROWS} rows at once")
        line = reader.line_num
        if None in record:
            raise InvalidRequest(f"line {line}: more cells than the {len(header)} columns")
        cells = {name: (value or "").strip() for name, value in record.items()}
        if not any(cells.values()):
            continue
        records.append({**cells, "line": str(line)})
    return records
