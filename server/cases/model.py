"""The values of cases: kinds and states, what a case is created from, the facts and verdicts an
agent records, the case itself, its timeline entries, and the update one change writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

# The facts an agent records are the rule table's inputs: one definition, in inference.
from inference import Cosmetic, Functional, Packaging
from server.errors import InvalidRequest
from server.timefmt import iso_time
from signaling import CaseSummary

from .outbox import WebhookEvent

__all__ = [
    "WEBHOOK_EVENTS",
    "Case",
    "CaseEvent",
    "CaseEventType",
    "CaseKind",
    "CaseState",
    "CaseUpdate",
    "Cosmetic",
    "Functional",
    "NewCase",
    "Packaging",
    "ReturnDecision",
    "ReturnFacts",
    "ReturnVerdict",
    "SupportOutcome",
    "SupportVerdict",
    "Verdict",
]


class CaseKind(StrEnum):
    RETURN = "return"
    SUPPORT = "support"


class CaseState(StrEnum):
    CREATED = "created"
    WAITING = "waiting"
    IN_CALL = "in_call"
    DECIDED = "decided"
    CLOSED = "closed"


class ReturnDecision(StrEnum):
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    REJECT = "reject"
    RETURN_TO_WAREHOUSE = "return_to_warehouse"


class SupportOutcome(StrEnum):
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    ESCALATED = "escalated"
    FOLLOW_UP = "follow_up"


class CaseEventType(StrEnum):
    """Timeline entries. The first four are also the webhook events."""

    CREATED = "case.created"
    STATE_CHANGED = "case.state_changed"
    DECIDED = "case.decided"
    CLOSED = "case.closed"
    JOIN_LINK = "case.join_link"
    #: An admin acted on a case held by someone else (or by nobody), with the reason given.
    ACCESS_OVERRIDE = "case.access_override"
    CHAT = "chat.message"
    MODEL_VIEW = "grading.model_view"
    # The inspection tools of the call (the hub and the inspection routes write these).
    FREEZE = "inspection.freeze"
    UNFREEZE = "inspection.unfreeze"
    MARKUP = "inspection.markup"
    POINT = "inspection.point"
    PHOTO_REQUEST = "inspection.photo_request"
    PHOTO_RECEIVED = "inspection.photo_received"
    CAMERA_CONTROL = "inspection.camera_control"
    CAMERA_RESULT = "inspection.camera_result"
    VIDEO_MODE = "inspection.video_mode"
    #: One captioned segment of speech (speaker, language, original and English translation).
    TRANSCRIPT = "transcript.segment"
    #: Captions (speech transcription) switched on or off for the case, and by whom.
    CAPTIONS = "captions.changed"
    # Returns operations (server.returns).
    #: The customer's answers before the call (reason, what is wrong, photos, offer).
    INTAKE = "returns.intake"
    #: The agent recorded the reason seen in the call (with the claimed one and the mismatch).
    REASON_VERIFIED = "returns.reason_verified"
    #: A rule acted: its id, the rule table's version, the action and what it did.
    RULE_ACTION = "returns.rule_action"
    #: A rule failed while running: logged, the case left as it was.
    RULE_FAILED = "returns.rule_failed"
    #: A second person approved the refund a rule held.
    APPROVED = "returns.approved"


WEBHOOK_EVENTS = frozenset(
    {
        CaseEventType.CREATED,
        CaseEventType.STATE_CHANGED,
        CaseEventType.DECIDED,
        CaseEventType.CLOSED,
    }
)


@dataclass(frozen=True, slots=True)
class NewCase:
    kind: CaseKind
    customer_name: str
    customer_contact: str | None = None
    order_id: str | None = None
    sku: str | None = None
    reason: str | None = None
    tracking_number: str | None = None
    unit_id: str | None = None
    #: Carriers and marketplaces involved ("UPS, Amazon"): their claim deadlines show on the case.
    carrier: str | None = None
    shipped_at: float | None = None
    delivered_at: float | None = None
    #: The customer's language (a supported catalogue code, ``web.locales``): their pages,
    #: invitation and the agent's canned phrases use it; None lets the browser choose.
    customer_locale: str | None = None
    #: The customer's IANA time zone ("Europe/Berlin"): the agent console shows their local time.
    customer_time_zone: str | None = None
    #: The reason the merchant or the customer gave (a ``server.returns.ReturnReason`` value).
    claimed_reason: str | None = None
    #: The product category ("headphones"), for rules and analytics.
    category: str | None = None
    #: What the order line was worth, and in which currency (ISO 4217).
    order_value: Decimal | None = None
    order_currency: str | None = None
    #: The customer's country (ISO 3166-1 alpha-2).
    country: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnFacts:
    """What the agent saw, kept apart from the decision so a grade can be derived later."""

    cosmetic: Cosmetic
    functional: Functional
    packaging: Packaging
    accessories_complete: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "cosmetic": self.cosmetic.value,
            "functional": self.functional.value,
            "packaging": self.packaging.value,
            "accessories_complete": self.accessories_complete,
        }


@dataclass(frozen=True, slots=True)
class ReturnVerdict:
    decision: ReturnDecision
    facts: ReturnFacts
    refund_amount: Decimal | None = None
    currency: str | None = None
    note: str | None = None
    #: The grading record (model view, derived and final grade): ``server.cases.grading_record``.
    grading: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.decision is ReturnDecision.PARTIAL_REFUND:
            if self.refund_amount is None or self.refund_amount <= 0:
                raise InvalidRequest(
                    "refund_amount: a partial_refund needs a refund_amount greater than 0",
                    fields=("refund_amount",),
                )
        elif self.refund_amount is not None and self.refund_amount <= 0:
            raise InvalidRequest("refund_amount: must be greater than 0", fields=("refund_amount",))


@dataclass(frozen=True, slots=True)
class SupportVerdict:
    outcome: SupportOutcome
    resolution_note: str


Verdict = ReturnVerdict | SupportVerdict


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    kind: CaseKind
    state: CaseState
    customer_name: str
    customer_contact: str | None
    order_id: str | None
    sku: str | None
    reason: str | None
    tracking_number: str | None
    unit_id: str | None
    carrier: str | None
    shipped_at: float | None
    delivered_at: float | None
    agent_id: str | None
    decision: str | None
    refund_amount: Decimal | None
    currency: str | None
    facts: Mapping[str, Any] | None
    note: str | None
    outcome: str | None
    resolution_note: str | None
    #: The model's view during the call, the grade derived from the agent's facts, any override
    #: and the final grade with its resale channel (see ``inference.grading``).
    grading: Mapping[str, Any] | None
    created_at: float
    waiting_at: float | None
    in_call_at: float | None
    decided_at: float | None
    closed_at: float | None
    updated_at: float
    customer_locale: str | None = None
    customer_time_zone: str | None = None
    claimed_reason: str | None = None
    #: The reason the agent found in the call; differs from ``claimed_reason``: mismatched.
    verified_reason: str | None = None
    category: str | None = None
    order_value: Decimal | None = None
    order_currency: str | None = None
    country: str | None = None
    #: The customer's answers before the call: reason, what is wrong, photos, the offer taken.
    intake: Mapping[str, Any] | None = None
    #: The refund as the rules left it: ``none`` (nothing said), ``held`` (until verified or
    #: approved) or ``released``.
    refund_state: str = "none"
    #: Where the item goes: restock, discount, live_social, parts_recycling.
    disposition: str | None = None
    #: A second approval the rules asked for: ``{above, currency, rule, approved_by,
    #: approved_at}``.
    approval: Mapping[str, Any] | None = None
    #: The final grade of the decision (A-D), kept beside ``grading`` for rules and analytics.
    final_grade: str | None = None

    @property
    def mismatched(self) -> bool | None:
        """Whether the verified reason differs from the claimed one (None until both are known)."""
        if self.claimed_reason is None or self.verified_reason is None:
            return None
        return self.claimed_reason != self.verified_reason

    def to_json(self) -> dict[str, Any]:
        """The case as the API and webhooks show it (times ISO 8601 UTC)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "state": self.state.value,
            "customer_name": self.customer_name,
            "customer_contact": self.customer_contact,
            "customer_locale": self.customer_locale,
            "customer_time_zone": self.customer_time_zone,
            "claimed_reason": self.claimed_reason,
            "verified_reason": self.verified_reason,
            "mismatched": self.mismatched,
            "category": self.category,
            "order_value": float(self.order_value) if self.order_value is not None else None,
            "order_currency": self.order_currency,
            "country": self.country,
            "intake": dict(self.intake) if self.intake is not None else None,
            "refund_state": self.refund_state,
            "disposition": self.disposition,
            "approval": dict(self.approval) if self.approval is not None else None,
            "final_grade": self.final_grade,
            "order_id": self.order_id,
            "sku": self.sku,
            "reason": self.reason,
            "tracking_number": self.tracking_number,
            "unit_id": self.unit_id,
            "carrier": self.carrier,
            "shipped_at": iso_time(self.shipped_at),
            "delivered_at": iso_time(self.delivered_at),
            "agent_id": self.agent_id,
            "decision": self.decision,
            "refund_amount": float(self.refund_amount) if self.refund_amount is not None else None,
            "currency": self.currency,
            "facts": dict(self.facts) if self.facts is not None else None,
            "note": self.note,
            "outcome": self.outcome,
            "resolution_note": self.resolution_note,
            "grading": dict(self.grading) if self.grading is not None else None,
            "created_at": iso_time(self.created_at),
            "waiting_at": iso_time(self.waiting_at),
            "in_call_at": iso_time(self.in_call_at),
            "decided_at": iso_time(self.decided_at),
            "closed_at": iso_time(self.closed_at),
        }

    def summary(self) -> CaseSummary:
        """The case as signaling shows it (queue, ``joined``, ``case`` events)."""
        return CaseSummary(
            case_id=self.id,
            kind=self.kind.value,
            state=self.state.value,
            customer_name=self.customer_name,
            order_id=self.order_id,
            sku=self.sku,
            reason=self.reason,
            agent_id=self.agent_id,
            waiting_since=self.waiting_at,
            extra={"tracking_number": self.tracking_number, "unit_id": self.unit_id},
        )


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One timeline entry: when, what (a :class:`CaseEventType` value), who, and its details
    (a JSON object)."""

    at: float
    type: str
    actor: str
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"at": iso_time(self.at), "type": self.type, "actor": self.actor, "data": self.data}


@dataclass(frozen=True, slots=True)
class CaseUpdate:
    """Everything one change of a case writes, in one transaction: the new values of the case's
    fields (by :class:`Case` field name, domain values: enums, ``Decimal``, mappings), its
    timeline entry and, for a webhook event, the event for the outbox."""

    values: Mapping[str, Any]
    event: CaseEvent
    webhook: WebhookEvent | None = None
