"""The REST API under ``/api/`` (see docs/protocol.md), ``/healthz`` and ``/metrics``.

Bodies are validated by pydantic models (unknown fields rejected); every error leaves as
``{"error": {"code", "message"}}`` with its status, and bad input never produces a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

from aiohttp import web
from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from evidence import claim_deadlines
from inference import SnapshotCandidate
from server.accounts.service import SESSION_COOKIE, Auth, load_secret_key
from server.cases.grading_record import build_grading_record
from server.cases.service import (
    Case,
    CaseEvent,
    CaseEventType,
    CaseKind,
    CaseService,
    CaseState,
    Cosmetic,
    Functional,
    NewCase,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
    SupportOutcome,
    SupportVerdict,
    iso_time,
)
from server.cases.webhooks import WebhookDispatcher
from server.errors import (
    DomainError,
    DomainErrorCode,
    NotFound,
    Unauthorized,
)
from server.http._request import (
    ADMIN,
    CALL_TAKERS,
    MAX_BODY_BYTES,
    case_id_of,
    error_response,
    json_response,
    read_body,
    require,
    validation_error,
)
from server.http.errors import error_middleware
from server.http.keys import (
    AUTH_KEY,
    CALL_CONTROL_KEY,
    CASES_KEY,
    DB_KEY,
    GRADING_VIEW_KEY,
    METRICS_KEY,
    NODE_KEY,
    SETTINGS_KEY,
    WEBHOOKS_KEY,
)
from server.http.openapi import ApiRoute, openapi_document
from server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.metrics import Metrics
from server.settings import Settings
from server.sites.service import SiteService
from server.storage.sqlite import Database
from signaling.messages import Role
from signaling.ports import CaseSummary, Identity
from signaling.ratelimit import RateLimit, RateLimiter

__all__ = [
    "API_VERSION",
    "MAX_BODY_BYTES",
    "CallControl",
    "DirectCallControl",
    "Services",
    "api_routes",
    "open_services",
    "setup_api",
]

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"


class CallControl(Protocol):
    """What the accept route needs from the call hub (``signaling``): take a waiting case
    atomically. Raises ``SignalingError`` ``already_accepted`` / ``not_waiting`` / ``not_found``."""

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary: ...


class DirectCallControl:
    """Accepts straight through the case service (no live hub: nothing is pushed to sockets).
    The default when ``setup_api`` is given no ``calls``."""

    def __init__(self, cases: CaseService) -> None:
        self._cases = cases

    async def accept_case(self, case_id: str, agent: Identity) -> CaseSummary:
        case = await self._cases.accept(case_id, agent)
        return case.summary()


class GradingView(Protocol):
    """What the routes read of live grading (``inference.GradingService``)."""

    def latest(self, case_id: str) -> dict[str, Any] | None: ...

    def frames(self, case_id: str) -> list[SnapshotCandidate]: ...


class NoGrading:
    """Grading switched off (``INSPECT_GRADING=false``): no live view, no frames."""

    def latest(self, case_id: str) -> dict[str, Any] | None:
        return None

    def frames(self, case_id: str) -> list[SnapshotCandidate]:
        return []


# -- wire models -------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=100)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
StaffRole = Literal["agent", "reviewer", "admin"]


class LoginBody(_Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class NewCaseBody(_Body):
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


class ReturnFactsBody(_Body):
    cosmetic: Cosmetic
    functional: Functional
    packaging: Packaging
    accessories_complete: StrictBool


class ReturnDecisionBody(_Body):
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


class GradeOverrideBody(_Body):
    """The agent's grade where it differs from what the rule table derives from the facts."""

    grade: Literal["A", "B", "C", "D"]
    reason: Annotated[str, StringConstraints(min_length=3, max_length=2000)]


class SupportDecisionBody(_Body):
    outcome: SupportOutcome
    resolution_note: LongText


class NewUserBody(_Body):
    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)]
    name: Name
    role: StaffRole


class NewTokenBody(_Body):
    name: ShortText
    role: StaffRole = "admin"


class NewWebhookBody(_Body):
    url: AnyHttpUrl
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] | None = None


class CaseListQuery(_Body):
    state: CaseState | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0


class UserOut(BaseModel):
    id: str
    username: str | None
    name: str
    role: StaffRole


class UserResponse(BaseModel):
    user: UserOut


class CaseOut(BaseModel):
    id: str
    kind: CaseKind
    state: CaseState
    customer_name: str
    customer_contact: str | None
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


class CaseResponse(BaseModel):
    case: CaseOut


class JoinLinkResponse(BaseModel):
    join_url: str
    join_token: str
    join_expires_at: str


class CaseCreatedResponse(JoinLinkResponse):
    case: CaseOut


class CaseListResponse(BaseModel):
    cases: list[CaseOut]


class EventOut(BaseModel):
    at: str
    type: str
    actor: str
    #: Who ``actor`` is, for people: a staff name, the customer's name, an API token's name.
    actor_name: str
    data: dict[str, Any]


class CaseDetailResponse(BaseModel):
    case: CaseOut
    events: list[EventOut]


class TokenCreatedResponse(BaseModel):
    token: str
    id: str


class WebhookOut(BaseModel):
    id: str
    url: str
    created_at: str


class WebhookCreatedResponse(BaseModel):
    webhook: WebhookOut
    secret: str


class WebhookListResponse(BaseModel):
    webhooks: list[WebhookOut]


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    db: Literal["ok", "error"]
    version: str
    #: Which node answered (several may share the port: ``inspectd serve --workers N``).
    node: str | None = None


# -- helpers -----------------------------------------------------------------------------------


async def _user_json(request: web.Request, identity: Identity) -> dict[str, Any]:
    if identity.subject.startswith("token:"):
        return {
            "id": identity.subject.removeprefix("token:"),
            "username": None,
            "name": identity.name,
            "role": identity.role.value,
        }
    user = await request.app[AUTH_KEY].get_user(identity.subject)
    if user is None:
        raise Unauthorized("the account no longer exists")
    return user.to_json()


def _join_link_json(request: web.Request, case: Case) -> dict[str, Any]:
    link = request.app[AUTH_KEY].issue_join_token(case.id)
    base = request.app[SETTINGS_KEY].base_url
    return {
        "join_url": f"{base}/join/{link.token}",
        "join_token": link.token,
        "join_expires_at": iso_time(link.expires_at),
        "_expires": link.expires_at,
    }


# -- handlers ----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginBody)
    auth = request.app[AUTH_KEY]
    failures = request.app[RATE_LIMITS_KEY].logins.bucket(
        f"{request.remote or '-'}|{body.username.casefold()}"
    )
    if failures.retry_after() > 0:
        return _too_many(failures.retry_after(), "too many failed logins: try again later")
    try:
        user = await auth.login(body.username, body.password)
    except DomainError:
        failures.take()
        raise
    response = json_response({"user": user.to_json()})
    auth.set_session_cookie(response, user)
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    request.app[AUTH_KEY].clear_session_cookie(response)
    return response


async def me(request: web.Request) -> web.Response:
    identity = await require(request)
    return json_response({"user": await _user_json(request, identity)})


async def create_case(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    body = await read_body(request, NewCaseBody)
    cases = request.app[CASES_KEY]
    fields = body.model_dump()
    for name in ("shipped_at", "delivered_at"):
        fields[name] = fields[name].timestamp() if fields[name] is not None else None
    case = await cases.create(NewCase(**fields), actor=identity.subject)
    link = _join_link_json(request, case)
    await cases.note_join_link(case.id, actor=identity.subject, expires_at=link.pop("_expires"))
    return json_response({"case": case.to_json(), **link}, status=201)


async def list_cases(request: web.Request) -> web.Response:
    await require(request)
    try:
        query = CaseListQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None
    cases = await request.app[CASES_KEY].list_cases(
        query.state, limit=query.limit, offset=query.offset
    )
    return json_response({"cases": [case.to_json() for case in cases]})


async def get_case(request: web.Request) -> web.Response:
    await require(request)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    events = await cases.events(case.id)
    auth = request.app[AUTH_KEY]
    names = _ActorNames(auth, case)
    body = case.to_json()
    body["agent_name"] = names.name(case.agent_id) if case.agent_id else None
    body["claim_deadlines"] = _claim_deadlines(case)
    return json_response(
        {
            "case": body,
            "events": [
                {**event.to_json(), "actor_name": names.for_event(event)} for event in events
            ],
        }
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

    def __init__(self, auth: Auth, case: Case) -> None:
        self._auth = auth
        self._case = case

    def name(self, actor: str) -> str:
        if actor.startswith("customer:"):
            return f"{self._case.customer_name} (customer)"
        if actor.startswith("token:"):
            token = self._auth.cached_token(actor.removeprefix("token:"))
            return f"{token.name} (API)" if token is not None else "API token"
        user = self._auth.cached_user(actor)
        return user.name if user is not None else actor

    def for_event(self, event: CaseEvent) -> str:
        sender = event.data.get("sender") if event.type == CaseEventType.CHAT else None
        if isinstance(sender, dict) and sender.get("name"):
            return str(sender["name"])
        return self.name(event.actor)


async def new_join_link(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    link = _join_link_json(request, case)
    await cases.note_join_link(case.id, actor=identity.subject, expires_at=link.pop("_expires"))
    return json_response(link, status=201)


async def accept_case(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
    await request.app[CALL_CONTROL_KEY].accept_case(case.id, identity)
    case = await cases.require(case.id)
    return json_response({"case": case.to_json()})


async def decide_case(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    cases = request.app[CASES_KEY]
    case = await cases.require(case_id_of(request))
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
    return json_response({"case": case.to_json()})


async def close_case(request: web.Request) -> web.Response:
    identity = await require(request, CALL_TAKERS)
    case = await request.app[CASES_KEY].close(case_id_of(request), actor=identity.subject)
    return json_response({"case": case.to_json()})


async def create_user(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    body = await read_body(request, NewUserBody)
    user = await request.app[AUTH_KEY].create_user(
        body.username, body.password, body.name, Role(body.role)
    )
    return json_response({"user": user.to_json()}, status=201)


async def create_token(request: web.Request) -> web.Response:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewTokenBody)
    issued = await request.app[AUTH_KEY].create_api_token(
        body.name, Role(body.role), created_by=identity.subject
    )
    return json_response({"token": issued.token, "id": issued.id}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    if not await request.app[AUTH_KEY].revoke_api_token(request.match_info["id"]):
        raise NotFound("no such API token")
    return web.Response(status=204)


async def list_webhooks(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    hooks = await request.app[WEBHOOKS_KEY].list_webhooks()
    return json_response({"webhooks": [hook.to_json() for hook in hooks]})


async def create_webhook(request: web.Request) -> web.Response:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewWebhookBody)
    hook, secret = await request.app[WEBHOOKS_KEY].add_webhook(
        str(body.url), body.secret, created_by=identity.subject
    )
    return json_response({"webhook": hook.to_json(), "secret": secret}, status=201)


async def delete_webhook(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    if not await request.app[WEBHOOKS_KEY].remove_webhook(request.match_info["id"]):
        raise NotFound("no such webhook")
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    ok = await request.app[DB_KEY].ping()
    body: dict[str, str | None] = {
        "status": "ok" if ok else "degraded",
        "db": "ok" if ok else "error",
        "node": request.app.get(NODE_KEY),
    }
    return json_response({**body, "version": API_VERSION}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    text = await request.app[METRICS_KEY].render()
    return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})


_E401 = (401,)
_CASE_ERRORS = (400, 401, 403, 404, 409, 413, 415)


def api_routes() -> list[ApiRoute]:
    """Every endpoint of the REST API (the OpenAPI route itself is added by ``setup_api``)."""
    R = ApiRoute
    return [
        R("POST", "/api/login", login, "Sign in; sets the session cookie", "anyone",
          body=(LoginBody,), response=UserResponse, errors=(400, 401, 413, 415), tag="auth"),
        R("POST", "/api/logout", logout, "Sign out; clears the session cookie", "staff",
          status=204, tag="auth"),
        R("GET", "/api/me", me, "The signed-in user", "staff", response=UserResponse,
          errors=_E401, tag="auth"),
        R("POST", "/api/cases", create_case, "Create a case and a customer join link",
          "agent, admin, API", body=(NewCaseBody,), response=CaseCreatedResponse, status=201,
          errors=(400, 401, 403, 413, 415), tag="cases"),
        R("GET", "/api/cases", list_cases, "Cases, newest first", "staff",
          query=CaseListQuery, response=CaseListResponse, errors=(400, 401), tag="cases"),
        R("GET", "/api/cases/{id}", get_case, "A case and its timeline", "staff",
          response=CaseDetailResponse, errors=(401, 404), tag="cases"),
        R("POST", "/api/cases/{id}/join-link", new_join_link, "A fresh customer join link",
          "agent, admin, API", response=JoinLinkResponse, status=201,
          errors=(401, 403, 404, 409), tag="cases"),
        R("POST", "/api/cases/{id}/accept", accept_case, "Take a waiting case (one agent wins)",
          "agent, admin", response=CaseResponse, errors=(401, 403, 404, 409), tag="cases"),
        R("POST", "/api/cases/{id}/decision", decide_case,
          "Record the decision (return) or outcome (support)", "agent, admin",
          body=(ReturnDecisionBody, SupportDecisionBody), response=CaseResponse,
          errors=_CASE_ERRORS, tag="cases"),
        R("POST", "/api/cases/{id}/close", close_case, "Close a decided case", "agent, admin",
          response=CaseResponse, errors=(401, 403, 404, 409), tag="cases"),
        R("POST", "/api/users", create_user, "Create a staff account", "admin",
          body=(NewUserBody,), response=UserResponse, status=201,
          errors=(400, 401, 403, 409, 413, 415), tag="admin"),
        R("POST", "/api/tokens", create_token, "Create an API token (shown once)", "admin",
          body=(NewTokenBody,), response=TokenCreatedResponse, status=201,
          errors=(400, 401, 403, 413, 415), tag="admin"),
        R("DELETE", "/api/tokens/{id}", revoke_token, "Revoke an API token", "admin",
          status=204, errors=(401, 403, 404), tag="admin"),
        R("GET", "/api/webhooks", list_webhooks, "Configured webhook targets", "admin",
          response=WebhookListResponse, errors=(401, 403), tag="admin"),
        R("POST", "/api/webhooks", create_webhook,
          "Add a webhook target (its secret is shown once)", "admin", body=(NewWebhookBody,),
          response=WebhookCreatedResponse, status=201, errors=(400, 401, 403, 413, 415),
          tag="admin"),
        R("DELETE", "/api/webhooks/{id}", delete_webhook,
          "Remove a webhook target (cancels its pending deliveries)", "admin", status=204,
          errors=(401, 403, 404), tag="admin"),
        R("GET", "/healthz", healthz, "Health (database included)", "anyone",
          response=HealthResponse, tag="operations"),
        R("GET", "/metrics", metrics, "Prometheus metrics", "anyone",
          content_type="text/plain", tag="operations"),
    ]  # fmt: skip


class RateLimits:
    """The API's buckets: per credential for every request, per address and username for
    failed logins."""

    def __init__(self, settings: Settings) -> None:
        self.requests = RateLimiter(RateLimit(settings.api_rate_per_s, settings.api_burst))
        per_min = settings.login_failures_per_min
        self.logins = RateLimiter(RateLimit(per_min / 60.0, per_min))

    @staticmethod
    def key(request: web.Request) -> str:
        """Who is asking: a digest of the bearer token or session cookie, else the address."""
        header = request.headers.get("Authorization", "")
        credential = header[7:].strip() if header[:7].lower() == "bearer " else ""
        credential = credential or request.cookies.get(SESSION_COOKIE, "")
        if credential:
            return "c:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
        return f"a:{request.remote or '-'}"


RATE_LIMITS_KEY: web.AppKey[RateLimits] = web.AppKey("inspect_rate_limits")


def _too_many(retry_after: float, message: str) -> web.Response:
    response = error_response(429, DomainErrorCode.RATE_LIMITED.value, message)
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """429 past a credential's request rate on /api (health and metrics are not limited)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    limits = request.app[RATE_LIMITS_KEY]
    bucket = limits.requests.bucket(RateLimits.key(request))
    if not bucket.take():
        return _too_many(bucket.retry_after(), "too many requests: slow down")
    return await handler(request)


# -- wiring ------------------------------------------------------------------------------------


def setup_api(
    app: web.Application,
    *,
    settings: Settings,
    db: Database,
    cases: CaseService,
    auth: Auth,
    webhooks: WebhookDispatcher,
    metrics: Metrics,
    calls: CallControl | None = None,
    grading: GradingView | None = None,
    extra_routes: Sequence[ApiRoute] = (),
) -> None:
    """Register the REST routes, ``/healthz``, ``/metrics``, ``/api/openapi.json`` and the
    error middleware, and put the objects under their ``server.keys`` AppKeys. Call before the
    app starts. Without ``calls``, accepting goes straight to the case service."""
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[CASES_KEY] = cases
    app[AUTH_KEY] = auth
    app[WEBHOOKS_KEY] = webhooks
    app[METRICS_KEY] = metrics
    app[CALL_CONTROL_KEY] = calls if calls is not None else DirectCallControl(cases)
    app[GRADING_VIEW_KEY] = grading if grading is not None else NoGrading()
    app[RATE_LIMITS_KEY] = RateLimits(settings)
    metrics.set_case_counts(cases.counts_by_state)
    app.middlewares.append(error_middleware)
    app.middlewares.append(rate_limit_middleware)

    routes = [*api_routes(), *extra_routes]
    document: dict[str, Any] | None = None

    async def openapi_json(request: web.Request) -> web.Response:
        nonlocal document
        if document is None:
            document = openapi_document(
                [*routes, openapi_route],
                title="inspectd API",
                version=API_VERSION,
                server_url=settings.base_url,
            )
        return json_response(document)

    openapi_route = ApiRoute(
        "GET", "/api/openapi.json", openapi_json, "This OpenAPI 3.1 document", "anyone",
        tag="operations",
    )  # fmt: skip
    for route in [*routes, openapi_route]:
        app.router.add_route(route.method, route.path, route.handler)


@dataclass(frozen=True, slots=True)
class Services:
    """The storage-backed objects of one app, opened together (see :func:`open_services`)."""

    db: Database
    auth: Auth
    cases: CaseService
    webhooks: WebhookDispatcher
    metrics: Metrics
    sites: SiteService

    async def aclose(self) -> None:
        await self.webhooks.aclose()
        await self.db.aclose()


async def open_services(
    settings: Settings, *, metrics: Metrics | None = None, start_webhooks: bool = True
) -> Services:
    """Open the database under ``settings.data_dir``, load the secret key and the auth cache,
    and start the webhook dispatcher."""
    db = await Database.open(settings.data_dir / "inspect.db")
    try:
        secret = await asyncio.get_running_loop().run_in_executor(None, load_secret_key, settings)
        metrics = metrics or Metrics()
        auth = Auth(db, settings, secret)
        await auth.load()
        webhooks = WebhookDispatcher(db, settings, metrics=metrics)
        cases = CaseService(db, sink=webhooks)
        sites = SiteService(db, secret)
        if start_webhooks:
            await webhooks.start()
    except BaseException:
        await db.aclose()
        raise
    return Services(db=db, auth=auth, cases=cases, webhooks=webhooks, metrics=metrics, sites=sites)
