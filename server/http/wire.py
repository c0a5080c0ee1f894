"""Wire types shared by several route modules: request-body bases, field types, and evidence
items as the API shows them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints

from evidence import EvidenceItem
from server.cases import Cosmetic, Functional, Packaging
from server.http.replies import Out

__all__ = [
    "Body",
    "ItemListResponse",
    "ItemResponse",
    "LongText",
    "Name",
    "Note",
    "Ref",
    "ReturnFactsBody",
    "ShortText",
    "StaffRole",
    "Stage",
    "item_json",
]


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused with their name."""

    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=100)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
#: A reference (order id, tracking number...), surrounding spaces dropped.
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Note = Annotated[str, StringConstraints(max_length=2000)]
StaffRole = Literal["agent", "reviewer", "admin"]
#: Logistics stages of evidence (``evidence.LogisticsStage`` values).
Stage = Literal[
    "packing",
    "domestic_pickup",
    "export_customs",
    "international_transport",
    "import_customs",
    "last_mile",
    "return_receipt",
    "refurbishment_qc",
]


class ReturnFactsBody(Body):
    cosmetic: Cosmetic
    functional: Functional
    packaging: Packaging
    accessories_complete: StrictBool


class ItemResponse(Out):
    item: dict[str, Any]


class ItemListResponse(Out):
    items: list[dict[str, Any]]


def item_json(item: EvidenceItem) -> dict[str, Any]:
    """An item as the API shows it: the record, its files with their download URLs."""
    body = item.to_json()
    for entry in body["files"]:
        entry["url"] = f"/api/evidence/{item.item_id}/files/{entry['name']}"
    return body
