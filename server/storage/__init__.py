"""The storage seam: what each domain needs of persistence (one Protocol per domain and the
plain records that cross it), and its backends (``server.storage.sqlite``; the backends are
not imported here: they import the domains, which import these Protocols)."""

from __future__ import annotations

from .accounts import (
    AccountStore,
    ApiTokenRecord,
    LastAdminError,
    SessionRecord,
    UserRecord,
    UserUpdate,
)
from .cases import CaseStore
from .sites import (
    CameraRecord,
    CameraTokenRecord,
    CameraUpdate,
    RtspFields,
    SiteEvidenceRecord,
    SiteField,
    SiteRecord,
    SiteStore,
    StationRecord,
)
from .webhooks import WebhookStore

__all__ = [
    "AccountStore",
    "ApiTokenRecord",
    "CameraRecord",
    "CameraTokenRecord",
    "CameraUpdate",
    "CaseStore",
    "LastAdminError",
    "RtspFields",
    "SessionRecord",
    "SiteEvidenceRecord",
    "SiteField",
    "SiteRecord",
    "SiteStore",
    "StationRecord",
    "UserRecord",
    "UserUpdate",
    "WebhookStore",
]
