"""Every ``web.AppKey`` of the edge, in one place; :func:`server.http.setup_http` sets them all."""

from __future__ import annotations

from aiohttp import web

from evidence import ContentCredentials, EvidenceArchive
from server.accounts import AccountService
from server.capture import CaptureService, InspectionService, UploadStore
from server.capture.redaction import RedactionService
from server.cases import CaseService, WebhookDispatcher
from server.http.auth import RequestAuth
from server.http.ports import CallControl, CameraSessions, CaptionSwitch, GradingView
from server.http.ratelimit import RateLimits
from server.metrics import Metrics
from server.returns import ReturnsService
from server.returns.analytics import AnalyticsService
from server.settings import Settings
from server.sites import CameraPresence, SiteService
from server.storage.database import DatabaseHandle

__all__ = [
    "ACCOUNTS_KEY",
    "ANALYTICS_KEY",
    "AUTH_KEY",
    "CALL_CONTROL_KEY",
    "CAMERA_SESSIONS_KEY",
    "CAPTIONS_KEY",
    "CAPTURES_KEY",
    "CASES_KEY",
    "CREDENTIALS_KEY",
    "DB_KEY",
    "EVIDENCE_KEY",
    "GRADING_VIEW_KEY",
    "INSPECTION_KEY",
    "METRICS_KEY",
    "NODE_KEY",
    "PRESENCE_KEY",
    "RATE_LIMITS_KEY",
    "REDACTION_KEY",
    "RETURNS_KEY",
    "SETTINGS_KEY",
    "SITES_KEY",
    "UPLOADS_KEY",
    "WEBHOOKS_KEY",
]

SETTINGS_KEY = web.AppKey("inspect_settings", Settings)
DB_KEY = web.AppKey("inspect_db", DatabaseHandle)
CASES_KEY = web.AppKey("inspect_cases", CaseService)
ACCOUNTS_KEY = web.AppKey("inspect_accounts", AccountService)
#: The request-facing half of accounts: who a request is, the session cookie.
AUTH_KEY = web.AppKey("inspect_auth", RequestAuth)
METRICS_KEY = web.AppKey("inspect_metrics", Metrics)
WEBHOOKS_KEY = web.AppKey("inspect_webhooks", WebhookDispatcher)
CALL_CONTROL_KEY: web.AppKey[CallControl] = web.AppKey("inspect_call_control")
GRADING_VIEW_KEY: web.AppKey[GradingView] = web.AppKey("inspect_grading_view")
EVIDENCE_KEY = web.AppKey("inspect_evidence", EvidenceArchive)
CAPTURES_KEY = web.AppKey("inspect_captures", CaptureService)
#: Live captions of the calls on this node (``server.wiring.captions``).
CAPTIONS_KEY: web.AppKey[CaptionSwitch] = web.AppKey("inspect_captions")
#: Freeze and markup, and the customer's photos (``server.capture.inspection``).
INSPECTION_KEY = web.AppKey("inspect_inspection", InspectionService)
#: Where the customers' photos are spooled while they arrive in pieces.
UPLOADS_KEY = web.AppKey("inspect_uploads", UploadStore)
SITES_KEY = web.AppKey("inspect_sites", SiteService)
#: The C2PA signer of exported copies (an operator's certificate, or the archive's key).
CREDENTIALS_KEY = web.AppKey("inspect_credentials", ContentCredentials)
#: Redacted copies of evidence for sharing (``server.capture.redaction``).
REDACTION_KEY = web.AppKey("inspect_redaction", RedactionService)
#: Returns analytics, sales and alerts (``server.returns.analytics``).
ANALYTICS_KEY = web.AppKey("inspect_analytics", AnalyticsService)
#: Intake, verified reasons and the return rules (``server.returns``).
RETURNS_KEY = web.AppKey("inspect_returns", ReturnsService)
PRESENCE_KEY = web.AppKey("inspect_camera_presence", CameraPresence)
CAMERA_SESSIONS_KEY: web.AppKey[CameraSessions] = web.AppKey("inspect_camera_sessions")
RATE_LIMITS_KEY = web.AppKey("inspect_rate_limits", RateLimits)
#: This process's node id (``/healthz`` reports it: which node of several answered).
NODE_KEY = web.AppKey("inspect_node", str)
