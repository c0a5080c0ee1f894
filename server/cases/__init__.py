"""Cases: the state machine of a return or support case, its timeline, the webhook outbox
and the grading record a decision stores."""

from __future__ import annotations

from .grading_record import build_grading_record
from .service import (
    Case,
    CaseEvent,
    CaseEventSink,
    CaseEventType,
    CaseKind,
    CaseListener,
    CaseService,
    CaseState,
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
from .webhooks import (
    Webhook,
    WebhookDispatcher,
    sign,
)

__all__ = [
    "Case",
    "CaseEvent",
    "CaseEventSink",
    "CaseEventType",
    "CaseKind",
    "CaseListener",
    "CaseService",
    "CaseState",
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
    "Webhook",
    "WebhookDispatcher",
    "build_grading_record",
    "sign",
]
