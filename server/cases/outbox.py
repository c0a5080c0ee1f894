"""The webhook outbox's values: the targets, the event a case change enqueues, and the
deliveries it becomes (one per target), as the storage seam hands them back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.timefmt import iso_time

__all__ = ["Delivery", "Webhook", "WebhookEvent"]


@dataclass(frozen=True, slots=True)
class Webhook:
    """An admin-configured target (its secret is never shown after creation)."""

    id: str
    url: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "created_at": iso_time(self.created_at)}


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of a case for the outbox: the store writes a delivery of it to every target in
    the transaction of the change it reports. ``body`` is the exact JSON every target gets."""

    event_id: str
    event: str
    case_id: str
    at: float
    body: str

    @classmethod
    def of(cls, event: str, case_id: str, at: float, case: Mapping[str, Any]) -> WebhookEvent:
        """The event with a fresh id; ``case`` is the case as the API shows it after the change.
        The body is compact and written once, so every target gets (and signs) the same bytes."""
        event_id = uuid.uuid4().hex
        body = json.dumps(
            {"id": event_id, "event": event, "at": iso_time(at), "case": dict(case)},
            separators=(",", ":"),
        )
        return cls(event_id=event_id, event=event, case_id=case_id, at=at, body=body)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A pending delivery of one event to one target. ``webhook_id`` is ``None`` for a target
    from the configuration (not an admin-configured one)."""

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
        """Deliveries of one group go out one at a time, in order (per target and case)."""
        return (self.webhook_id, self.url, self.case_id)
