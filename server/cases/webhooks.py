"""Outbound webhooks: a persisted outbox, delivered in order per case and target, with retries.

A case change enqueues one outbox row per target in the case's own transaction
(:meth:`WebhookDispatcher.enqueue`); the dispatcher POSTs them. A restart resumes whatever is
still pending (delivery is at least once: receivers dedupe on ``X-Inspect-Delivery``).

Ordering: for one (target, case) only the oldest pending row is ever in flight, so a failing
delivery holds back the later ones of that case at that target, and nothing else. A row that
used up ``webhook_max_attempts`` is marked failed and the next one goes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import random
import secrets
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from server.settings import Settings
from server.storage.sqlite import Database
from server.timefmt import iso_time

if TYPE_CHECKING:
    from server.metrics import Metrics

__all__ = ["Webhook", "WebhookDispatcher", "sign"]

logger = logging.getLogger(__name__)

USER_AGENT = "inspectd-webhooks/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class Webhook:
    """An admin-configured target (its secret is never shown after creation)."""

    id: str
    url: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "created_at": iso_time(self.created_at)}


@dataclass(frozen=True, slots=True)
class _Delivery:
    row_id: int
    delivery_id: str
    event: str
    case_id: str
    webhook_id: str | None
    url: str
    body: str
    attempts: int
    next_attempt_at: float

    @property
    def group(self) -> tuple[str | None, str, str]:
        return (self.webhook_id, self.url, self.case_id)


_HEADS = """
SELECT o.* FROM webhook_outbox AS o
JOIN (SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
      GROUP BY webhook_id, url, case_id) AS h ON o.id = h.id
ORDER BY o.next_attempt_at, o.id
"""


class WebhookDispatcher:
    """Delivers the outbox. ``start()`` / idempotent ``aclose()``; fits ``cases.CaseEventSink``.

    ``clock``, ``sleep`` and ``rng`` are injectable so tests can run retries without waiting.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        base_delay_s: float = 2.0,
        max_delay_s: float = 600.0,
        request_timeout_s: float = 10.0,
        concurrency: int = 8,
    ) -> None:
        self._db = db
        self._settings = settings
        self._metrics = metrics
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[tuple[str | None, str, str], asyncio.Task[None]] = {}
        self._closed = False

    # -- admin-configured targets --------------------------------------------------------------

    async def add_webhook(
        self, url: str, secret: str | None = None, *, created_by: str | None = None
    ) -> tuple[Webhook, str]:
        """A new target; returns it and its secret (generated if not given; shown once)."""
        secret = secret or "whsec_" + secrets.token_urlsafe(24)
        hook = Webhook(id="wh_" + secrets.token_hex(6), url=url, created_at=self._clock())
        await self._db.execute(
            "INSERT INTO webhooks (id, url, secret, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (hook.id, url, secret, created_by, hook.created_at),
        )
        logger.info("webhook added", extra={"webhook_id": hook.id})
        return hook, secret

    async def list_webhooks(self) -> list[Webhook]:
        rows = await self._db.fetchall(
            "SELECT id, url, created_at FROM webhooks ORDER BY created_at"
        )
        return [Webhook(id=r["id"], url=r["url"], created_at=r["created_at"]) for r in rows]

    async def remove_webhook(self, webhook_id: str) -> bool:
        """Delete a target and cancel its pending deliveries."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount
            conn.execute(
                "UPDATE webhook_outbox SET status = 'cancelled', finished_at = ?"
                " WHERE webhook_id = ? AND status = 'pending'",
                (now, webhook_id),
            )
            return deleted > 0

        return await self._db.transaction(work)

    # -- the outbox ----------------------------------------------------------------------------

    def enqueue(
        self,
        conn: sqlite3.Connection,
        *,
        event: str,
        case_id: str,
        at: float,
        case: Mapping[str, Any],
    ) -> None:
        """One outbox row per target, inside the caller's transaction."""
        targets: list[tuple[str | None, str]] = [(None, url) for url in self._settings.webhook_urls]
        targets += [(row["id"], row["url"]) for row in conn.execute("SELECT id, url FROM webhooks")]
        if not targets:
            return
        event_id = uuid.uuid4().hex
        body = json.dumps(
            {"id": event_id, "event": event, "at": iso_time(at), "case": dict(case)},
            separators=(",", ":"),
        )
        conn.executemany(
            "INSERT INTO webhook_outbox (delivery_id, event_id, event, case_id, webhook_id, url,"
            " body, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (uuid.uuid4().hex, event_id, event, case_id, hook_id, url, body, at, at)
                for hook_id, url in targets
            ],
        )

    def notify(self) -> None:
        """New rows may be due (called after the enqueuing transaction committed)."""
        self._wake.set()

    async def pending(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n FROM webhook_outbox WHERE status = 'pending'"
        )
        return int(row["n"]) if row is not None else 0

    async def prune(self, older_than_s: float = 7 * 86400) -> int:
        """Forget finished deliveries (delivered, failed, cancelled) older than this."""
        return await self._db.execute(
            "DELETE FROM webhook_outbox WHERE status != 'pending' AND finished_at < ?",
            (self._clock() - older_than_s,),
        )

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
        delay: float = min(self._max_delay_s, self._base_delay_s * 2.0 ** max(0, attempts - 1))
        return delay * (0.5 + 0.5 * self._rng())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        pruned = await self.prune()
        if pruned:
            logger.info("pruned %d finished webhook deliveries", pruned)
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
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
        if self._own_session and self._session is not None:
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
        """Start every due head-of-line delivery; the delay until the next one falls due."""
        rows = await self._db.fetchall(_HEADS)
        now = self._clock()
        next_due: float | None = None
        for row in rows:
            delivery = _Delivery(
                row_id=row["id"],
                delivery_id=row["delivery_id"],
                event=row["event"],
                case_id=row["case_id"],
                webhook_id=row["webhook_id"],
                url=row["url"],
                body=row["body"],
                attempts=row["attempts"],
                next_attempt_at=row["next_attempt_at"],
            )
            if delivery.group in self._inflight:
                continue
            if delivery.next_attempt_at <= now:
                task = asyncio.create_task(
                    self._deliver(delivery), name=f"webhook-{delivery.delivery_id}"
                )
                self._inflight[delivery.group] = task
                task.add_done_callback(functools.partial(self._finished, delivery.group))
            else:
                wait = delivery.next_attempt_at - now
                next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    def _finished(self, key: tuple[str | None, str, str], _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
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

    async def _secret(self, delivery: _Delivery) -> str | None:
        """The target's secret; ``None`` if the target is gone."""
        if delivery.webhook_id is None:
            return self._settings.webhook_secret
        row = await self._db.fetchone(
            "SELECT secret FROM webhooks WHERE id = ?", (delivery.webhook_id,)
        )
        return str(row["secret"]) if row is not None else None

    async def _deliver(self, delivery: _Delivery) -> None:
        try:
            async with self._limit:
                await self._attempt(delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook delivery crashed", extra={"case_id": delivery.case_id})
        finally:
            self._attempted.set()

    async def _attempt(self, delivery: _Delivery) -> None:
        secret = await self._secret(delivery)
        if secret is None:
            await self._db.execute(
                "UPDATE webhook_outbox SET status = 'cancelled', finished_at = ? WHERE id = ?",
                (self._clock(), delivery.row_id),
            )
            return
        assert self._session is not None
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
        error: str | None = None
        try:
            async with self._session.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = delivery.attempts + 1
        now = self._clock()
        if error is None:
            outcome = "delivered"
            await self._db.execute(
                "UPDATE webhook_outbox SET status = 'delivered', attempts = ?, finished_at = ?,"
                " last_error = NULL WHERE id = ?",
                (attempts, now, delivery.row_id),
            )
        elif attempts >= self._settings.webhook_max_attempts:
            outcome = "failed"
            logger.warning(
                "webhook delivery failed for good after %d attempts: %s",
                attempts,
                error,
                extra={"case_id": delivery.case_id, "delivery_id": delivery.delivery_id},
            )
            await self._db.execute(
                "UPDATE webhook_outbox SET status = 'failed', attempts = ?, finished_at = ?,"
                " last_error = ? WHERE id = ?",
                (attempts, now, error, delivery.row_id),
            )
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
            await self._db.execute(
                "UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (attempts, now + delay, error, delivery.row_id),
            )
        if self._metrics is not None:
            self._metrics.webhook_delivery(outcome)
