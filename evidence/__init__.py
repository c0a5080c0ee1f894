"""Tamper-evident evidence archive: stored media, an RFC 9162 log, signed heads, bundles."""

from __future__ import annotations

from evidence.errors import (
    EvidenceError,
    EvidenceErrorCode,
    IntegrityError,
    InvalidRecord,
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
from evidence.store import EvidenceArchive, ItemProof

__all__ = [
    "BUNDLE_VERSION",
    "CLAIM_RULES",
    "CLAIM_RULES_VERSION",
    "RETENTION_CLASSES",
    "ClaimBasis",
    "ClaimDeadline",
    "ClaimRule",
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
    "StorageFull",
    "TransparencyLog",
    "Use",
    "canonical_json",
    "claim_deadlines",
    "export_bundle",
    "key_id",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "retain_until",
    "verify_consistency",
    "verify_inclusion",
    "verify_manifest",
    "verify_tree_head",
]
