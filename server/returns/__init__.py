"""Returns operations: the reason taxonomy (claimed and verified), the customer's intake before
the call, and the versioned rule table whose actions run on cases (``rules``, ``service``)."""

from __future__ import annotations

from .reasons import REASONS, ReturnReason, reason_json, shopify_code, x12_code
from .rules import ACTIONS, ALERT_KINDS, FIELDS, RuleError, RuleTable, Trigger, check, evaluate
from .service import DryRun, Intake, Offer, ReturnsService, facts_of

__all__ = [
    "ACTIONS",
    "ALERT_KINDS",
    "FIELDS",
    "REASONS",
    "DryRun",
    "Intake",
    "Offer",
    "ReturnReason",
    "ReturnsService",
    "RuleError",
    "RuleTable",
    "Trigger",
    "check",
    "evaluate",
    "facts_of",
    "reason_json",
    "shopify_code",
    "x12_code",
]
