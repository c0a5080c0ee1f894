"""Errors of the evidence package; each carries a stable ``code`` for the HTTP edge."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ArchiveUnavailable",
    "EvidenceError",
    "EvidenceErrorCode",
    "IntegrityError",
    "InvalidRecord",
    "InvalidTimestamp",
    "NotFound",
    "OnLegalHold",
    "RetentionActive",
    "StorageFull",
]


class EvidenceErrorCode(StrEnum):
    INTERNAL = "internal"
    NOT_FOUND = "not_found"
    INVALID = "invalid"  # a record, file name or argument that cannot be accepted
    ON_LEGAL_HOLD = "on_legal_hold"
    RETENTION_ACTIVE = "retention_active"
    STORAGE_FULL = "storage_full"
    UNAVAILABLE = "unavailable"  # the archive's database cannot be reached (nothing changed)
    INTEGRITY = "integrity"  # stored data does not match its log entry or the log is corrupt


class EvidenceError(Exception):
    """Root of the package's errors."""

    code: EvidenceErrorCode = EvidenceErrorCode.INTERNAL
    retryable = False

    def __init__(self, message: str = "", *, item_id: str | None = None) -> None:
        super().__init__(message or self.code.value)
        self.message = message or self.code.value
        self.item_id = item_id


class NotFound(EvidenceError, LookupError):
    """No such item, or no such file in the item."""

    code = EvidenceErrorCode.NOT_FOUND


class InvalidRecord(EvidenceError, ValueError):
    """A record, file name or argument that cannot be stored."""

    code = EvidenceErrorCode.INVALID


class InvalidTimestamp(InvalidRecord):
    """A time-stamping authority's response that is not a valid timestamp of the tree head it
    was asked for (the message says why); nothing was kept."""


class OnLegalHold(EvidenceError):
    """The item is under legal hold and cannot be deleted."""

    code = EvidenceErrorCode.ON_LEGAL_HOLD


class RetentionActive(EvidenceError):
    """The item's retain-until date has not passed yet."""

    code = EvidenceErrorCode.RETENTION_ACTIVE


class StorageFull(EvidenceError, OSError):
    """The disk is full; nothing was added to the index or the log."""

    code = EvidenceErrorCode.STORAGE_FULL
    retryable = True


class ArchiveUnavailable(EvidenceError):
    """The archive's database (PostgreSQL) cannot be reached; the change was not made and
    may be tried again."""

    code = EvidenceErrorCode.UNAVAILABLE
    retryable = True


class IntegrityError(EvidenceError):
    """Stored evidence or the log does not match what was recorded."""

    code = EvidenceErrorCode.INTEGRITY
