"""Evidence records and items: what was captured, for which order, and the files' hashes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from evidence.errors import InvalidRecord

__all__ = [
    "EvidenceFile",
    "EvidenceItem",
    "EvidenceRecord",
    "FileCheck",
    "IntegrityReport",
    "ItemKind",
    "LogisticsStage",
    "Use",
    "format_time",
    "parse_time",
]


class Use(StrEnum):
    RETURN = "return"
    WALKTHROUGH = "walkthrough"
    SUPPORT = "support"
    PACKING = "packing"


class LogisticsStage(StrEnum):
    """Stages of a parcel's journey, declared in journey order (search sorts by it)."""

    PACKING = "packing"
    DOMESTIC_PICKUP = "domestic_pickup"
    EXPORT_CUSTOMS = "export_customs"
    INTERNATIONAL_TRANSPORT = "international_transport"
    IMPORT_CUSTOMS = "import_customs"
    LAST_MILE = "last_mile"
    RETURN_RECEIPT = "return_receipt"
    REFURBISHMENT_QC = "refurbishment_qc"

    @property
    def rank(self) -> int:
        return list(LogisticsStage).index(self)


class ItemKind(StrEnum):
    CLIP = "clip"
    SNAPSHOT = "snapshot"
    #: A still the customer's phone took (or picked from its gallery) and sent.
    PHOTO = "photo"
    #: A frozen frame with what the agent (and the customer) drew on it.
    MARKUP = "markup"


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC, e.g. ``2025-03-01T10:00:00.250000+00:00``."""
    return value.astimezone(UTC).isoformat()


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise InvalidRecord(f"time {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _enum(cls: type[StrEnum], value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidRecord(f"{name} {value!r} is not one of: {allowed}") from None


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecord(f"{where} holds a non-finite number")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidRecord(f"{where} has a non-string key {k!r}")
            _check_json(v, f"{where}.{k}")
        return
    raise InvalidRecord(f"{where} holds a {type(value).__name__}, not JSON")


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """What an evidence item shows and what it is tied to. Times are timezone-aware."""

    case_id: str
    use: Use
    operator: str
    started_at: datetime
    ended_at: datetime
    kind: ItemKind
    order_id: str | None = None
    tracking_number: str | None = None
    unit_id: str | None = None
    sku: str | None = None
    logistics_stage: LogisticsStage | None = None
    # The model's view and the agent's grade data while it was recorded; ``grade`` (or
    # ``agent.grade`` / ``model.grade``) is what search by grade matches.
    grading: Mapping[str, Any] | None = None
    privacy_notice_version: str | None = None
    note: str = ""
    retention_class: str = "standard"
    #: What a still shows beyond the references: where it came from (camera or gallery, asked
    #: for or not), its size, the consented location, which file is the stamped copy of which
    #: (with both hashes), the strokes of a marked-up frame. On a clip: where its files have
    #: gaps (``gaps``: ``file``, ``kind``, ``start_s``, ``end_s`` in that file's timeline,
    #: ``reason``; absent on clips filed before gaps were recorded) and what was said while it
    #: ran (``transcript``).
    details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.case_id:
            raise InvalidRecord("case_id is required")
        if not self.operator:
            raise InvalidRecord("operator is required")
        set_(self, "use", _enum(Use, self.use, "use"))
        set_(self, "kind", _enum(ItemKind, self.kind, "kind"))
        if self.logistics_stage is not None:
            stage = _enum(LogisticsStage, self.logistics_stage, "logistics_stage")
            set_(self, "logistics_stage", stage)
        for name in ("started_at", "ended_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidRecord(f"{name} must be a timezone-aware datetime")
        if self.ended_at < self.started_at:
            raise InvalidRecord("ended_at is before started_at")
        if self.grading is not None:
            _check_json(self.grading, "grading")
            set_(self, "grading", dict(self.grading))
        if self.details is not None:
            _check_json(self.details, "details")
            set_(self, "details", dict(self.details))

    @property
    def grade(self) -> str | None:
        """The final grade named in ``grading``, if any."""
        g = self.grading or {}
        for candidate in (g.get("grade"), _sub(g, "agent"), _sub(g, "model")):
            if isinstance(candidate, str) and candidate:
                return candidate
        return None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "case_id": self.case_id,
            "order_id": self.order_id,
            "tracking_number": self.tracking_number,
            "unit_id": self.unit_id,
            "sku": self.sku,
            "use": self.use.value,
            "logistics_stage": None if self.logistics_stage is None else self.logistics_stage.value,
            "operator": self.operator,
            "started_at": format_time(self.started_at),
            "ended_at": format_time(self.ended_at),
            "kind": self.kind.value,
            "grading": None if self.grading is None else dict(self.grading),
            "privacy_notice_version": self.privacy_notice_version,
            "note": self.note,
            "retention_class": self.retention_class,
        }
        # Only when present: the records written before details existed keep their bytes.
        if self.details is not None:
            body["details"] = dict(self.details)
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvidenceRecord:
        try:
            return cls(
                case_id=data["case_id"],
                use=data["use"],
                operator=data["operator"],
                started_at=parse_time(data["started_at"]),
                ended_at=parse_time(data["ended_at"]),
                kind=data["kind"],
                order_id=data.get("order_id"),
                tracking_number=data.get("tracking_number"),
                unit_id=data.get("unit_id"),
                sku=data.get("sku"),
                logistics_stage=data.get("logistics_stage"),
                grading=data.get("grading"),
                privacy_notice_version=data.get("privacy_notice_version"),
                note=data.get("note") or "",
                retention_class=data.get("retention_class") or "standard",
                details=data.get("details"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidRecord):
                raise
            raise InvalidRecord(f"bad evidence record: {exc!r}") from exc


def _sub(grading: Mapping[str, Any], key: str) -> Any:
    inner = grading.get(key)
    return inner.get("grade") if isinstance(inner, Mapping) else None


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    name: str
    sha256: str  # hex
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """A stored evidence item as indexed; ``leaf_index`` is its "item.added" log entry."""

    item_id: str
    record: EvidenceRecord
    files: tuple[EvidenceFile, ...]
    added_at: datetime
    leaf_index: int
    retain_until: datetime
    legal_hold: bool = False

    def file(self, name: str) -> EvidenceFile | None:
        return next((f for f in self.files if f.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "record": self.record.to_json(),
            "files": [f.to_json() for f in self.files],
            "added_at": format_time(self.added_at),
            "leaf_index": self.leaf_index,
            "retain_until": format_time(self.retain_until),
            "legal_hold": self.legal_hold,
        }


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's status: "ok", "mismatch" (hash or size differs) or "missing"."""

    name: str
    status: str
    expected_sha256: str
    actual_sha256: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
        }


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """The outcome of :meth:`EvidenceArchive.verify`; ``problems`` says exactly what failed."""

    item_id: str
    ok: bool
    files: tuple[FileCheck, ...]
    record_ok: bool  # the index matches the logged record and its leaf hash
    inclusion_ok: bool  # the audit path leads to the signed root
    signature_ok: bool
    leaf_index: int
    tree_size: int
    root_hash: str
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "ok": self.ok,
            "files": [f.to_json() for f in self.files],
            "record_ok": self.record_ok,
            "inclusion_ok": self.inclusion_ok,
            "signature_ok": self.signature_ok,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "problems": list(self.problems),
        }
