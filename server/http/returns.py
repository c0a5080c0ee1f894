"""REST routes of returns operations: the reason taxonomy, the rule table (read by staff,
saved and tried by admins, every version kept), the agent's verified reason, the second
approval of a held refund, and the customer's intake before the call (offers and answers,
under the join link's cookie)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import AwareDatetime, Field, StringConstraints

from server.cases import CaseAction
from server.errors import NotFound
from server.http._request import ADMIN, CALL_TAKERS, case_id_of, customer_of, read_body, require
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import CASES_KEY, RETURNS_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, LongText, Note
from server.returns import (
    ACTIONS,
    ALERT_KINDS,
    FIELDS,
    REASONS,
    Intake,
    ReturnReason,
    RuleTable,
    reason_json,
)
from server.returns.rules import describe, version_name
from server.timefmt import iso_time

__all__ = ["routes"]

_MONTH_S = 30 * 24 * 3600


class ReasonOut(Out):
    code: ReturnReason
    label: str
    #: Shopify's ``ReturnReason`` value.
    shopify: str
    #: The X12 Return Request Reason Code (data element 1293), or null.
    x12: str | None
    x12_meaning: str | None


class ReasonsResponse(Out):
    reasons: list[ReasonOut]


class RuleTableBody(Body):
    rules: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    #: Why it changed (kept with the version).
    note: Note | None = None


class DryRunBody(Body):
    rules: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    #: The cases created in this stretch (default: the last 30 days).
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class RuleTableResponse(Out):
    #: ``return-rules/<n>``; ``return-rules/0`` before any table was saved.
    version: str
    number: int
    rules: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    #: What a condition may test, and what an action does (for the rules page).
    fields: dict[str, dict[str, str]]
    actions: dict[str, dict[str, Any]]
    alert_kinds: dict[str, dict[str, str]]


class VersionOut(Out):
    version: str
    number: int
    author: str
    note: str | None
    created_at: str
    rules: int
    alerts: int


class VersionsResponse(Out):
    versions: list[VersionOut]


class VersionResponse(Out):
    version: str
    number: int
    author: str
    note: str | None
    created_at: str
    body: dict[str, Any]


class DryRunRuleOut(Out):
    id: str
    name: str
    #: How many cases it would have matched (at any moment).
    cases: int
    #: By moment: how many times it would have matched there.
    moments: dict[str, int]
    #: A few of those cases.
    examples: list[str]


class DryRunResponse(Out):
    version: str
    since: str
    until: str
    #: How many return cases were tried.
    cases: int
    rules: list[DryRunRuleOut]


class VerifyBody(Body):
    verified_reason: ReturnReason
    note: Note | None = None


class ApproveBody(Body):
    note: Note | None = None


class CaseReturnsResponse(Out):
    case: dict[str, Any]


class OffersBody(Body):
    reason: ReturnReason


class OfferOut(Out):
    rule: str
    kind: str
    percent: float | None
    amount: float | None
    currency: str | None


class OffersResponse(Out):
    offers: list[OfferOut]


class OfferChoice(Body):
    rule: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    kind: Annotated[str, StringConstraints(pattern=r"^(exchange|keep)$")]


class IntakeBody(Body):
    reason: ReturnReason
    description: LongText | None = None
    #: Evidence items of photos sent before (``POST /join/c/{case}/uploads`` with
    #: ``purpose: intake``).
    photos: Annotated[list[Annotated[str, StringConstraints(max_length=100)]],
                      Field(max_length=10)] = []  # fmt: skip
    offer: OfferChoice | None = None


class IntakeResponse(Out):
    intake: dict[str, Any]


def _table_json(table: RuleTable) -> dict[str, Any]:
    return {
        "version": table.name,
        "number": table.version,
        "rules": list(describe(table)),
        "alerts": [dict(alert) for alert in table.alerts],
        "fields": {name: {"type": kind, "meaning": text} for name, (kind, text) in FIELDS.items()},
        "actions": {
            name: {
                "params": params,
                "only_on": sorted(t.value for t in only) if only is not None else None,
                "meaning": text,
            }
            for name, (params, only, text) in ACTIONS.items()
        },
        "alert_kinds": {name: dict(params) for name, params in ALERT_KINDS.items()},
    }


async def reasons(request: web.Request) -> JsonReply[ReasonsResponse]:
    await require(request)
    return reply(ReasonsResponse, {"reasons": [reason_json(reason) for reason in REASONS]})


async def get_rules(request: web.Request) -> JsonReply[RuleTableResponse]:
    await require(request)
    return reply(RuleTableResponse, _table_json(await request.app[RETURNS_KEY].table()))


async def put_rules(request: web.Request) -> JsonReply[RuleTableResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, RuleTableBody)
    table = await request.app[RETURNS_KEY].save(
        {"rules": body.rules, "alerts": body.alerts}, actor=identity.subject, note=body.note
    )
    return reply(RuleTableResponse, _table_json(table), status=201)


async def rule_versions(request: web.Request) -> JsonReply[VersionsResponse]:
    await require(request)
    versions = await request.app[RETURNS_KEY].versions()
    return reply(
        VersionsResponse,
        {
            "versions": [
                {
                    "version": version_name(v.version),
                    "number": v.version,
                    "author": v.author,
                    "note": v.note,
                    "created_at": iso_time(v.created_at),
                    "rules": len(v.body.get("rules") or []),
                    "alerts": len(v.body.get("alerts") or []),
                }
                for v in versions
            ]
        },
    )


async def rule_version(request: web.Request) -> JsonReply[VersionResponse]:
    await require(request)
    raw = request.match_info["id"]
    number = int(raw) if raw.isdigit() else -1
    found = await request.app[RETURNS_KEY].version(number) if number > 0 else None
    if found is None:
        raise NotFound(f"no version {raw!r} of the return rules")
    return reply(
        VersionResponse,
        {
            "version": version_name(found.version),
            "number": found.version,
            "author": found.author,
            "note": found.note,
            "created_at": iso_time(found.created_at),
            "body": dict(found.body),
        },
    )


def _ts(value: datetime | None, default: float) -> float:
    return value.timestamp() if value is not None else default


async def dry_run(request: web.Request) -> JsonReply[DryRunResponse]:
    await require(request, ADMIN)
    body = await read_body(request, DryRunBody)
    now = time.time()
    result = await request.app[RETURNS_KEY].dry_run(
        {"rules": body.rules, "alerts": body.alerts},
        since=_ts(body.since, now - _MONTH_S),
        until=_ts(body.until, now),
    )
    return reply(
        DryRunResponse,
        {
            "version": result.version,
            "since": iso_time(result.since),
            "until": iso_time(result.until),
            "cases": result.cases,
            "rules": [dict(rule) for rule in result.rules],
        },
    )


async def verify_reason(request: web.Request) -> JsonReply[CaseReturnsResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.DECIDE)
    body = await read_body(request, VerifyBody)
    updated = await request.app[RETURNS_KEY].verify(
        case.id, body.verified_reason, actor=identity.subject, note=body.note
    )
    return reply(CaseReturnsResponse, {"case": updated.to_json()})


async def approve(request: web.Request) -> JsonReply[CaseReturnsResponse]:
    identity = await require(request, CALL_TAKERS)
    case = await request.app[CASES_KEY].require(case_id_of(request))
    body = await read_body(request, ApproveBody)
    updated = await request.app[RETURNS_KEY].approve(
        case.id, actor=identity.subject, note=body.note
    )
    return reply(CaseReturnsResponse, {"case": updated.to_json()})


async def customer_offers(request: web.Request) -> JsonReply[OffersResponse]:
    _, case = await customer_of(request)
    body = await read_body(request, OffersBody)
    offers = await request.app[RETURNS_KEY].offers(case, body.reason)
    return reply(OffersResponse, {"offers": [offer.to_json() for offer in offers]})


async def customer_intake(request: web.Request) -> JsonReply[IntakeResponse]:
    _, case = await customer_of(request)
    body = await read_body(request, IntakeBody)
    intake = Intake(
        reason=body.reason,
        description=body.description,
        photos=tuple(body.photos),
        offer=body.offer.model_dump() if body.offer is not None else None,
    )
    updated = await request.app[RETURNS_KEY].submit_intake(case.id, intake)
    return reply(IntakeResponse, {"intake": dict(updated.intake or {})}, status=201)


def routes() -> list[ApiRoute]:
    """The returns endpoints, registered and documented with the rest of the API."""
    R = ApiRoute
    held = f"the case's holder, or an admin with an {REASON_HEADER} header"
    customer = "the customer (the join link's cookie)"
    return [
        R("GET", "/api/returns/reasons", reasons,
          "The return reasons with their Shopify and X12 codes", "staff",
          response=ReasonsResponse, errors=(401,), tag="returns"),
        R("GET", "/api/returns/rules", get_rules,
          "The return rule table in force, with what conditions may test and actions do",
          "staff", response=RuleTableResponse, errors=(401,), tag="returns"),
        R("PUT", "/api/returns/rules", put_rules,
          "Save a new version of the return rule table (checked: 400 names the path of the "
          "first problem)", "admin", body=(RuleTableBody,), response=RuleTableResponse,
          errors=(400, 401, 403, 413, 415), tag="returns"),
        R("GET", "/api/returns/rules/versions", rule_versions,
          "Every saved version, newest first: who, when, why (the audit of rule changes)",
          "staff", response=VersionsResponse, errors=(401,), tag="returns"),
        R("GET", "/api/returns/rules/versions/{id}", rule_version,
          "One saved version of the rule table", "staff", response=VersionResponse,
          errors=(401, 404), tag="returns"),
        R("POST", "/api/returns/rules/dry-run", dry_run,
          "What a rule table would have done to past return cases (nothing is written)",
          "admin", body=(DryRunBody,), response=DryRunResponse,
          errors=(400, 401, 403, 413, 415), tag="returns"),
        R("POST", "/api/cases/{id}/reason", verify_reason,
          "Record the reason the agent found in the call (the verified reason); the rules "
          "for verification run; " + held, "agent holding the case, admin",
          body=(VerifyBody,), response=CaseReturnsResponse,
          errors=(400, 401, 403, 404, 409, 413, 415), tag="returns"),
        R("POST", "/api/cases/{id}/approve", approve,
          "Approve a refund a rule held for a second approval (not by whoever decided it)",
          "agent, admin", body=(ApproveBody,), response=CaseReturnsResponse,
          errors=(400, 401, 403, 404, 409, 413, 415), tag="returns"),
        R("POST", "/join/c/{case_id}/offers", customer_offers,
          "The offers the rules make for a reason (exchange, keep with a partial refund)",
          customer, body=(OffersBody,), response=OffersResponse,
          errors=(400, 401, 404, 413, 415), tag="returns"),
        R("POST", "/join/c/{case_id}/intake", customer_intake,
          "The customer's answers before the call: reason, what is wrong, photos, the offer "
          "taken (once)", customer, body=(IntakeBody,), response=IntakeResponse,
          status=201, errors=(400, 401, 404, 409, 413, 415), tag="returns"),
    ]  # fmt: skip
