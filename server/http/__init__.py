"""The HTTP edge: REST routes (one module per resource), the one error middleware, rate limits,
the OpenAPI document, and every AppKey, set in one place by :func:`setup_http`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from evidence import ContentCredentials, EvidenceArchive
from server.accounts import AccountService
from server.capture import CaptureService, InspectionService, UploadStore
from server.capture.redaction import RedactionService
from server.cases import CaseService, WebhookDispatcher
from server.http import (
    accounts,
    analytics,
    captions,
    cases,
    evidence,
    grading,
    inspection,
    ops,
    returns,
    sites,
    webhooks,
)
from server.http.auth import RequestAuth
from server.http.capture import CAMERA_CAPTURES, CASE_CAPTURES, capture_routes
from server.http.errors import HttpError, error_middleware
from server.http.headers import security_headers
from server.http.keys import (
    ACCOUNTS_KEY,
    ANALYTICS_KEY,
    AUTH_KEY,
    CALL_CONTROL_KEY,
    CAMERA_SESSIONS_KEY,
    CAPTIONS_KEY,
    CAPTURES_KEY,
    CASES_KEY,
    CREDENTIALS_KEY,
    DB_KEY,
    EVIDENCE_KEY,
    GRADING_VIEW_KEY,
    INSPECTION_KEY,
    METRICS_KEY,
    NODE_KEY,
    PRESENCE_KEY,
    RATE_LIMITS_KEY,
    REDACTION_KEY,
    RETURNS_KEY,
    SETTINGS_KEY,
    SITES_KEY,
    UPLOADS_KEY,
    WEBHOOKS_KEY,
)
from server.http.openapi import ApiRoute, bind, openapi_document
from server.http.origin import allowed_origins, origin_middleware
from server.http.ports import (
    CallControl,
    CameraSessions,
    CaptionSwitch,
    DirectCallControl,
    GradingView,
    NoCaptions,
    NoGrading,
)
from server.http.ratelimit import RateLimits, rate_limit_middleware
from server.http.sites import camera_json
from server.metrics import Metrics
from server.returns import ReturnsService
from server.returns.analytics import AnalyticsService
from server.settings import Settings
from server.sites import CameraPresence, SiteService
from server.storage.database import DatabaseHandle

__all__ = [
    "API_VERSION",
    "ApiRoute",
    "CallControl",
    "CameraSessions",
    "CaptionSwitch",
    "DirectCallControl",
    "Edge",
    "GradingView",
    "HttpError",
    "NoGrading",
    "allowed_origins",
    "api_routes",
    "camera_json",
    "setup_http",
]

API_VERSION = ops.API_VERSION


def api_routes() -> list[ApiRoute]:
    """Every documented endpoint (the OpenAPI route itself is added by :func:`setup_http`)."""
    return [
        *accounts.routes(),
        *cases.routes(),
        *webhooks.routes(),
        *grading.routes(),
        *capture_routes(CASE_CAPTURES),
        *inspection.routes(),
        *captions.routes(),
        *returns.routes(),
        *analytics.routes(),
        *evidence.routes(),
        *sites.routes(),
        *capture_routes(CAMERA_CAPTURES),
        *ops.routes(),
    ]


@dataclass(slots=True)
class Edge:
    """What the routes reach: each field is put under its AppKey. The optional ones are for
    apps that serve only part of the API (tests of the REST routes alone)."""

    settings: Settings
    db: DatabaseHandle
    cases: CaseService
    accounts: AccountService
    auth: RequestAuth
    webhooks: WebhookDispatcher
    metrics: Metrics
    #: Intake, verified reasons and the return rules (on the cases above).
    returns: ReturnsService
    calls: CallControl | None = None
    grading: GradingView | None = None
    evidence: EvidenceArchive | None = None
    captures: CaptureService | None = None
    inspection: InspectionService | None = None
    uploads: UploadStore | None = None
    sites: SiteService | None = None
    presence: CameraPresence | None = None
    camera_sessions: CameraSessions | None = None
    captions: CaptionSwitch | None = None
    redaction: RedactionService | None = None
    analytics: AnalyticsService | None = None
    #: Content credentials for exported copies (none: bundles carry no C2PA copies).
    credentials: ContentCredentials | None = None
    node_id: str | None = None


def setup_http(
    app: web.Application, edge: Edge, *, routes: Sequence[ApiRoute] | None = None
) -> None:
    """Set every AppKey, the middlewares, the REST routes and ``/api/openapi.json``. Call
    before the app starts."""
    settings = edge.settings
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = edge.db
    app[CASES_KEY] = edge.cases
    app[ACCOUNTS_KEY] = edge.accounts
    app[AUTH_KEY] = edge.auth
    app[WEBHOOKS_KEY] = edge.webhooks
    app[METRICS_KEY] = edge.metrics
    app[CALL_CONTROL_KEY] = edge.calls if edge.calls is not None else DirectCallControl(edge.cases)
    app[GRADING_VIEW_KEY] = edge.grading if edge.grading is not None else NoGrading()
    app[RATE_LIMITS_KEY] = RateLimits(
        rate_per_s=settings.api_rate_per_s,
        burst=settings.api_burst,
        login_failures_per_min=settings.login_failures_per_min,
    )
    if edge.evidence is not None:
        app[EVIDENCE_KEY] = edge.evidence
    if edge.captures is not None:
        app[CAPTURES_KEY] = edge.captures
    if edge.inspection is not None:
        app[INSPECTION_KEY] = edge.inspection
    if edge.uploads is not None:
        app[UPLOADS_KEY] = edge.uploads
    if edge.redaction is not None:
        app[REDACTION_KEY] = edge.redaction
    if edge.analytics is not None:
        app[ANALYTICS_KEY] = edge.analytics
    if edge.credentials is not None:
        app[CREDENTIALS_KEY] = edge.credentials
    if edge.sites is not None:
        app[SITES_KEY] = edge.sites
    if edge.presence is not None:
        app[PRESENCE_KEY] = edge.presence
    if edge.camera_sessions is not None:
        app[CAMERA_SESSIONS_KEY] = edge.camera_sessions
    app[CAPTIONS_KEY] = edge.captions if edge.captions is not None else NoCaptions()
    app[RETURNS_KEY] = edge.returns
    if edge.node_id is not None:
        app[NODE_KEY] = edge.node_id
    edge.metrics.set_case_counts(edge.cases.counts_by_state)
    app.middlewares.append(error_middleware)
    app.middlewares.append(origin_middleware(allowed_origins(settings)))
    app.middlewares.append(
        rate_limit_middleware(
            app[RATE_LIMITS_KEY], auth=edge.auth, trusted_proxies=settings.trusted_proxies
        )
    )
    app.on_response_prepare.append(security_headers(settings))

    table = list(routes) if routes is not None else api_routes()
    document: dict[str, Any] | None = None

    async def openapi_json(request: web.Request) -> web.Response:
        nonlocal document
        if document is None:
            document = openapi_document(
                [*table, openapi_route],
                title="inspectd API",
                version=API_VERSION,
                server_url=settings.base_url,
            )
        return web.json_response(document)

    openapi_route = ApiRoute(
        "GET", "/api/openapi.json", openapi_json, "This OpenAPI 3.1 document", "anyone",
        tag="operations",
    )  # fmt: skip
    for route in [*table, openapi_route]:
        app.router.add_route(route.method, route.path, bind(route))
