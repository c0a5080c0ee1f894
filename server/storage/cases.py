"""What the case service needs of persistence: :class:`CaseStore`.

A backend runs each write as one transaction. The domain never sees a connection: it hands the
store a pure ``decide`` function that the store calls inside that transaction with the case as
it is there, and writes whatever ``decide`` returns. An async driver (PostgreSQL) implements the
same contract with ``SELECT ... FOR UPDATE`` around the call; SQLite with ``BEGIN IMMEDIATE``.

The outbox is part of the contract: a case change, its timeline entry and the deliveries of its
webhook event commit together or not at all, so a crash neither loses a notification nor sends
one for a change that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Only for annotations: the domain imports this module, so a runtime import back would
    # make the two depend on which is imported first.
    from server.cases.model import Case, CaseEvent, CaseState, CaseUpdate
    from server.cases.outbox import WebhookEvent

__all__ = ["CaseStore"]


class CaseStore(Protocol):
    """Cases, their timelines and the webhook outbox rows of their changes.

    Webhook events: wherever a write takes a :class:`~server.cases.outbox.WebhookEvent`, the
    store must, in the same transaction, add one pending delivery of it to every webhook target
    (each URL the store was configured with, and each target in its webhook table, as
    :class:`~server.storage.webhooks.WebhookStore` lists them), due at the event's time.
    """

    async def get(self, case_id: str) -> Case | None:
        """The case, or ``None`` if there is none with this id."""
        ...

    async def list_cases(self, state: CaseState | None, *, limit: int, offset: int) -> list[Case]:
        """Cases (in ``state`` if given), newest first; equal creation times: the later
        created first."""
        ...

    async def events(self, case_id: str) -> list[CaseEvent]:
        """The case's timeline, in the order it was written (empty for an unknown case)."""
        ...

    async def counts_by_state(self) -> Mapping[str, int]:
        """How many cases are in each state, by state value; a state without cases may be
        missing."""
        ...

    async def create(self, case: Case, *, event: CaseEvent, webhook: WebhookEvent | None) -> Case:
        """Store a new case (no agent nor decision yet), its first timeline entry and its
        webhook event, in one transaction; returns the case as stored."""
        ...

    async def mutate(
        self, case_id: str, decide: Callable[[Case], CaseUpdate | None]
    ) -> tuple[Case, bool]:
        """In one transaction: load the case (``NotFound`` if there is none), call
        ``decide(case)`` and write what it returns: the new field values, the timeline entry
        and the webhook event. ``None`` writes nothing. If ``decide`` raises, nothing is written
        and the error propagates. Returns the case as it is after the transaction and whether
        anything was written. ``decide`` may be called more than once if the backend retries a
        transaction, so it must be pure."""
        ...

    async def note(self, case_id: str, decide: Callable[[Case], CaseEvent]) -> Case:
        """In one transaction: load the case (``NotFound`` if there is none) and append the
        timeline entry ``decide(case)`` returns, leaving the case itself unchanged. If
        ``decide`` raises, nothing is written. Returns the case."""
        ...

    async def count_returns(self, contact: str, *, before: float) -> int:
        """How many return cases with this ``customer_contact`` were created before
        ``before`` (a customer's past returns, for the return rules)."""
        ...

    async def list_returns(self, *, since: float, until: float, limit: int) -> list[Case]:
        """Return cases created in ``since``..``until``, oldest first, at most ``limit``
        (the return rules' dry run)."""
        ...

    async def append_once(self, case_id: str, event: CaseEvent, *, dedup_key: str | None) -> bool:
        """Append a timeline entry unless the case already has one with this ``dedup_key``
        (``None``: never a repeat) or there is no such case; ``True`` if it was written."""
        ...
