"""Tamper-evident evidence archive: stored media, an RFC 9162 log, signed heads stamped by an
RFC 3161 authority, bundles (with C2PA content credentials for their media)."""

from __future__ import annotations

from evidence.credentials import ContentCredentials, CredentialsError, read_credentials
from evidence.errors import (
    ArchiveUnavailable,
    EvidenceError,
    EvidenceErrorCode,
    IntegrityError,
    InvalidRecord,
    InvalidTimestamp,
    NotFound,
    OnLegalHold,
    RetentionActive,
    StorageFull,
)
from evidence.export import BUNDLE_VERSION, export_bundle
from evidence.log import EntryKind, LogEntry, TransparencyLog, canonical_json
from evidence.merkle import (
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from evidence.record import (
    EvidenceFile,
    EvidenceItem,
    EvidenceRecord,
    FileCheck,
    IntegrityReport,
    ItemKind,
    LogisticsStage,
    Use,
)
from evidence.retention import (
    CLAIM_RULES,
    CLAIM_RULES_VERSION,
    RETENTION_CLASSES,
    ClaimBasis,
    ClaimDeadline,
    ClaimRule,
    claim_deadlines,
    retain_until,
)
from evidence.signing import (
    SignedTreeHead,
    SigningKey,
    key_id,
    load_public_key,
    verify_manifest,
    verify_tree_head,
)
from evidence.stamps import StampedHead, TimestampAuthority
from evidence.store import EvidenceArchive, ItemProof
from evidence.timestamp import (
    QUERY_TYPE,
    REPLY_TYPE,
    Timestamp,
    TimestampError,
    load_certificates,
    request_for,
)

__all__ = [
    "ArchiveUnavailable",
    "BUNDLE_VERSION",
    "CLAIM_RULES",
    "CLAIM_RULES_VERSION",
    "QUERY_TYPE",
    "REPLY_TYPE",
    "RETENTION_CLASSES",
    "ClaimBasis",
    "ClaimDeadline",
    "ClaimRule",
    "ContentCredentials",
    "CredentialsError",
    "EntryKind",
    "EvidenceArchive",
    "EvidenceError",
    "EvidenceErrorCode",
    "EvidenceFile",
    "EvidenceItem",
    "EvidenceRecord",
    "FileCheck",
    "IntegrityError",
    "IntegrityReport",
    "InvalidRecord",
    "InvalidTimestamp",
    "ItemKind",
    "ItemProof",
    "LogEntry",
    "LogisticsStage",
    "MerkleTree",
    "NotFound",
    "OnLegalHold",
    "RetentionActive",
    "SignedTreeHead",
    "SigningKey",
    "StampedHead",
    "StorageFull",
    "Timestamp",
    "TimestampAuthority",
    "TimestampError",
    "TransparencyLog",
    "Use",
    "canonical_json",
    "claim_deadlines",
    "export_bundle",
    "key_id",
    "leaf_hash",
    "load_certificates",
    "load_public_key",
    "node_hash",
    "read_credentials",
    "request_for",
    "retain_until",
    "verify_consistency",
    "verify_inclusion",
    "verify_manifest",
    "verify_tree_head",
]
