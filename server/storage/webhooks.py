"""What the webhook dispatcher needs of persistence: :class:`WebhookStore`, the admin-configured
targets and the outbox of deliveries that case changes enqueued (see
:class:`~server.storage.cases.CaseStore`, which writes them)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Only for annotations: the domain imports this module (see server.storage.cases).
    from server.cases.outbox import Delivery, Webhook

__all__ = ["WebhookStore"]


class WebhookStore(Protocol):
    """Webhook targets and deliveries. A delivery is pending until it is delivered, failed for
    good or cancelled; then it is finished, at a time the store keeps for :meth:`prune`."""

    async def add_target(self, hook: Webhook, secret: str, *, created_by: str | None) -> None:
        """Keep a new target and its signing secret."""
        ...

    async def list_targets(self) -> list[Webhook]:
        """The targets, oldest first."""
        ...

    async def remove_target(self, webhook_id: str, *, at: float) -> bool:
        """Delete a target and cancel its pending deliveries, in one transaction; ``False`` if
        there was no such target."""
        ...

    async def target_secret(self, webhook_id: str) -> str | None:
        """The target's signing secret; ``None`` if the target is gone."""
        ...

    async def pending_count(self) -> int:
        """How many deliveries are pending, due or not."""
        ...

    async def pending_heads(self) -> list[Delivery]:
        """The oldest pending delivery of each (target, URL, case), due or not, soonest due
        first (equal times: the older first). Only these may be attempted: a later delivery of
        the same case to the same target waits until the one before it is finished."""
        ...

    async def claim_due(self, *, now: float, lease_s: float, limit: int = 100) -> list[Delivery]:
        """Lease to the caller, until ``now + lease_s``, up to ``limit`` due heads (as
        :meth:`pending_heads` has them) that no one holds, soonest due first, in one
        transaction: of the processes and nodes dispatching from one outbox, one sends each
        attempt. Finishing a delivery or :meth:`retry_later` ends its lease; a lease that runs
        out (a process that died mid-send) lets another take the delivery again."""
        ...

    async def next_due(self, *, held: Collection[int] = ()) -> float | None:
        """When the soonest pending head other than those ``held`` (row ids the caller is
        sending) can next be claimed (due, and its lease over); ``None`` if there is none."""
        ...

    async def mark_delivered(self, row_id: int, *, attempts: int, at: float) -> None:
        """Finished: the target took it (clears the last error)."""
        ...

    async def mark_failed(self, row_id: int, *, attempts: int, at: float, error: str) -> None:
        """Finished: given up after ``attempts`` tries."""
        ...

    async def retry_later(
        self, row_id: int, *, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        """Still pending: try again at ``next_attempt_at``."""
        ...

    async def cancel(self, row_id: int, *, at: float) -> None:
        """Finished without a try (its target is gone)."""
        ...

    async def prune(self, *, finished_before: float) -> int:
        """Forget deliveries finished before this time; how many were forgotten."""
        ...
