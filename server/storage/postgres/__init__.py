"""The PostgreSQL backend of the storage seam (several nodes on one database): an asyncpg pool
bound to one schema, and a store per domain."""

from __future__ import annotations

from .accounts import PostgresAccountStore
from .analytics import PostgresAnalyticsStore
from .cases import PostgresCaseStore
from .database import BASE_VERSION, SCHEMA_VERSION, PostgresDatabase, SchemaTooNew
from .returns import PostgresRulesStore
from .sites import PostgresSiteStore
from .webhooks import PostgresWebhookStore

__all__ = [
    "BASE_VERSION",
    "SCHEMA_VERSION",
    "PostgresAccountStore",
    "PostgresAnalyticsStore",
    "PostgresCaseStore",
    "PostgresDatabase",
    "PostgresRulesStore",
    "PostgresSiteStore",
    "PostgresWebhookStore",
    "SchemaTooNew",
]
