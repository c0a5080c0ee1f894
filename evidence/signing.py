"""The archive's Ed25519 signing key and signed tree heads (STH).

The signed message of a tree head is the canonical JSON (UTF-8, keys sorted, no whitespace,
``ensure_ascii=False``) of exactly these five members::

    {"key_id":"<hex>","root_hash":"<hex>","timestamp":<ms>,"tree_size":<n>,"version":"inspectd-sth/1"}

``key_id`` is the lowercase hex SHA-256 of the 32-byte raw Ed25519 public key, ``root_hash`` the
lowercase hex RFC 9162 root of the first ``tree_size`` entries, ``timestamp`` milliseconds since
the Unix epoch. The signature is Ed25519 over those bytes, standard base64 in ``signature``.

The same key signs the manifest of a dispute bundle (``evidence.export``): the message is
``b"inspectd-bundle-manifest/1\n"`` followed by the manifest's bytes exactly as stored. The
prefix keeps the two kinds of statement apart: no manifest signature is a tree head signature
(whose message starts with ``{``) nor the other way round. The bundled ``verify.py`` rebuilds
both messages independently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.credentials import ContentCredentials
from evidence.errors import IntegrityError

__all__ = [
    "MANIFEST_DOMAIN",
    "STH_VERSION",
    "SignedTreeHead",
    "SigningKey",
    "key_id",
    "load_public_key",
    "manifest_message",
    "verify_manifest",
    "verify_tree_head",
]

logger = logging.getLogger(__name__)

STH_VERSION = "inspectd-sth/1"
MANIFEST_DOMAIN = b"inspectd-bundle-manifest/1\n"
KEY_FILE = "signing_key.pem"


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM SubjectPublicKeyInfo Ed25519 key."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A signed statement of the log's size and root at a time."""

    tree_size: int
    root_hash: str  # hex
    timestamp: int  # ms since the epoch
    key_id: str  # hex
    signature: str  # base64

    def signed_message(self) -> bytes:
        """The exact bytes that are signed (see the module docstring)."""
        return tree_head_message(self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STH_VERSION,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedTreeHead:
        if data.get("version", STH_VERSION) != STH_VERSION:
            raise ValueError(f"unknown tree head version {data.get('version')!r}")
        return cls(
            tree_size=int(data["tree_size"]),
            root_hash=str(data["root_hash"]),
            timestamp=int(data["timestamp"]),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )


def tree_head_message(tree_size: int, root_hash: str, timestamp: int, kid: str) -> bytes:
    body = {
        "key_id": kid,
        "root_hash": root_hash,
        "timestamp": timestamp,
        "tree_size": tree_size,
        "version": STH_VERSION,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_tree_head(sth: SignedTreeHead, public_key: Ed25519PublicKey) -> bool:
    """True when ``sth`` was signed by ``public_key`` and names that key's id."""
    if sth.key_id != key_id(public_key):
        return False
    try:
        signature = base64.b64decode(sth.signature, validate=True)
        public_key.verify(signature, sth.signed_message())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def manifest_message(manifest: bytes) -> bytes:
    """The signed message of a bundle manifest: the domain prefix, then the manifest bytes."""
    return MANIFEST_DOMAIN + manifest


def verify_manifest(manifest: bytes, signature: str, public_key: Ed25519PublicKey) -> bool:
    """True when ``signature`` (base64) is ``public_key``'s over ``manifest``."""
    try:
        public_key.verify(base64.b64decode(signature, validate=True), manifest_message(manifest))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class SigningKey:
    """The archive's Ed25519 key, created in ``data_dir`` at first start and reused after."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """Blocking: read ``signing_key.pem`` or write a new one with mode 0600."""
        path = data_dir / KEY_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls._create(path)
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise IntegrityError(f"{path} is not an Ed25519 private key")
        return cls(key)

    @classmethod
    def _create(cls, path: Path) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: several processes may create the key at the same first start.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        # O_EXCL-like: never replace a key another process created in the meantime.
        try:
            os.link(tmp, path)
        except FileExistsError:
            os.unlink(tmp)
            return cls.load_or_create(path.parent)
        os.unlink(tmp)
        instance = cls(key)
        logger.info("created evidence signing key %s", instance.key_id)
        return instance

    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign_tree_head(self, tree_size: int, root: bytes, timestamp: int) -> SignedTreeHead:
        message = tree_head_message(tree_size, root.hex(), timestamp, self.key_id)
        signature = base64.b64encode(self._private.sign(message)).decode()
        return SignedTreeHead(tree_size, root.hex(), timestamp, self.key_id, signature)

    def content_credentials(self, data_dir: Path) -> ContentCredentials:
        """Blocking: this key as a C2PA signer under the archive's local root in ``data_dir``
        (``evidence.credentials``)."""
        return ContentCredentials.for_archive(self._private, self.key_id, data_dir)

    def sign_manifest(self, manifest: bytes) -> str:
        """Sign a bundle manifest (see the module docstring); returns standard base64."""
        return base64.b64encode(self._private.sign(manifest_message(manifest))).decode()
