"""Webhook targets and the outbox on PostgreSQL (tables ``webhooks`` and ``webhook_outbox``).

Several nodes may dispatch from one outbox: :meth:`PostgresWebhookStore.claim_due` leases the
due head-of-line deliveries to one caller (``FOR UPDATE SKIP LOCKED``), so no two nodes send the
same attempt and a (target, case) still has at most one delivery in flight."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

import asyncpg

from server.cases import Delivery, Webhook, WebhookEvent

from .database import Connection, PostgresDatabase, _status_count

__all__ = ["PostgresWebhookStore", "enqueue"]

# The oldest pending row of each (target, url, case): only the head of a queue is ever sent.
_HEADS = """
SELECT o.* FROM webhook_outbox AS o
JOIN (SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
      GROUP BY webhook_id, url, case_id) AS h ON o.id = h.id
ORDER BY o.next_attempt_at, o.id
"""

# The heads that are due and held by nobody, leased to the caller. The conditions are on the
# locked row itself, so PostgreSQL checks them again on its latest version once another
# transaction's lock on it is gone: a row claimed or finished meanwhile is not taken. A head
# is only a head in this statement's snapshot if every older row of its queue is finished
# there, and a finished row never becomes pending again, so the order per queue holds.
_CLAIM = """
WITH heads AS (
    SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
    GROUP BY webhook_id, url, case_id
), picked AS (
    SELECT o.id FROM webhook_outbox AS o JOIN heads AS h ON o.id = h.id
    WHERE o.status = 'pending' AND o.next_attempt_at <= $1
      AND (o.claimed_until IS NULL OR o.claimed_until <= $1)
    ORDER BY o.next_attempt_at, o.id
    LIMIT $3
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE webhook_outbox AS w SET claimed_until = $2 FROM picked WHERE w.id = picked.id
RETURNING w.*
"""

# When the soonest head can be claimed: due, and its lease (if any) run out.
_NEXT_DUE = """
SELECT MIN(GREATEST(o.next_attempt_at, o.claimed_until)) FROM webhook_outbox AS o
JOIN (SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
      GROUP BY webhook_id, url, case_id) AS h ON o.id = h.id
WHERE o.id <> ALL($1::bigint[])
"""


async def enqueue(conn: Connection, event: WebhookEvent, *, urls: Sequence[str]) -> None:
    """One pending outbox row per target (``urls`` from the configuration, then every row of
    ``webhooks``), inside the caller's transaction on ``conn``."""
    targets: list[tuple[str | None, str]] = [(None, url) for url in urls]
    # FOR SHARE: a target being removed waits for this change to commit, and then cancels the
    # rows it added here, rather than leaving them pending for a target that is gone.
    rows = await conn.fetch("SELECT id, url FROM webhooks ORDER BY created_at, id FOR SHARE")
    targets += [(row["id"], row["url"]) for row in rows]
    if not targets:
        return
    await conn.executemany(
        "INSERT INTO webhook_outbox (delivery_id, event_id, event, case_id, webhook_id, url,"
        " body, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                uuid.uuid4().hex,
                event.event_id,
                event.event,
                event.case_id,
                hook_id,
                url,
                event.body,
                event.at,
                event.at,
            )
            for hook_id, url in targets
        ],
    )


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(
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


class PostgresWebhookStore:
    """:class:`~server.storage.webhooks.WebhookStore` on a :class:`PostgresDatabase`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def add_target(self, hook: Webhook, secret: str, *, created_by: str | None) -> None:
        await self._db.execute(
            "INSERT INTO webhooks (id, url, secret, created_by, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            (hook.id, hook.url, secret, created_by, hook.created_at),
        )

    async def list_targets(self) -> list[Webhook]:
        rows = await self._db.fetch("SELECT id, url, created_at FROM webhooks ORDER BY created_at")
        return [Webhook(id=r["id"], url=r["url"], created_at=r["created_at"]) for r in rows]

    async def remove_target(self, webhook_id: str, *, at: float) -> bool:
        async def work(conn: Connection) -> bool:
            deleted = _status_count(
                await conn.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)
            )
            await conn.execute(
                "UPDATE webhook_outbox SET status = 'cancelled', finished_at = $1,"
                " claimed_until = NULL WHERE webhook_id = $2 AND status = 'pending'",
                at,
                webhook_id,
            )
            return deleted > 0

        return await self._db.transaction(work)

    async def target_secret(self, webhook_id: str) -> str | None:
        row = await self._db.fetchrow("SELECT secret FROM webhooks WHERE id = $1", (webhook_id,))
        return str(row["secret"]) if row is not None else None

    async def pending_count(self) -> int:
        count = await self._db.fetchval(
            "SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'"
        )
        return int(count)

    async def pending_heads(self) -> list[Delivery]:
        return [_delivery(row) for row in await self._db.fetch(_HEADS)]

    async def claim_due(self, *, now: float, lease_s: float, limit: int = 100) -> list[Delivery]:
        rows = await self._db.fetch(_CLAIM, (now, now + lease_s, limit))
        deliveries = [_delivery(row) for row in rows]
        deliveries.sort(key=lambda d: (d.next_attempt_at, d.row_id))
        return deliveries

    async def next_due(self, *, held: Collection[int] = ()) -> float | None:
        # GREATEST ignores NULL: an unclaimed head is claimable when it is due.
        value = await self._db.fetchval(_NEXT_DUE, (list(held),))
        return None if value is None else float(value)

    async def mark_delivered(self, row_id: int, *, attempts: int, at: float) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'delivered', attempts = $1, finished_at = $2,"
            " last_error = NULL, claimed_until = NULL WHERE id = $3",
            (attempts, at, row_id),
        )

    async def mark_failed(self, row_id: int, *, attempts: int, at: float, error: str) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'failed', attempts = $1, finished_at = $2,"
            " last_error = $3, claimed_until = NULL WHERE id = $4",
            (attempts, at, error, row_id),
        )

    async def retry_later(
        self, row_id: int, *, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET attempts = $1, next_attempt_at = $2, last_error = $3,"
            " claimed_until = NULL WHERE id = $4",
            (attempts, next_attempt_at, error, row_id),
        )

    async def cancel(self, row_id: int, *, at: float) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'cancelled', finished_at = $1,"
            " claimed_until = NULL WHERE id = $2",
            (at, row_id),
        )

    async def prune(self, *, finished_before: float) -> int:
        return await self._db.execute(
            "DELETE FROM webhook_outbox WHERE status <> 'pending' AND finished_at < $1",
            (finished_before,),
        )
