from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import SignedTreeHead, SigningKey, load_public_key, verify_manifest, verify_tree_head
from evidence.signing import manifest_message


def test_key_is_created_private_and_reused(tmp_path: Path) -> None:
    first = SigningKey.load_or_create(tmp_path)
    path = tmp_path / "signing_key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SigningKey.load_or_create(tmp_path)
    assert again.key_id == first.key_id
    assert again.public_key_pem() == first.public_key_pem()
    raw = load_public_key(first.public_key_pem()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert first.key_id == hashlib.sha256(raw).hexdigest()


def test_tree_head_signature_and_canonical_message(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path)
    sth = key.sign_tree_head(7, b"\xab" * 32, 1_700_000_000_123)
    assert verify_tree_head(sth, key.public_key)
    assert sth.signed_message() == (
        b'{"key_id":"' + key.key_id.encode() + b'","root_hash":"' + b"ab" * 32 + b'",'
        b'"timestamp":1700000000123,"tree_size":7,"version":"inspectd-sth/1"}'
    )
    document = json.loads(json.dumps(sth.to_json()))
    assert SignedTreeHead.from_json(document) == sth


def test_any_changed_field_or_other_key_fails(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path)
    sth = key.sign_tree_head(7, b"\xab" * 32, 1_700_000_000_123)
    for change in (
        {"tree_size": 8},
        {"root_hash": "cd" * 32},
        {"timestamp": 1},
        {"signature": "not base64!"},
    ):
        assert not verify_tree_head(dataclasses.replace(sth, **change), key.public_key)
    other = SigningKey(Ed25519PrivateKey.generate())
    assert not verify_tree_head(sth, other.public_key)
    forged = other.sign_tree_head(7, b"\xab" * 32, 1_700_000_000_123)
    assert not verify_tree_head(dataclasses.replace(forged, key_id=key.key_id), key.public_key)


def test_manifest_signature_is_domain_separated(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path)
    manifest = b'{"version":"inspectd-bundle/2"}'
    signature = key.sign_manifest(manifest)
    assert verify_manifest(manifest, signature, key.public_key)
    assert manifest_message(manifest) == b"inspectd-bundle-manifest/1\n" + manifest
    assert not verify_manifest(manifest + b" ", signature, key.public_key)
    assert not verify_manifest(manifest, "not base64!", key.public_key)
    other = SigningKey(Ed25519PrivateKey.generate())
    assert not verify_manifest(manifest, signature, other.public_key)
    # Neither kind of signature stands in for the other.
    sth = key.sign_tree_head(7, b"\xab" * 32, 1)
    assert not verify_manifest(sth.signed_message(), sth.signature, key.public_key)
    forged = dataclasses.replace(sth, signature=key.sign_manifest(sth.signed_message()))
    assert not verify_tree_head(forged, key.public_key)
