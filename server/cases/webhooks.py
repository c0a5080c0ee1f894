"""Outbound webhooks: a persisted outbox, delivered in order per case and target, with retries.

A case change enqueues one outbox row per target in the case's own transaction (the
:class:`~server.storage.cases.CaseStore` writes them); the dispatcher POSTs them. A restart
resumes whatever is still pending (delivery is at least once: receivers dedupe on
``X-Inspect-Delivery``).

Ordering: for one (target, case) only the oldest pending row is ever in flight, so a failing
delivery holds back the later ones of that case at that target, and nothing else. A row that
used up ``WebhookConfig.max_attempts`` is marked failed and the next one goes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from server.errors import InvalidRequest
from server.outbound import AddressRefused, GuardedResolver, OutboundGuard
from server.storage.webhooks import WebhookStore

from .outbox import Delivery, Webhook

__all__ = ["DeliveryMetrics", "WebhookConfig", "WebhookDispatcher", "sign"]

logger = logging.getLogger(__name__)

USER_AGENT = "inspectd-webhooks/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """How the dispatcher delivers. ``secret`` signs the deliveries to the targets from the
    configuration (admin-configured targets have their own); an empty one leaves them
    unsigned. A delivery is retried after ``base_delay_s``, doubling up to ``max_delay_s``,
    until ``max_attempts`` tries have failed."""

    secret: str = ""
    max_attempts: int = 8
    base_delay_s: float = 2.0
    max_delay_s: float = 600.0
    request_timeout_s: float = 10.0
    concurrency: int = 8
    #: How long a claimed delivery is this process's to send (then another may take it): well
    #: past an attempt's longest (the request timeout), so two never send one attempt.
    lease_s: float = 60.0
    #: The longest the dispatcher sleeps without looking at the outbox: deliveries that
    #: another process enqueued and could not send (it stopped) are taken over within this.
    #: ``None``: only when woken (one process alone on its outbox).
    poll_s: float | None = 30.0
    #: Finished deliveries older than this are forgotten at start.
    keep_finished_s: float = 7 * 86400

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_s <= self.request_timeout_s:
            raise ValueError("lease_s must be longer than request_timeout_s")


class DeliveryMetrics(Protocol):
    """Counts delivery outcomes (``server.metrics.Metrics`` fits)."""

    def webhook_delivery(self, outcome: str) -> None:
        """``delivered``, ``retry`` or ``failed``."""
        ...


class WebhookDispatcher:
    """Delivers the outbox. ``start()`` / idempotent ``aclose()``; fits ``cases.CaseEventSink``.

    Every target is held to ``guard`` (:class:`~server.outbound.OutboundGuard`; by default one
    that allows public addresses only): when it is added, and before each delivery, whose
    connection goes to the address the guard checked. ``clock``, ``sleep`` and ``rng`` are
    injectable so tests can run retries without waiting.
    """

    def __init__(
        self,
        store: WebhookStore,
        config: WebhookConfig | None = None,
        *,
        metrics: DeliveryMetrics | None = None,
        guard: OutboundGuard | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._config = config if config is not None else WebhookConfig()
        self._metrics = metrics
        self._guard = guard if guard is not None else OutboundGuard()
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._timeout = aiohttp.ClientTimeout(total=self._config.request_timeout_s)
        self._limit = asyncio.Semaphore(self._config.concurrency)
        self._wake = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[tuple[str | None, str, str], asyncio.Task[None]] = {}
        #: Row ids of the deliveries being sent (leased to this process).
        self._held: set[int] = set()
        self._closed = False

    # -- admin-configured targets --------------------------------------------------------------

    async def add_webhook(
        self, url: str, secret: str | None = None, *, created_by: str | None = None
    ) -> tuple[Webhook, str]:
        """A new target; returns it and its secret (generated if not given; shown once).

        Raises :class:`InvalidRequest` for a URL whose host the guard refuses (a literal
        internal address, ``localhost``); names are checked at each delivery."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not host:
            raise InvalidRequest("url: expected an http(s) URL with a host", fields=("url",))
        try:
            self._guard.check_host(host)
        except AddressRefused as exc:
            raise InvalidRequest(f"url: {exc.reason}", fields=("url",)) from None
        secret = secret or "whsec_" + secrets.token_urlsafe(24)
        hook = Webhook(id="wh_" + secrets.token_hex(6), url=url, created_at=self._clock())
        await self._store.add_target(hook, secret, created_by=created_by)
        logger.info("webhook added", extra={"webhook_id": hook.id})
        return hook, secret

    async def list_webhooks(self) -> list[Webhook]:
        return await self._store.list_targets()

    async def remove_webhook(self, webhook_id: str) -> bool:
        """Delete a target and cancel its pending deliveries."""
        return await self._store.remove_target(webhook_id, at=self._clock())

    # -- the outbox ----------------------------------------------------------------------------

    def notify(self) -> None:
        """New rows may be due (called after the enqueuing transaction committed)."""
        self._wake.set()

    async def pending(self) -> int:
        return await self._store.pending_count()

    async def prune(self, older_than_s: float | None = None) -> int:
        """Forget finished deliveries (delivered, failed, cancelled) older than this (by
        default ``WebhookConfig.keep_finished_s``)."""
        if older_than_s is None:
            older_than_s = self._config.keep_finished_s
        return await self._store.prune(finished_before=self._clock() - older_than_s)

    async def flushed(self) -> None:
        """Return once nothing is pending (delivered, failed for good or cancelled). Bound it
        with a timeout: a target that keeps failing keeps rows pending for a long time."""
        while True:
            self._attempted.clear()
            if not await self.pending():
                return
            await self._attempted.wait()

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after ``attempts`` failures: exponential, capped, with
        jitter in [50%, 100%] so a recovering receiver is not hit by every retry at once."""
        config = self._config
        delay: float = min(config.max_delay_s, config.base_delay_s * 2.0 ** max(0, attempts - 1))
        return delay * (0.5 + 0.5 * self._rng())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        pruned = await self.prune()
        if pruned:
            logger.info("pruned %d finished webhook deliveries", pruned)
        if self._session is None:
            # No DNS cache: each connection resolves once, through the guard, and goes to
            # what the guard checked (a cached answer would skip the check).
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._guard), use_dns_cache=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}
            )
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def aclose(self) -> None:
        """Stop delivering (pending rows stay in the outbox for the next start). Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._held.clear()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    delay = await self._dispatch_due()
                except Exception:
                    logger.exception("webhook dispatch failed; retrying")
                    delay = 1.0
                await self._wait(delay)
        finally:
            logger.debug("webhook dispatcher stopped")

    async def _dispatch_due(self) -> float | None:
        """Claim and start the due head-of-line deliveries this process has room for; the
        delay until the outbox should be looked at again."""
        room = self._config.concurrency - len(self._inflight)
        now = self._clock()
        if room > 0:
            claimed = await self._store.claim_due(now=now, lease_s=self._config.lease_s, limit=room)
            for delivery in claimed:
                task = asyncio.create_task(
                    self._deliver(delivery), name=f"webhook-{delivery.delivery_id}"
                )
                self._inflight[delivery.group] = task
                self._held.add(delivery.row_id)
                task.add_done_callback(
                    functools.partial(self._finished, delivery.group, delivery.row_id)
                )
        if self._inflight and len(self._inflight) >= self._config.concurrency:
            return None  # woken when one finishes
        due = await self._store.next_due(held=self._held)
        poll = self._config.poll_s
        if due is None:
            return poll
        delay = max(due - self._clock(), 0.0)
        return delay if poll is None else min(delay, poll)

    def _finished(
        self, key: tuple[str | None, str, str], row_id: int, _task: asyncio.Task[None]
    ) -> None:
        self._inflight.pop(key, None)
        self._held.discard(row_id)
        self._wake.set()

    async def _wait(self, delay: float | None) -> None:
        waker = asyncio.create_task(self._wake.wait())
        tasks: set[asyncio.Task[Any]] = {waker}
        if delay is not None:
            tasks.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _secret(self, delivery: Delivery) -> str | None:
        """The target's secret; ``None`` if the target is gone."""
        if delivery.webhook_id is None:
            return self._config.secret
        return await self._store.target_secret(delivery.webhook_id)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            async with self._limit:
                await self._attempt(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook delivery crashed", extra={"case_id": delivery.case_id})
        finally:
            self._attempted.set()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """POST one delivery; why it failed, or ``None``. The guard refuses internal targets
        before anything is sent: a literal address here, a name inside the connector's
        resolver (which then connects to the checked address, no second lookup)."""
        assert self._session is not None
        try:
            host = urlsplit(url).hostname
            if not host:
                return "the URL has no host"
            self._guard.check_host(host)
            async with self._session.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                if not 200 <= response.status < 300:
                    return f"HTTP {response.status}"
        except AddressRefused as exc:
            return f"refused: {exc}"[:500]
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return f"refused: {exc.os_error}"[:500]
            return f"{type(exc).__name__}: {exc}"[:500]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        return None

    async def _attempt(self, delivery: Delivery) -> None:
        secret = await self._secret(delivery)
        if secret is None:
            await self._store.cancel(delivery.row_id, at=self._clock())
            return
        body = delivery.body.encode("utf-8")
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Inspect-Event": delivery.event,
            "X-Inspect-Delivery": delivery.delivery_id,
            "X-Inspect-Timestamp": timestamp,
        }
        if secret:
            headers["X-Inspect-Signature"] = sign(secret, timestamp, body)
        error = await self._post(delivery.url, body, headers)
        attempts = delivery.attempts + 1
        now = self._clock()
        if error is None:
            outcome = "delivered"
            await self._store.mark_delivered(delivery.row_id, attempts=attempts, at=now)
        elif attempts >= self._config.max_attempts:
            outcome = "failed"
            logger.warning(
                "webhook delivery failed for good after %d attempts: %s",
                attempts,
                error,
                extra={"case_id": delivery.case_id, "delivery_id": delivery.delivery_id},
            )
            await self._store.mark_failed(delivery.row_id, attempts=attempts, at=now, error=error)
        else:
            outcome = "retry"
            delay = self.backoff(attempts)
            logger.info(
                "webhook delivery attempt %d failed (%s); retrying in %.1f s",
                attempts,
                error,
                delay,
                extra={"case_id": delivery.case_id, "delivery_id": delivery.delivery_id},
            )
            await self._store.retry_later(
                delivery.row_id, attempts=attempts, next_attempt_at=now + delay, error=error
            )
        if self._metrics is not None:
            self._metrics.webhook_delivery(outcome)
