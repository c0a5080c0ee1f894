"""The storage-backed services of one process, opened together: the database, accounts, cases
with their webhook outbox, and sites."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from server.accounts import AccountConfig, AccountService, SecretKeyConfig, load_secret_key
from server.cases import CaseService, WebhookConfig, WebhookDispatcher
from server.http.auth import RequestAuth
from server.metrics import Metrics
from server.outbound import OutboundGuard
from server.returns import ReturnsService
from server.returns.analytics import AnalyticsService
from server.settings import Settings
from server.sites import SiteService
from server.storage.sqlite import (
    Database,
    SqliteAccountStore,
    SqliteCaseStore,
    SqliteRulesStore,
    SqliteSiteStore,
    SqliteWebhookStore,
)
from server.storage.sqlite.analytics import SqliteAnalyticsStore

__all__ = ["Services", "open_services"]


@dataclass(frozen=True, slots=True)
class Services:
    """The storage-backed objects of one app, opened together (see :func:`open_services`)."""

    db: Database
    accounts: AccountService
    #: The request-facing half of accounts (credentials of a request, the session cookie).
    auth: RequestAuth
    cases: CaseService
    webhooks: WebhookDispatcher
    metrics: Metrics
    sites: SiteService
    #: What outbound connections (webhooks, RTSP pulls) may reach.
    guard: OutboundGuard
    #: Intake, verified reasons and the return rules, listening to ``cases``.
    returns: ReturnsService
    #: Returns analytics over the cases and the sales uploaded, and its alerts.
    analytics: AnalyticsService

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
        secret = await asyncio.get_running_loop().run_in_executor(
            None, load_secret_key, SecretKeyConfig(settings.data_dir, settings.secret_key)
        )
        metrics = metrics or Metrics()
        accounts = AccountService(
            SqliteAccountStore(db),
            secret,
            config=AccountConfig(
                session_ttl_s=settings.session_ttl_s, join_token_ttl_s=settings.join_token_ttl_s
            ),
        )
        await accounts.load()
        # Webhook and RTSP targets reach public hosts only (and INSPECT_OUTBOUND_ALLOW's).
        guard = OutboundGuard(settings.outbound_allow)
        webhooks = WebhookDispatcher(
            SqliteWebhookStore(db),
            WebhookConfig(
                secret=settings.webhook_secret, max_attempts=settings.webhook_max_attempts
            ),
            metrics=metrics,
            guard=guard,
        )
        cases = CaseService(SqliteCaseStore(db, webhook_urls=settings.webhook_urls), sink=webhooks)
        sites = SiteService(SqliteSiteStore(db), secret, guard=guard)
        returns = ReturnsService(cases, SqliteRulesStore(db))
        analytics = AnalyticsService(
            SqliteAnalyticsStore(db, webhook_urls=settings.webhook_urls), sink=webhooks
        )
        cases.add_listener(returns.case_changed)
        if start_webhooks:
            await webhooks.start()
    except BaseException:
        await db.aclose()
        raise
    return Services(
        db=db,
        accounts=accounts,
        auth=RequestAuth(accounts, public_url=settings.base_url),
        cases=cases,
        webhooks=webhooks,
        metrics=metrics,
        sites=sites,
        guard=guard,
        returns=returns,
        analytics=analytics,
    )
