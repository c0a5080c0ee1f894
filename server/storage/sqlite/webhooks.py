"""Webhook targets and the outbox on SQLite (tables ``webhooks`` and ``webhook_outbox``)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Collection, Sequence

from server.cases import Delivery, Webhook, WebhookEvent

from .database import Database

__all__ = ["SqliteWebhookStore", "enqueue"]

# The oldest pending row of each (target, url, case): only the head of a queue is ever sent.
_HEADS = """
SELECT o.* FROM webhook_outbox AS o
JOIN (SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
      GROUP BY webhook_id, url, case_id) AS h ON o.id = h.id
ORDER BY o.next_attempt_at, o.id
"""

# When the soonest head can be claimed: due, and its lease (if any) run out.
_NEXT_DUE = """
SELECT MIN(MAX(o.next_attempt_at, COALESCE(o.claimed_until, o.next_attempt_at)))
FROM webhook_outbox AS o
JOIN (SELECT MIN(id) AS id FROM webhook_outbox WHERE status = 'pending'
      GROUP BY webhook_id, url, case_id) AS h ON o.id = h.id
"""


def enqueue(conn: sqlite3.Connection, event: WebhookEvent, *, urls: Sequence[str]) -> None:
    """One pending outbox row per target (``urls`` from the configuration, then every row of
    ``webhooks``), inside the caller's transaction on ``conn``."""
    targets: list[tuple[str | None, str]] = [(None, url) for url in urls]
    targets += [(row["id"], row["url"]) for row in conn.execute("SELECT id, url FROM webhooks")]
    if not targets:
        return
    conn.executemany(
        "INSERT INTO webhook_outbox (delivery_id, event_id, event, case_id, webhook_id, url,"
        " body, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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


def _delivery(row: sqlite3.Row) -> Delivery:
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


class SqliteWebhookStore:
    """:class:`~server.storage.webhooks.WebhookStore` on the SQLite :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_target(self, hook: Webhook, secret: str, *, created_by: str | None) -> None:
        await self._db.execute(
            "INSERT INTO webhooks (id, url, secret, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (hook.id, hook.url, secret, created_by, hook.created_at),
        )

    async def list_targets(self) -> list[Webhook]:
        rows = await self._db.fetchall(
            "SELECT id, url, created_at FROM webhooks ORDER BY created_at"
        )
        return [Webhook(id=r["id"], url=r["url"], created_at=r["created_at"]) for r in rows]

    async def remove_target(self, webhook_id: str, *, at: float) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount
            conn.execute(
                "UPDATE webhook_outbox SET status = 'cancelled', finished_at = ?"
                " WHERE webhook_id = ? AND status = 'pending'",
                (at, webhook_id),
            )
            return deleted > 0

        return await self._db.transaction(work)

    async def target_secret(self, webhook_id: str) -> str | None:
        row = await self._db.fetchone("SELECT secret FROM webhooks WHERE id = ?", (webhook_id,))
        return str(row["secret"]) if row is not None else None

    async def pending_count(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n FROM webhook_outbox WHERE status = 'pending'"
        )
        return int(row["n"]) if row is not None else 0

    async def pending_heads(self) -> list[Delivery]:
        return [_delivery(row) for row in await self._db.fetchall(_HEADS)]

    async def claim_due(self, *, now: float, lease_s: float, limit: int = 100) -> list[Delivery]:
        # BEGIN IMMEDIATE holds the file's write lock: the processes sharing it claim in turn.
        def work(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(_HEADS).fetchall()
            due = [
                row
                for row in rows
                if row["next_attempt_at"] <= now
                and (row["claimed_until"] is None or row["claimed_until"] <= now)
            ][:limit]
            conn.executemany(
                "UPDATE webhook_outbox SET claimed_until = ? WHERE id = ?",
                [(now + lease_s, row["id"]) for row in due],
            )
            return [_delivery(row) for row in due]

        return await self._db.transaction(work)

    async def next_due(self, *, held: Collection[int] = ()) -> float | None:
        others = ",".join("?" * len(held))
        sql = f"{_NEXT_DUE} WHERE o.id NOT IN ({others})" if held else _NEXT_DUE
        row = await self._db.fetchone(sql, tuple(held))
        return None if row is None or row[0] is None else float(row[0])

    async def mark_delivered(self, row_id: int, *, attempts: int, at: float) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'delivered', attempts = ?, finished_at = ?,"
            " last_error = NULL, claimed_until = NULL WHERE id = ?",
            (attempts, at, row_id),
        )

    async def mark_failed(self, row_id: int, *, attempts: int, at: float, error: str) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'failed', attempts = ?, finished_at = ?,"
            " last_error = ?, claimed_until = NULL WHERE id = ?",
            (attempts, at, error, row_id),
        )

    async def retry_later(
        self, row_id: int, *, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,"
            " claimed_until = NULL WHERE id = ?",
            (attempts, next_attempt_at, error, row_id),
        )

    async def cancel(self, row_id: int, *, at: float) -> None:
        await self._db.execute(
            "UPDATE webhook_outbox SET status = 'cancelled', finished_at = ?,"
            " claimed_until = NULL WHERE id = ?",
            (at, row_id),
        )

    async def prune(self, *, finished_before: float) -> int:
        return await self._db.execute(
            "DELETE FROM webhook_outbox WHERE status != 'pending' AND finished_at < ?",
            (finished_before,),
        )
