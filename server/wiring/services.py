"""The storage-backed services of one process, opened together: the database and its stores
(``server.wiring.storage``), accounts, cases with their webhook outbox, sites, returns and
analytics."""

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
from server.storage.database import DatabaseHandle

from .storage import Stores, open_stores

__all__ = ["Services", "open_services"]


@dataclass(frozen=True, slots=True)
class Services:
    """The storage-backed objects of one app, opened together (see :func:`open_services`)."""

    #: The database every store is on (SQLite under the data directory, or PostgreSQL).
    db: DatabaseHandle
    stores: Stores
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
    """Open the database (``settings.database_url``, else SQLite under ``settings.data_dir``),
    load the secret key and the auth cache, and start the webhook dispatcher."""
    stores = await open_stores(settings)
    db = stores.database
    try:
        secret = await asyncio.get_running_loop().run_in_executor(
            None, load_secret_key, SecretKeyConfig(settings.data_dir, settings.secret_key)
        )
        metrics = metrics or Metrics()
        accounts = AccountService(
            stores.accounts,
            secret,
            config=AccountConfig(
                session_ttl_s=settings.session_ttl_s, join_token_ttl_s=settings.join_token_ttl_s
            ),
        )
        await accounts.load()
        # Webhook and RTSP targets reach public hosts only (and INSPECT_OUTBOUND_ALLOW's).
        guard = OutboundGuard(settings.outbound_allow)
        webhooks = WebhookDispatcher(
            stores.webhooks,
            WebhookConfig(
                secret=settings.webhook_secret, max_attempts=settings.webhook_max_attempts
            ),
            metrics=metrics,
            guard=guard,
        )
        cases = CaseService(stores.cases, sink=webhooks)
        sites = SiteService(stores.sites, secret, guard=guard)
        returns = ReturnsService(cases, stores.rules)
        analytics = AnalyticsService(stores.analytics, sink=webhooks)
        cases.add_listener(returns.case_changed)
        if start_webhooks:
            await webhooks.start()
    except BaseException:
        await db.aclose()
        raise
    return Services(
        db=db,
        stores=stores,
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
