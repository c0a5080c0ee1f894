"""REST routes of cases: create (with a customer join link), list, read with the timeline,
fresh join links, accept, decide, close."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from evidence import claim_deadlines
from server.accounts import AccountService
from server.cases import (
    Case,
    CaseAction,
    CaseEvent,
    CaseEventType,
    CaseKind,
    CaseState,
    NewCase,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
    SupportOutcome,
    SupportVerdict,
    build_grading_record,
)
from server.http._request import CALL_TAKERS, case_id_of, read_body, require, validation_error
from server.http.authz import REASON_HEADER, require_case_holder
from server.http.keys import (
    ACCOUNTS_KEY,
    CALL_CONTROL_KEY,
    CASES_KEY,
    GRADING_VIEW_KEY,
    RETURNS_KEY,
    SETTINGS_KEY,
)
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, LongText, Name, ReturnFactsBody, ShortText
from server.returns import ReturnReason, Trigger
from server.timefmt import iso_time
from signaling import SubjectId, SubjectKind
from web.locales import SUPPORTED_LOCALES, invitation_text, supported_locale

__all__ = ["routes"]


class NewCaseBody(Body):
    kind: CaseKind
    customer_name: Name
    customer_contact: Name | None = None
    order_id: ShortText | None = None
    sku: ShortText | None = None
    reason: LongText | None = None
    tracking_number: ShortText | None = None
    #: The per-unit QR code or serial the returned item should carry.
    unit_id: ShortText | None = None
    #: Carriers and marketplaces involved, e.g. "UPS, Amazon": the case shows their claim
    #: deadlines (from ``evidence.retention``'s rule table) counted from these dates.
    carrier: ShortText | None = None
    shipped_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = None
    #: The customer's language as a BCP 47 tag ("de", "pt-BR", "zh-TW"), kept as the catalogue
    #: it maps to (``zh-Hant``, ``pt``); a language with no catalogue is refused.
    customer_locale: Annotated[str, StringConstraints(max_length=35)] | None = None
    #: The customer's IANA time zone ("Europe/Berlin").
    customer_time_zone: Annotated[str, StringConstraints(max_length=64)] | None = None
    #: The reason the merchant's system or the customer gave (``GET /api/returns/reasons``).
    claimed_reason: ReturnReason | None = None
    #: The product category, for rules and analytics ("headphones").
    category: ShortText | None = None
    #: What the order line was worth, in ``order_currency``.
    order_value: Annotated[
        Decimal | None, Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False)
    ] = None
    order_currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    #: The customer's country, ISO 3166-1 alpha-2 ("DE").
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None

    @field_validator("customer_locale")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = supported_locale(value)
        if code is None:
            raise ValueError(f"no catalogue for {value!r}: one of {', '.join(SUPPORTED_LOCALES)}")
        return code

    @field_validator("customer_time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value


class ReturnDecisionBody(Body):
    decision: ReturnDecision
    refund_amount: Annotated[
        Decimal | None,
        Field(gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False, validate_default=True),
    ] = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    facts: ReturnFactsBody
    note: LongText | None = None
    grade_override: GradeOverrideBody | None = None

    @field_validator("refund_amount")
    @classmethod
    def _amount_matches_decision(
        cls, value: Decimal | None, info: ValidationInfo
    ) -> Decimal | None:
        decision = info.data.get("decision")
        if decision is ReturnDecision.PARTIAL_REFUND and value is None:
            raise ValueError("required (greater than 0) for a partial_refund")
        if decision in (ReturnDecision.REJECT, ReturnDecision.RETURN_TO_WAREHOUSE) and value:
            raise ValueError(f"not allowed with decision {decision.value}")
        return value


class GradeOverrideBody(Body):
    """The agent's grade where it differs from what the rule table derives from the facts."""

    grade: Literal["A", "B", "C", "D"]
    reason: Annotated[str, StringConstraints(min_length=3, max_length=2000)]


class SupportDecisionBody(Body):
    outcome: SupportOutcome
    resolution_note: LongText


class CaseListQuery(Body):
    state: CaseState | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0


class CaseOut(Out):
    id: str
    kind: CaseKind
    state: CaseState
    customer_name: str
    customer_contact: str | None
    customer_locale: str | None
    customer_time_zone: str | None
    claimed_reason: ReturnReason | None
    verified_reason: ReturnReason | None
    #: Whether the verified reason differs from the claimed one (null until both are known).
    mismatched: bool | None
    category: str | None
    order_value: float | None
    order_currency: str | None
    country: str | None
    #: The customer's answers before the call (``POST /join/c/{case}/intake``).
    intake: dict[str, Any] | None
    #: ``none``, ``held`` (a rule holds the refund) or ``released``.
    refund_state: Literal["none", "held", "released"]
    disposition: str | None
    approval: dict[str, Any] | None
    final_grade: Literal["A", "B", "C", "D"] | None
    order_id: str | None
    sku: str | None
    reason: str | None
    tracking_number: str | None
    unit_id: str | None
    carrier: str | None
    shipped_at: str | None
    delivered_at: str | None
    agent_id: str | None
    #: Only in ``GET /api/cases/{id}``: the agent's display name.
    agent_name: str | None = None
    #: Only in ``GET /api/cases/{id}``: claim deadlines of the case's carriers, soonest first.
    claim_deadlines: list[dict[str, Any]] | None = None
    decision: ReturnDecision | None
    refund_amount: float | None
    currency: str | None
    facts: ReturnFactsBody | None
    note: str | None
    outcome: SupportOutcome | None
    resolution_note: str | None
    grading: dict[str, Any] | None
    created_at: str
    waiting_at: str | None
    in_call_at: str | None
    decided_at: str | None
    closed_at: str | None


class CaseResponse(Out):
    case: CaseOut


class InvitationOut(Out):
    #: The catalogue the text is in: the case's ``customer_locale``, else English.
    locale: str
    #: The message to send the customer (text or email): greeting, link and how long it works.
    text: str


class JoinLinkResponse(Out):
    join_url: str
    join_token: str
    join_expires_at: str
    invitation: InvitationOut


class CaseCreatedResponse(Out):
    join_url: str
    join_token: str
    join_expires_at: str
    invitation: InvitationOut
    case: CaseOut


class CaseListResponse(Out):
    cases: list[CaseOut]


class EventOut(Out):
    at: str
    type: str
    actor: str
    #: Who ``actor`` is, for people: a staff name, the customer's name, an API token's name.
    actor_name: str
    data: dict[str, Any]


class CaseDetailResponse(Out):
    case: CaseOut
    events: list[EventOut]


def _join_link_json(request: web.Request, case: Case) -> dict[str, Any]:
    link = request.app[ACCOUNTS_KEY].issue_join_token(case.id)
    base = request.app[SETTINGS_KEY].base_url
    # The token rides in the fragment, which no browser sends and no proxy logs.
    url = f"{base}/join#t={link.token}"
    locale = case.customer_locale or "en"
    return {
        "join_url": url,
        "join_token": link.token,
        "join_expires_at": iso_time(link.expires_at),
        "invitation": {
            "locale": locale,
            "text": invitation_text(
                locale,
                kind=case.kind.value,
                name=case.customer_name,
                url=url,
                valid_s=link.expires_at - time.time(),
            ),
        },
        "_expires": link.expires_at,
    }


async def create_case(request: web.Request) -> JsonReply[CaseCreatedResponse]:
    identity = await require(request, CALL_TAKERS)
    body = await read_body(request, NewCaseBody)
    cases = request.app[CASES_KEY]
    fields = body.model_dump()
    for name in ("shipped_at", "delivered_at"):
        fields[name] = fields[name].timestamp() if fields[name] is not None else None
    if fields["claimed_reason"] is not None:
        fields["claimed_reason"] = fields["claimed_reason"].value
    case = await cases.create(NewCase(**fields), actor=identity.subject)
    # The rules for a new case (hold refunds of some reasons from the start...) act before the
    # link goes out; the reply shows the case as they left it.
    await request.app[RETURNS_KEY].run(case, Trigger.CREATED)
    case = await cases.require(case.id)
    link = _join_link_json(request, case)
    await cases.note_join_link(case.id, actor=identity.subject, expires_at=link.pop("_expires"))
    return reply(CaseCreatedResponse, {"case": case.to_json(), **link}, status=201)


async def list_cases(request: web.Request) -> JsonReply[CaseListResponse]:
    await require(request)
    try:
        query = CaseListQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None
    cases = await request.app[CASES_KEY].list_cases(
        query.state, limit=query.limit, offset=query.offset
    )
    return reply(CaseListResponse, {"cases": [case.to_json() for case in cases]})


async def get_case(request: web.Request) -> JsonReply[CaseDetailResponse]:
    await require(request)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    events = await cases.events(case.id)
    auth = request.app[ACCOUNTS_KEY]
    names = _ActorNames(auth, case)
    body = case.to_json()
    body["agent_name"] = names.name(case.agent_id) if case.agent_id else None
    body["claim_deadlines"] = _claim_deadlines(case)
    return reply(
        CaseDetailResponse,
        {
            "case": body,
            "events": [
                {**event.to_json(), "actor_name": names.for_event(event)} for event in events
            ],
        },
    )


def _claim_deadlines(case: Case) -> list[dict[str, Any]]:
    """The named carriers' and marketplaces' claim deadlines, soonest first."""
    if not case.carrier or (case.shipped_at is None and case.delivered_at is None):
        return []
    names = [name.strip() for name in case.carrier.split(",") if name.strip()]
    return [
        deadline.to_json()
        for deadline in claim_deadlines(
            delivered_at=_utc(case.delivered_at), shipped_at=_utc(case.shipped_at), carriers=names
        )
    ]


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class _ActorNames:
    """Turns the ids kept in the timeline into names people recognise."""

    def __init__(self, auth: AccountService, case: Case) -> None:
        self._auth = auth
        self._case = case

    def name(self, actor: str) -> str:
        subject = SubjectId.parse(actor)
        if subject.kind is SubjectKind.CUSTOMER:
            return f"{self._case.customer_name} (customer)"
        if subject.kind is SubjectKind.API_TOKEN:
            token = self._auth.cached_token(subject.key)
            return f"{token.name} (API)" if token is not None else "API token"
        user = self._auth.cached_user(actor)
        return user.name if user is not None else actor

    def for_event(self, event: CaseEvent) -> str:
        sender = event.data.get("sender") if event.type == CaseEventType.CHAT else None
        if isinstance(sender, dict):
            # A customer types the name they chat under: the timeline names the case's
            # customer as staff entered it instead. A staff sender's name is the account's.
            if sender.get("role") == "customer":
                return self.name(SubjectId.customer(self._case.id))
            if sender.get("name") and not sender.get("subject"):
                return str(sender["name"])
        return self.name(event.actor)


async def new_join_link(request: web.Request) -> JsonReply[JoinLinkResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.JOIN_LINK)
    # The timeline entry re-checks the state in its own transaction: a case accepted since the
    # check above refuses it, and the token, never handed out, opens nothing.
    link = _join_link_json(request, case)
    await cases.note_join_link(case.id, actor=identity.subject, expires_at=link.pop("_expires"))
    return reply(JoinLinkResponse, link, status=201)


async def accept_case(request: web.Request) -> JsonReply[CaseResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await request.app[CALL_CONTROL_KEY].accept_case(case.id, identity)
    case = await cases.require(case.id)
    return reply(CaseResponse, {"case": case.to_json()})


async def decide_case(request: web.Request) -> JsonReply[CaseResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.DECIDE)
    verdict: ReturnVerdict | SupportVerdict
    if case.kind is CaseKind.RETURN:
        body = await read_body(request, ReturnDecisionBody)
        facts = ReturnFacts(**body.facts.model_dump())
        live = request.app[GRADING_VIEW_KEY].latest(case.id)
        stored = (case.grading or {}).get("model")
        verdict = ReturnVerdict(
            decision=body.decision,
            facts=facts,
            refund_amount=body.refund_amount,
            currency=body.currency,
            note=body.note,
            grading=build_grading_record(
                facts.to_json(),
                model_view=live if live is not None else stored,
                override=body.grade_override.model_dump() if body.grade_override else None,
            ),
        )
    else:
        support = await read_body(request, SupportDecisionBody)
        verdict = SupportVerdict(outcome=support.outcome, resolution_note=support.resolution_note)
    case = await cases.decide(case.id, verdict, actor=identity.subject)
    return reply(CaseResponse, {"case": case.to_json()})


async def close_case(request: web.Request) -> JsonReply[CaseResponse]:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await require_case_holder(request, identity, case, CaseAction.CLOSE)
    case = await cases.close(case.id, actor=identity.subject)
    return reply(CaseResponse, {"case": case.to_json()})


_CASE_ERRORS = (400, 401, 403, 404, 409, 413, 415)
#: Said in the summary of every route an admin may use on a case they do not hold.
_HOLDER_ONLY = f"; holder only, or an admin with an {REASON_HEADER} header (logged)"


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("POST", "/api/cases", create_case, "Create a case and a customer join link",
          "agent, admin, API", body=(NewCaseBody,), response=CaseCreatedResponse, status=201,
          errors=(400, 401, 403, 413, 415), tag="cases"),
        R("GET", "/api/cases", list_cases, "Cases, newest first", "staff",
          query=CaseListQuery, response=CaseListResponse, errors=(400, 401), tag="cases"),
        R("GET", "/api/cases/{id}", get_case, "A case and its timeline", "staff",
          response=CaseDetailResponse, errors=(401, 404), tag="cases"),
        R("POST", "/api/cases/{id}/join-link", new_join_link,
          "A fresh customer join link (only while the case is created or waiting)",
          "agent, admin, API", response=JoinLinkResponse, status=201,
          errors=(401, 403, 404, 409), tag="cases"),
        R("POST", "/api/cases/{id}/accept", accept_case, "Take a waiting case (one agent wins)",
          "agent, admin", response=CaseResponse, errors=(401, 403, 404, 409), tag="cases"),
        R("POST", "/api/cases/{id}/decision", decide_case,
          "Record the decision (return) or outcome (support)" + _HOLDER_ONLY, "agent, admin",
          body=(ReturnDecisionBody, SupportDecisionBody), response=CaseResponse,
          errors=_CASE_ERRORS, tag="cases"),
        R("POST", "/api/cases/{id}/close", close_case, "Close a decided case" + _HOLDER_ONLY,
          "agent, admin",
          response=CaseResponse, errors=(401, 403, 404, 409), tag="cases"),
    ]  # fmt: skip
