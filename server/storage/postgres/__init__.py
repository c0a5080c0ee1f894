"""The PostgreSQL backend of the storage seam (several nodes on one database): an asyncpg pool
bound to one schema, and a store per domain ported so far (cases and webhooks)."""

from __future__ import annotations

from .cases import PostgresCaseStore
from .database import BASE_VERSION, SCHEMA_VERSION, PostgresDatabase, SchemaTooNew
from .webhooks import PostgresWebhookStore

__all__ = [
    "BASE_VERSION",
    "SCHEMA_VERSION",
    "PostgresCaseStore",
    "PostgresDatabase",
    "PostgresWebhookStore",
    "SchemaTooNew",
]
