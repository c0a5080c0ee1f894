"""The SQLite backend of the storage seam (the embedded default): one database file, one
connection on a single-thread executor, and a store per domain."""

from __future__ import annotations

from .accounts import SqliteAccountStore
from .cases import SqliteCaseStore
from .database import SCHEMA_VERSION, Database, SchemaTooNew
from .returns import SqliteRulesStore
from .sites import SqliteSiteStore
from .webhooks import SqliteWebhookStore

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "SchemaTooNew",
    "SqliteAccountStore",
    "SqliteCaseStore",
    "SqliteRulesStore",
    "SqliteSiteStore",
    "SqliteWebhookStore",
]
