"""Retention classes and carrier / marketplace claim deadlines, both kept as versioned tables.

The claim windows below are defaults taken from the public terms of each carrier or
marketplace as the table version was written. Contracts differ per merchant and the terms
change: every rule carries a ``source`` note and the merchant must check it against its own
agreements before relying on a deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from evidence.errors import InvalidRecord
from evidence.record import EvidenceRecord, format_time

__all__ = [
    "CLAIM_RULES",
    "CLAIM_RULES_VERSION",
    "RETENTION_CLASSES",
    "RETENTION_VERSION",
    "ClaimBasis",
    "ClaimDeadline",
    "ClaimRule",
    "claim_deadlines",
    "retain_until",
]

RETENTION_VERSION = "retention/1"

RETENTION_CLASSES: dict[str, timedelta] = {
    "standard": timedelta(days=180),
    "packing": timedelta(days=120),
    "dispute": timedelta(days=3 * 365),
    "legal": timedelta(days=7 * 365),
}
"""Retention class -> how long an item is kept after it was added."""


def retain_until(record: EvidenceRecord, added_at: datetime) -> datetime:
    """The earliest time the item may be deleted (its retention class, counted from adding)."""
    return added_at + retention_period(record.retention_class)


def retention_period(retention_class: str) -> timedelta:
    try:
        return RETENTION_CLASSES[retention_class]
    except KeyError:
        allowed = ", ".join(sorted(RETENTION_CLASSES))
        raise InvalidRecord(
            f"retention class {retention_class!r} is not one of: {allowed}"
        ) from None


class ClaimBasis(StrEnum):
    DELIVERY = "delivery"  # counted from (estimated) delivery
    SHIPMENT = "shipment"  # counted from shipment / posting / payment


@dataclass(frozen=True, slots=True)
class ClaimRule:
    key: str
    name: str
    days: int
    basis: ClaimBasis
    claim: str  # what kind of claim the window is for
    source: str


CLAIM_RULES_VERSION = "claim-rules/2025-01"

_CHECK = "Default from public terms; check against the merchant's contract."

CLAIM_RULES: tuple[ClaimRule, ...] = (
    ClaimRule(
        "dhl_express",
        "DHL Express",
        30,
        ClaimBasis.SHIPMENT,
        "loss or damage",
        f"DHL Express Terms and Conditions of Carriage: written notice within 30 days of "
        f"the shipment date. {_CHECK}",
    ),
    ClaimRule(
        "ups",
        "UPS",
        60,
        ClaimBasis.DELIVERY,
        "damage",
        f"UPS Tariff/Terms of Service: damage notice within 60 days of delivery. {_CHECK}",
    ),
    ClaimRule(
        "fedex_express",
        "FedEx Express",
        21,
        ClaimBasis.DELIVERY,
        "damage",
        f"FedEx Service Guide (US Express): damage notice within 21 days of delivery. {_CHECK}",
    ),
    ClaimRule(
        "fedex_ground",
        "FedEx Ground",
        60,
        ClaimBasis.DELIVERY,
        "damage",
        f"FedEx Service Guide (Ground): damage notice within 60 days of delivery. {_CHECK}",
    ),
    ClaimRule(
        "usps",
        "USPS",
        60,
        ClaimBasis.SHIPMENT,
        "damage or missing contents",
        f"USPS DMM 609: damage/missing contents no later than 60 days from mailing. {_CHECK}",
    ),
    ClaimRule(
        "royal_mail",
        "Royal Mail",
        80,
        ClaimBasis.SHIPMENT,
        "loss or damage",
        f"Royal Mail: claims within 80 days of posting. {_CHECK}",
    ),
    ClaimRule(
        "dpd",
        "DPD",
        7,
        ClaimBasis.DELIVERY,
        "damage",
        f"DPD (DE/UK) terms: damage reported within 7 days of delivery. {_CHECK}",
    ),
    ClaimRule(
        "colissimo",
        "La Poste / Colissimo",
        60,
        ClaimBasis.SHIPMENT,
        "loss or damage",
        f"Colissimo conditions générales: réclamation within 60 days of posting. {_CHECK}",
    ),
    ClaimRule(
        "amazon_a_to_z",
        "Amazon A-to-z Guarantee",
        90,
        ClaimBasis.DELIVERY,
        "buyer claim",
        f"Amazon: claims up to 90 days after the latest estimated delivery date. {_CHECK}",
    ),
    ClaimRule(
        "ebay_mbg",
        "eBay Money Back Guarantee",
        30,
        ClaimBasis.DELIVERY,
        "buyer claim",
        f"eBay: request within 30 days of the actual or latest estimated delivery. {_CHECK}",
    ),
    ClaimRule(
        "paypal",
        "PayPal Purchase Protection",
        180,
        ClaimBasis.SHIPMENT,
        "buyer dispute",
        f"PayPal: dispute within 180 days of payment; shipment date used as the nearest "
        f"date known. {_CHECK}",
    ),
)


@dataclass(frozen=True, slots=True)
class ClaimDeadline:
    name: str
    deadline: datetime
    days_left: int  # whole days from now; negative once passed
    basis: ClaimBasis
    claim: str
    source: str
    rules_version: str = CLAIM_RULES_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deadline": format_time(self.deadline),
            "days_left": self.days_left,
            "basis": self.basis.value,
            "claim": self.claim,
            "source": self.source,
            "rules_version": self.rules_version,
        }


def _normalise(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _find(names: Iterable[str]) -> list[ClaimRule]:
    by_name: dict[str, ClaimRule] = {}
    for rule in CLAIM_RULES:
        by_name[_normalise(rule.key)] = rule
        by_name[_normalise(rule.name)] = rule
    found: list[ClaimRule] = []
    for name in names:
        key = _normalise(name)
        exact = by_name.get(key)
        matches = (
            [exact]
            if exact is not None
            else [r for r in CLAIM_RULES if key and _normalise(r.key).startswith(key)]
        )
        if not matches:
            raise InvalidRecord(f"no claim rule for {name!r}")
        found.extend(m for m in matches if m not in found)
    return found


def claim_deadlines(
    *,
    delivered_at: datetime | None = None,
    shipped_at: datetime | None = None,
    carriers: Iterable[str] | None = None,
    now: datetime | None = None,
) -> list[ClaimDeadline]:
    """Deadlines of the named carriers/marketplaces (all rules when None), soonest first.

    A rule counted from a date that is not given is left out. ``carriers`` match a rule's key
    or name case-insensitively ("UPS", "fedex" -> both FedEx rules, "amazon_a_to_z").
    """
    current = now or datetime.fromtimestamp(time.time(), UTC)
    rules = list(CLAIM_RULES) if carriers is None else _find(carriers)
    out: list[ClaimDeadline] = []
    for rule in rules:
        start = delivered_at if rule.basis is ClaimBasis.DELIVERY else shipped_at
        if start is None:
            continue
        deadline = start + timedelta(days=rule.days)
        days_left = math.floor((deadline - current) / timedelta(days=1))
        out.append(
            ClaimDeadline(rule.name, deadline, days_left, rule.basis, rule.claim, rule.source)
        )
    out.sort(key=lambda d: d.deadline)
    return out
