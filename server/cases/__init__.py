"""Cases: the state machine of a return or support case, its timeline, the webhook outbox
and the grading record a decision stores."""

from __future__ import annotations

from .access import CaseAccess, CaseAction, Grant, check_case_access
from .grading_record import build_grading_record
from .model import (
    WEBHOOK_EVENTS,
    Case,
    CaseEvent,
    CaseEventType,
    CaseKind,
    CaseState,
    CaseUpdate,
    Cosmetic,
    Functional,
    NewCase,
    Packaging,
    ReturnDecision,
    ReturnFacts,
    ReturnVerdict,
    SupportOutcome,
    SupportVerdict,
    Verdict,
)
from .outbox import Delivery, Webhook, WebhookEvent
from .service import CaseEventSink, CaseListener, CaseService
from .webhooks import DeliveryMetrics, WebhookConfig, WebhookDispatcher, sign

__all__ = [
    "WEBHOOK_EVENTS",
    "Case",
    "CaseAccess",
    "CaseAction",
    "CaseEvent",
    "CaseEventSink",
    "CaseEventType",
    "CaseKind",
    "CaseListener",
    "CaseService",
    "CaseState",
    "CaseUpdate",
    "Cosmetic",
    "Delivery",
    "DeliveryMetrics",
    "Functional",
    "Grant",
    "NewCase",
    "Packaging",
    "ReturnDecision",
    "ReturnFacts",
    "ReturnVerdict",
    "SupportOutcome",
    "SupportVerdict",
    "Verdict",
    "Webhook",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookEvent",
    "build_grading_record",
    "check_case_access",
    "sign",
]
