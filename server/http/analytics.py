"""REST routes of returns analytics: figures by dimension (JSON and CSV), the summary with the
value recovered by resale channel, the most returned products, charts as SVG, raised alerts,
and the sales upload (JSON rows or a CSV body) that return rates are divided by.

Staff read; admins upload sales. Every route takes the same slice filters as query parameters
(``since``, ``until`` as YYYY-MM-DD, UTC, both included; ``sku``, ``category``, ``country``,
``carrier``, ``claimed_reason``, ``verified_reason``, ``grade``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError

from server.errors import DomainError, DomainErrorCode, InvalidRequest
from server.http._request import ADMIN, require, validation_error
from server.http.keys import ANALYTICS_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body
from server.returns import ReturnReason
from server.returns.analytics import (
    FIRST_DAY,
    LAST_DAY,
    AnalyticsService,
    Dimension,
    Figures,
    breakdown_csv,
    parse_sales_csv,
)
from server.storage.analytics import SALES_DIMENSIONS, TIME_DIMENSIONS, SalesRow, Slice
from web.charts import Bar, Point, bar_chart, line_chart

__all__ = ["ANALYTICS_KEY", "ChartQuery", "chart_svg", "routes"]

#: The analytics service (to move into ``server.http.keys`` with the rest).

#: A sales upload may be larger than an API body: a year of daily sales by SKU and country.
MAX_SALES_BYTES = 16 * 1024 * 1024
MAX_SALES_ROWS = 200_000


def _printable(value: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
#: The days a slice or a sale may fall on.
Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
Grade = Literal["A", "B", "C", "D"]
M = TypeVar("M", bound=BaseModel)


class SliceQuery(Body):
    #: First day counted (UTC); by default the first of the month eleven months back.
    since: Day | None = None
    #: Last day counted (UTC), included; by default today.
    until: Day | None = None
    sku: Text | None = None
    category: Text | None = None
    #: ISO 3166-1 alpha-2.
    country: Country | None = None
    #: One carrier or marketplace: matches a case whose carrier list includes it.
    carrier: Text | None = None
    claimed_reason: ReturnReason | None = None
    verified_reason: ReturnReason | None = None
    grade: Grade | None = None


class BreakdownQuery(SliceQuery):
    dimension: Dimension = Dimension.SKU


class TopQuery(SliceQuery):
    limit: int = Field(10, ge=1, le=100)
    #: SKUs that sold fewer units in the slice are not ranked.
    min_units: int = Field(1, ge=1)


Chart = Literal["bar", "line", "top", "channels"]
Metric = Literal[
    "returns", "rate", "mismatched_share", "damaged_share", "median_hours", "value_recovered"
]


class ChartQuery(SliceQuery):
    #: bar: a dimension's keys; line: a metric over time; top: most returned products;
    #: channels: value recovered by resale channel.
    chart: Chart = "bar"
    metric: Metric = "returns"
    #: bar: any (default sku); line: month, week or day (default month).
    dimension: Dimension | None = None
    limit: int = Field(12, ge=1, le=50)
    #: Pixels across (the text keeps its size: a wider chart has more room, not bigger type).
    width: int = Field(640, ge=320, le=1600)


class AlertsQuery(Body):
    limit: int = Field(50, ge=1, le=500)


class SalesRowBody(Body):
    day: Day
    sku: Text
    category: Text | None = None
    #: ISO 3166-1 alpha-2, or empty where sales are not split by country.
    country: Annotated[str, StringConstraints(pattern=r"^([A-Za-z]{2})?$")] = ""
    units: int = Field(ge=0, le=1_000_000_000)

    def row(self) -> SalesRow:
        return SalesRow(
            day=self.day,
            sku=self.sku,
            units=self.units,
            category=self.category,
            country=self.country.upper(),
        )


class SalesBody(Body):
    rows: list[SalesRowBody] = Field(min_length=1, max_length=MAX_SALES_ROWS)


class FiguresOut(Out):
    key: str
    label: str
    returns: int
    #: Units sold in the key's slice (for a reason, grade or carrier: in the whole slice).
    units: int | None
    #: returns / units; null where nothing sold.
    rate: float | None
    #: Cases with a claimed and a verified reason, and those where the two differ.
    compared: int
    mismatched: int
    mismatched_share: float | None
    #: Cases whose reason (verified, else claimed) is damaged_in_transit.
    damaged: int
    damaged_share: float | None
    decided: int
    median_hours_to_decision: float | None
    #: Order value × the middle of its grade's resale price range, by currency.
    value_recovered: dict[str, str]


class RankedOut(FiguresOut):
    rank: int
    #: rate × returns.
    score: float


class ChannelOut(Out):
    grade: str
    channel: str
    description: str
    price_range: list[float] | None
    share: float
    cases: int
    order_value: dict[str, str]
    value_recovered: dict[str, str]


class SliceOut(Out):
    since: date
    until: date
    filters: dict[str, str]


class BreakdownResponse(SliceOut):
    dimension: Dimension
    rows: list[FiguresOut]
    total: FiguresOut


class SummaryResponse(SliceOut):
    total: FiguresOut
    channels: list[ChannelOut]


class TopProductsResponse(SliceOut):
    products: list[RankedOut]


class PeriodOut(Out):
    since: date
    until: date


class AlertOut(Out):
    id: str
    rule_id: str
    kind: str
    version: int
    subject: str
    period: PeriodOut
    message: str
    figures: dict[str, Any]
    raised_at: str


class AlertsResponse(Out):
    alerts: list[AlertOut]


class SalesResponse(Out):
    rows: int


def _query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None


def _slice(service: AnalyticsService, query: SliceQuery) -> Slice:
    return service.slice(
        since=query.since,
        until=query.until,
        sku=query.sku,
        category=query.category,
        country=query.country,
        carrier=query.carrier,
        claimed_reason=query.claimed_reason.value if query.claimed_reason else None,
        verified_reason=query.verified_reason.value if query.verified_reason else None,
        grade=query.grade,
    )


def _about(where: Slice) -> dict[str, Any]:
    return {"since": where.since, "until": where.until, "filters": where.filters()}


async def analytics_returns(request: web.Request) -> JsonReply[BreakdownResponse]:
    await require(request)
    query = _query(request, BreakdownQuery)
    service = request.app[ANALYTICS_KEY]
    breakdown = await service.breakdown(query.dimension, _slice(service, query))
    return reply(
        BreakdownResponse,
        _about(breakdown.where)
        | {
            "dimension": breakdown.dimension,
            "rows": [row.to_json() for row in breakdown.rows],
            "total": breakdown.total.to_json(),
        },
    )


async def analytics_returns_csv(request: web.Request) -> web.Response:
    await require(request)
    query = _query(request, BreakdownQuery)
    service = request.app[ANALYTICS_KEY]
    breakdown = await service.breakdown(query.dimension, _slice(service, query))
    where = breakdown.where
    name = f"returns-by-{breakdown.dimension.value}-{where.since}-{where.until}.csv"
    return web.Response(
        text=breakdown_csv(breakdown),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def analytics_summary(request: web.Request) -> JsonReply[SummaryResponse]:
    await require(request)
    query = _query(request, SliceQuery)
    service = request.app[ANALYTICS_KEY]
    summary = await service.summary(_slice(service, query))
    return reply(
        SummaryResponse,
        _about(summary.where)
        | {
            "total": summary.total.to_json(),
            "channels": [channel.to_json() for channel in summary.channels],
        },
    )


async def analytics_top_products(request: web.Request) -> JsonReply[TopProductsResponse]:
    await require(request)
    query = _query(request, TopQuery)
    service = request.app[ANALYTICS_KEY]
    where = _slice(service, query)
    ranked = await service.top_products(where, limit=query.limit, min_units=query.min_units)
    return reply(
        TopProductsResponse, _about(where) | {"products": [item.to_json() for item in ranked]}
    )


async def analytics_alerts(request: web.Request) -> JsonReply[AlertsResponse]:
    await require(request)
    query = _query(request, AlertsQuery)
    alerts = await request.app[ANALYTICS_KEY].alerts(limit=query.limit)
    return reply(AlertsResponse, {"alerts": [alert.to_json() for alert in alerts]})


async def _body_text(request: web.Request) -> tuple[str, str]:
    """The body as text and its type (json or csv), at most MAX_SALES_BYTES."""
    mime = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if mime == "text/csv":
        kind = "csv"
    elif mime == "application/json" or mime.endswith("+json"):
        kind = "json"
    else:
        sent = f"not {mime}" if mime else "this request has no Content-Type"
        raise DomainError(
            f"send the sales as application/json or text/csv ({sent})",
            code=DomainErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    if request.content_length is not None and request.content_length > MAX_SALES_BYTES:
        raise DomainError(f"body over {MAX_SALES_BYTES} bytes", code=DomainErrorCode.TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_SALES_BYTES:
            raise DomainError(f"body over {MAX_SALES_BYTES} bytes", code=DomainErrorCode.TOO_LARGE)
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8-sig"), kind
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})") from None


def _csv_rows(text: str) -> list[SalesRow]:
    rows: list[SalesRow] = []
    for record in parse_sales_csv(text):
        line = record.pop("line")
        fields = {key: value for key, value in record.items() if value != ""}
        try:
            rows.append(SalesRowBody.model_validate(fields).row())
        except ValidationError as exc:
            problem = validation_error(exc)
            raise InvalidRequest(
                f"line {line}, {problem.message}",
                fields=tuple(f"line {line}.{name}" for name in problem.fields),
            ) from None
    if not rows:
        raise InvalidRequest("no sales rows: the CSV has a header and nothing under it")
    return rows


async def analytics_upload_sales(request: web.Request) -> JsonReply[SalesResponse]:
    await require(request, ADMIN)
    text, kind = await _body_text(request)
    if kind == "csv":
        rows = _csv_rows(text)
    else:
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(data, dict):
            raise InvalidRequest('the body is a JSON object: {"rows": [{"day", "sku", "units"}]}')
        try:
            rows = [row.row() for row in SalesBody.model_validate(data).rows]
        except ValidationError as exc:
            raise validation_error(exc) from None
    written = await request.app[ANALYTICS_KEY].put_sales(rows)
    return reply(SalesResponse, {"rows": written})


# -- charts ------------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value * 100:.1f}".rstrip("0").rstrip(".") + " %"


def _hours(value: float) -> str:
    return f"{value:.1f} h" if value < 100 else f"{value:.0f} h"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _main_currency(rows: list[Figures]) -> str:
    totals: dict[str, Decimal] = {}
    for row in rows:
        for currency, amount in row.value_recovered.items():
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return max(totals, key=lambda c: totals[c]) if totals else ""


_Metric = tuple[str, Callable[[Figures], float | None], Callable[[float], str]]


def _metric(metric: str, rows: list[Figures]) -> _Metric:
    """(name, value of a row, how a value reads) of a metric."""
    if metric == "rate":
        return "Return rate", lambda f: f.rate, _percent
    if metric == "mismatched_share":
        return "Mismatched reasons", lambda f: f.mismatched_share, _percent
    if metric == "damaged_share":
        return "Damaged in transit", lambda f: f.damaged_share, _percent
    if metric == "median_hours":
        return "Median time to decision", lambda f: f.median_hours, _hours
    if metric == "value_recovered":
        currency = _main_currency(rows)

        def value(f: Figures) -> float | None:
            amount = f.value_recovered.get(currency)
            return float(amount) if amount is not None else None

        return f"Value recovered ({currency or 'none'})", value, lambda v: f"{v:,.0f}"
    return "Returns", lambda f: float(f.returns), _count


def _subtitle(where: Slice) -> str:
    filters = ", ".join(f"{name} {value}" for name, value in where.filters().items())
    return f"{where.since} to {where.until}" + (f" · {filters}" if filters else "")


def _text(value: float, reads: Callable[[float], str], row: Figures, metric: str) -> str:
    text = reads(value)
    if metric == "returns" and row.rate is not None:
        text += f" · {_percent(row.rate)}"
    return text


async def chart_svg(service: AnalyticsService, query: ChartQuery, where: Slice) -> str:
    """The chart ``query`` asks for, over ``where``, as an SVG document."""
    subtitle = _subtitle(where)
    if query.chart == "top":
        ranked = await service.top_products(where, limit=query.limit)
        bars = [
            Bar(
                label=item.figures.label,
                value=item.figures.score,
                text=f"{_percent(item.figures.rate or 0)} × {item.figures.returns:,}",
                title=(
                    f"{item.figures.label}: {item.figures.returns:,} returns of "
                    f"{item.figures.units:,} sold ({_percent(item.figures.rate or 0)})"
                ),
            )
            for item in ranked
        ]
        return bar_chart(
            "Most returned products (rate × returns)",
            bars,
            subtitle=subtitle,
            width=query.width,
            ident="top",
            axis=lambda v: f"{v:,.1f}".rstrip("0").rstrip("."),
        )
    if query.chart == "channels":
        summary = await service.summary(where)
        currency = _main_currency([summary.total])
        bars = []
        for channel in summary.channels:
            recovered = channel.value_recovered.get(currency, Decimal(0))
            bars.append(
                Bar(
                    label=f"{channel.grade} · {channel.description}",
                    value=float(recovered),
                    text=f"{recovered:,.0f} · {channel.cases:,} cases",
                    title=(
                        f"Grade {channel.grade}, {channel.description}: {recovered:,.2f} "
                        f"{currency} recovered of {channel.order_value.get(currency, 0):,.2f}"
                    ),
                )
            )
        return bar_chart(
            f"Value recovered by resale channel ({currency or 'none'})",
            bars,
            subtitle=subtitle,
            width=query.width,
            ident="channels",
            axis=lambda v: f"{v:,.0f}",
        )
    if query.chart == "line":
        dimension = query.dimension or Dimension.MONTH
        if dimension not in TIME_DIMENSIONS:
            raise InvalidRequest(
                "dimension: a line chart is over month, week or day", fields=("dimension",)
            )
        breakdown = await service.breakdown(dimension, where)
        name, value_of, reads = _metric(query.metric, breakdown.rows)
        points = []
        for row in breakdown.rows:
            value = value_of(row)
            text = "no figure" if value is None else _text(value, reads, row, query.metric)
            points.append(Point(label=row.key, value=value, text=text))
        return line_chart(
            f"{name} by {dimension.value}",
            points,
            subtitle=subtitle,
            axis=reads,
            width=query.width,
            ident=f"line-{query.metric}",
        )
    dimension = query.dimension or Dimension.SKU
    breakdown = await service.breakdown(dimension, where)
    name, value_of, reads = _metric(query.metric, breakdown.rows)
    if query.metric == "rate" and dimension not in SALES_DIMENSIONS:
        name = "Share of the return rate"
    measured = [(row, value_of(row)) for row in breakdown.rows]
    kept = [(row, value) for row, value in measured if value is not None and row.returns]
    if dimension not in TIME_DIMENSIONS:
        kept.sort(key=lambda item: (-(item[1] or 0.0), item[0].key))
    bars = [
        Bar(label=row.label, value=value or 0.0, text=_text(value or 0.0, reads, row, query.metric))
        for row, value in kept[: query.limit]
    ]
    return bar_chart(
        f"{name} by {dimension.value.replace('_', ' ')}",
        bars,
        subtitle=subtitle,
        axis=reads,
        width=query.width,
        ident=f"bar-{query.metric}-{dimension.value}",
    )


async def analytics_chart(request: web.Request) -> web.Response:
    await require(request)
    query = _query(request, ChartQuery)
    service = request.app[ANALYTICS_KEY]
    svg = await chart_svg(service, query, _slice(service, query))
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        charset="utf-8",
        # Opened on its own, the document may do nothing but show itself.
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"},
    )


def routes() -> list[ApiRoute]:
    """The analytics endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    return [
        R("GET", "/api/analytics/returns", analytics_returns,
          "Return figures by a dimension (sku, category, claimed_reason, verified_reason, "
          "grade, country, carrier, month, week, day): returns, units, rate, mismatched "
          "share, median hours to decision, value recovered", "staff", query=BreakdownQuery,
          response=BreakdownResponse, errors=(400, 401), tag="analytics"),
        R("GET", "/api/analytics/returns.csv", analytics_returns_csv,
          "The same figures as CSV (a row per key, then the totals)", "staff",
          query=BreakdownQuery, errors=(400, 401), content_type="text/csv", tag="analytics"),
        R("GET", "/api/analytics/summary", analytics_summary,
          "The slice in all, and the value recovered by resale channel", "staff",
          query=SliceQuery, response=SummaryResponse, errors=(400, 401), tag="analytics"),
        R("GET", "/api/analytics/top-products", analytics_top_products,
          "The most returned products, ranked by return rate × returns", "staff",
          query=TopQuery, response=TopProductsResponse, errors=(400, 401), tag="analytics"),
        R("GET", "/api/analytics/chart.svg", analytics_chart,
          "A chart drawn on the server (SVG): a dimension's bars, a metric over time, the "
          "most returned products or the value by resale channel", "staff", query=ChartQuery,
          errors=(400, 401), content_type="image/svg+xml", tag="analytics"),
        R("GET", "/api/analytics/alerts", analytics_alerts,
          "Alerts raised by the rule table's alert rules, newest first", "staff",
          query=AlertsQuery, response=AlertsResponse, errors=(400, 401), tag="analytics"),
        R("POST", "/api/analytics/sales", analytics_upload_sales,
          "Upload units sold (JSON rows, or a CSV body: day,sku,category,country,units); a "
          "row for the same sku, day and country replaces the one before", "admin",
          body=(SalesBody,), response=SalesResponse, errors=(400, 401, 403, 413, 415),
          tag="analytics"),
    ]  # fmt: skip
