"""``web.AppKey``s of the server's app-wide objects (set by :func:`server.api.setup_api`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from evidence import EvidenceArchive
    from server.accounts.service import Auth
    from server.capture.service import CaptureService
    from server.cases.service import CaseService
    from server.cases.webhooks import WebhookDispatcher
    from server.http.api import CallControl, GradingView
    from server.http.sites import CameraSessions
    from server.metrics import Metrics
    from server.settings import Settings
    from server.sites.presence import CameraPresence
    from server.sites.service import SiteService
    from server.storage.sqlite import Database

__all__ = [
    "AUTH_KEY",
    "CALL_CONTROL_KEY",
    "CAMERA_SESSIONS_KEY",
    "CAPTURES_KEY",
    "CASES_KEY",
    "DB_KEY",
    "EVIDENCE_KEY",
    "GRADING_VIEW_KEY",
    "METRICS_KEY",
    "NODE_KEY",
    "PRESENCE_KEY",
    "SETTINGS_KEY",
    "SITES_KEY",
    "WEBHOOKS_KEY",
]

SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("inspect_settings")
DB_KEY: web.AppKey[Database] = web.AppKey("inspect_db")
CASES_KEY: web.AppKey[CaseService] = web.AppKey("inspect_cases")
AUTH_KEY: web.AppKey[Auth] = web.AppKey("inspect_auth")
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("inspect_metrics")
WEBHOOKS_KEY: web.AppKey[WebhookDispatcher] = web.AppKey("inspect_webhooks")
CALL_CONTROL_KEY: web.AppKey[CallControl] = web.AppKey("inspect_call_control")
GRADING_VIEW_KEY: web.AppKey[GradingView] = web.AppKey("inspect_grading_view")
EVIDENCE_KEY: web.AppKey[EvidenceArchive] = web.AppKey("inspect_evidence")
CAPTURES_KEY: web.AppKey[CaptureService] = web.AppKey("inspect_captures")
SITES_KEY: web.AppKey[SiteService] = web.AppKey("inspect_sites")
PRESENCE_KEY: web.AppKey[CameraPresence] = web.AppKey("inspect_camera_presence")
CAMERA_SESSIONS_KEY: web.AppKey[CameraSessions] = web.AppKey("inspect_camera_sessions")
#: This process's node id (``/healthz`` reports it: which node of several answered).
NODE_KEY: web.AppKey[str] = web.AppKey("inspect_node", str)
