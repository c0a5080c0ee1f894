"""The stores of one process, on the backend the settings name: SQLite files under the data
directory (the embedded default), or PostgreSQL (``INSPECT_DATABASE_URL``) shared by every
node. The domains see the Protocols of ``server.storage`` only."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from evidence import EvidenceArchive
from server.settings import Settings
from server.storage.accounts import AccountStore
from server.storage.analytics import AnalyticsStore
from server.storage.cases import CaseStore
from server.storage.database import DatabaseHandle
from server.storage.returns import RulesStore
from server.storage.sites import SiteStore
from server.storage.webhooks import WebhookStore

__all__ = ["Stores", "open_archive", "open_database", "open_stores"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stores:
    """Every domain's store, on one database."""

    database: DatabaseHandle
    accounts: AccountStore
    cases: CaseStore
    webhooks: WebhookStore
    sites: SiteStore
    rules: RulesStore
    analytics: AnalyticsStore


async def open_database(settings: Settings) -> DatabaseHandle:
    """Open (creating or migrating its schema; refusing one newer than this code with
    :class:`~server.storage.database.SchemaTooNew`) the database the settings name."""
    if settings.database_url:
        from server.storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(
            settings.database_url, schema=settings.database_schema or None
        )
    from server.storage.sqlite import Database

    return await Database.open(settings.data_dir / "inspect.db")


async def open_stores(settings: Settings) -> Stores:
    """Open the database and make each domain's store on it."""
    database = await open_database(settings)
    urls = settings.webhook_urls
    if settings.database_url:
        from server.storage import postgres as pg

        assert isinstance(database, pg.PostgresDatabase)
        await _warn_if_left_behind(settings, database)
        return Stores(
            database=database,
            accounts=pg.PostgresAccountStore(database),
            cases=pg.PostgresCaseStore(database, webhook_urls=urls),
            webhooks=pg.PostgresWebhookStore(database),
            sites=pg.PostgresSiteStore(database),
            rules=pg.PostgresRulesStore(database),
            analytics=pg.PostgresAnalyticsStore(database, webhook_urls=urls),
        )
    from server.storage import sqlite as lite
    from server.storage.sqlite.analytics import SqliteAnalyticsStore

    assert isinstance(database, lite.Database)
    return Stores(
        database=database,
        accounts=lite.SqliteAccountStore(database),
        cases=lite.SqliteCaseStore(database, webhook_urls=urls),
        webhooks=lite.SqliteWebhookStore(database),
        sites=lite.SqliteSiteStore(database),
        rules=lite.SqliteRulesStore(database),
        analytics=SqliteAnalyticsStore(database, webhook_urls=urls),
    )


async def open_archive(settings: Settings) -> EvidenceArchive:
    """The evidence archive: its media under ``data_dir/evidence`` (a volume every node
    mounts), its index, log and stamps in the database the settings name."""
    directory = settings.data_dir / "evidence"
    if not settings.database_url:
        return await EvidenceArchive.open(directory)
    return await EvidenceArchive.open(
        directory,
        database_url=settings.database_url,
        schema=settings.database_schema or None,
    )


async def _warn_if_left_behind(settings: Settings, database: DatabaseHandle) -> None:
    """An install moved to PostgreSQL without its records (``inspectd migrate-data`` not run)
    would start empty while the SQLite file holds them: say so, loudly, at every start."""
    from server.storage.postgres import PostgresDatabase

    embedded = settings.data_dir / "inspect.db"
    assert isinstance(database, PostgresDatabase)
    if not await asyncio.to_thread(embedded.exists):
        return
    if await database.fetchval("SELECT EXISTS (SELECT 1 FROM cases)"):
        return
    logger.warning(
        "%s holds an embedded install's records, and PostgreSQL has no cases: to bring them"
        " over, stop the nodes and run inspectd migrate-data --from %s --to <the database URL>",
        embedded,
        embedded,
    )
