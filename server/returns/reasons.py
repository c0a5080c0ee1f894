"""Why an item comes back: the reason taxonomy, and its codes in the systems a merchant
exchanges returns with.

A case keeps two reasons: the **claimed** one (what the merchant's API call or the customer's
intake said) and the **verified** one (what the agent saw in the call). Where they differ the
case is *mismatched*, a fact rules act on and analytics count.

The codes map to Shopify's ``ReturnReason`` enum (Admin GraphQL API: COLOR, DEFECTIVE,
NOT_AS_DESCRIBED, OTHER, SIZE_TOO_LARGE, SIZE_TOO_SMALL, STYLE, UNKNOWN, UNWANTED, WRONG_ITEM)
and to the X12 Return Request Reason Codes (data element 1293, in the RDR segment of the 180
Return Merchandise Authorization and Notification transaction set). Shopify has no code for
damage in transit or missing parts: they map to DEFECTIVE and NOT_AS_DESCRIBED. X12 has DT
(Damaged in Transit); missing parts reads as NA (Not as Expected), and sizes as PF (Poor Fit).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

__all__ = ["REASONS", "ReturnReason", "reason_json", "shopify_code", "x12_code"]


class ReturnReason(StrEnum):
    COLOR = "color"
    DEFECTIVE = "defective"
    NOT_AS_DESCRIBED = "not_as_described"
    SIZE_TOO_LARGE = "size_too_large"
    SIZE_TOO_SMALL = "size_too_small"
    STYLE = "style"
    UNWANTED = "unwanted"
    WRONG_ITEM = "wrong_item"
    DAMAGED_IN_TRANSIT = "damaged_in_transit"
    MISSING_PARTS = "missing_parts"
    OTHER = "other"


#: (Shopify ReturnReason, X12 1293 code, X12 meaning, English label) of each reason.
REASONS: Final[dict[ReturnReason, tuple[str, str | None, str | None, str]]] = {
    ReturnReason.COLOR: ("COLOR", "CV", "Color Variance", "Colour not as expected"),
    ReturnReason.DEFECTIVE: (
        "DEFECTIVE", "DR", "Defective Merchandise or Returned by Consumer", "Defective",
    ),
    ReturnReason.NOT_AS_DESCRIBED: (
        "NOT_AS_DESCRIBED", "NA", "Not as Expected", "Not as described",
    ),
    ReturnReason.SIZE_TOO_LARGE: ("SIZE_TOO_LARGE", "PF", "Poor Fit", "Too large"),
    ReturnReason.SIZE_TOO_SMALL: ("SIZE_TOO_SMALL", "PF", "Poor Fit", "Too small"),
    ReturnReason.STYLE: ("STYLE", "ST", "Style Problem", "Style not as expected"),
    ReturnReason.UNWANTED: ("UNWANTED", "CO", "Customer Ordering Error", "No longer wanted"),
    ReturnReason.WRONG_ITEM: (
        "WRONG_ITEM", "WG", "Wrong Goods or Not Ordered", "Wrong item sent",
    ),
    ReturnReason.DAMAGED_IN_TRANSIT: (
        "DEFECTIVE", "DT", "Damaged In Transit", "Damaged in transit",
    ),
    ReturnReason.MISSING_PARTS: ("NOT_AS_DESCRIBED", "NA", "Not as Expected", "Parts missing"),
    ReturnReason.OTHER: ("OTHER", None, None, "Other"),
}  # fmt: skip


def shopify_code(reason: ReturnReason | str) -> str:
    """The Shopify ``ReturnReason`` of ``reason``."""
    return REASONS[ReturnReason(reason)][0]


def x12_code(reason: ReturnReason | str) -> str | None:
    """The X12 Return Request Reason Code (element 1293) of ``reason``; None for ``other``."""
    return REASONS[ReturnReason(reason)][1]


def reason_json(reason: ReturnReason) -> dict[str, Any]:
    shopify, x12, x12_meaning, label = REASONS[reason]
    return {
        "code": reason.value,
        "label": label,
        "shopify": shopify,
        "x12": x12,
        "x12_meaning": x12_meaning,
    }
