"""Content credentials (C2PA) for exported evidence: a manifest embedded in a copy of a clip, a
snapshot or a photo, naming its case, order, tracking number, capture time, who or what captured
it and its log entry, signed so that any C2PA reader checks the single file without the bundle.

The signer is either an operator-supplied certificate chain and key (a CA-issued certificate
with digitalSignature and the emailProtection extended key use, as C2PA's signing profile
requires; checked against its key when loaded), or the archive's own Ed25519 key under a
certificate the archive issues itself from a local root kept beside it
(``content_credentials_ca.pem``, shipped in bundles as the trust anchor a reader adds). C2PA
refuses self-signed signing certificates, hence the two-level chain.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ASSERTION",
    "CA_FILE",
    "MIME_TYPES",
    "ContentCredentials",
    "CredentialsError",
    "ReadCredentials",
    "read_credentials",
]

#: The label of the assertion that ties a file to its evidence record.
ASSERTION: Final = "com.inspectd.evidence"
CA_FILE: Final = "content_credentials_ca.pem"
_CA_KEY_FILE: Final = "content_credentials_ca.key"
_GENERATOR: Final = {"name": "inspectd", "version": "0.1.0"}
#: The file types the C2PA library signs, by suffix. Not WebM or Matroska (the recordings'
#: containers): the library has no way to embed a manifest in them ("type is unsupported").
MIME_TYPES: Final = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
}
_DIGITAL_CAPTURE: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


class CredentialsError(ValueError):
    """Credentials that cannot be made or checked (the reason says why)."""


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inspectd evidence archive"),
        ]
    )


def _issue_chain(
    signing: ed25519.Ed25519PrivateKey, ca_key: ed25519.Ed25519PrivateKey, key_id: str
) -> tuple[bytes, bytes]:
    """(leaf PEM, root PEM): a root for the archive and a signing certificate for its key."""
    now = dt.datetime.now(dt.UTC)
    root_name = _name(f"inspectd evidence root {key_id[:16]}")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, None)
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(f"inspectd evidence signer {key_id[:16]}"))
        .issuer_name(root_name)
        .public_key(signing.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signing.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, None)
    )
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem), root.public_bytes(pem)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Key:
    private: Any
    algorithm: str  # a C2paSigningAlg name


def _key_of(pem: bytes) -> _Key:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"the private key cannot be read: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _Key(key, "ED25519")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in names:
            raise CredentialsError(f"EC curve {key.curve.name} is not one C2PA signs with")
        return _Key(key, names[key.curve.name])
    if isinstance(key, rsa.RSAPrivateKey):
        return _Key(key, "PS256")
    raise CredentialsError("the private key is not Ed25519, EC (P-256/384/521) or RSA")


def _sign_with(key: _Key, data: bytes) -> bytes:
    private = key.private
    if key.algorithm == "ED25519":
        signature: bytes = private.sign(data)
    elif key.algorithm.startswith("ES"):
        digest = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}
        signature = private.sign(data, ec.ECDSA(digest[key.algorithm]))
    else:
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = private.sign(
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    return signature


class ContentCredentials:
    """Signs copies of evidence files with a C2PA manifest."""

    def __init__(self, chain_pem: bytes, key_pem: bytes, *, anchor_pem: bytes | None = None):
        """``chain_pem``: the signing certificate first, then its issuers; ``key_pem``: its
        private key (checked to match). ``anchor_pem``: the root a reader should trust (the
        archive's own root; None for an operator's certificate from a public CA)."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as exc:
            raise CredentialsError(f"the certificate chain cannot be read: {exc}") from None
        if not chain:
            raise CredentialsError("the certificate chain is empty")
        self._key = _key_of(key_pem)
        leaf_key = (
            chain[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        own_key = self._key.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if leaf_key != own_key:
            raise CredentialsError(
                "the certificate does not match the private key (its public key differs)"
            )
        if chain[0].issuer == chain[0].subject:
            raise CredentialsError("a self-signed certificate cannot sign content credentials")
        self.chain_pem = chain_pem
        self.anchor_pem = anchor_pem
        self.subject = chain[0].subject.rfc4514_string()

    @classmethod
    def from_files(cls, chain: Path, key: Path) -> ContentCredentials:
        """An operator's certificate chain and key (``INSPECT_C2PA_CERT`` / ``_KEY``)."""
        try:
            return cls(chain.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise CredentialsError(f"cannot read {exc.filename}: {exc.strerror}") from None

    @classmethod
    def for_archive(
        cls, signing_key: ed25519.Ed25519PrivateKey, key_id: str, data_dir: Path
    ) -> ContentCredentials:
        """The archive's own key under a certificate of the archive's local root (made once in
        ``data_dir`` and kept)."""
        root_key_path = data_dir / _CA_KEY_FILE
        if root_key_path.exists():
            ca_key = serialization.load_pem_private_key(root_key_path.read_bytes(), None)
            if not isinstance(ca_key, ed25519.Ed25519PrivateKey):
                raise CredentialsError(f"{root_key_path} is not an Ed25519 key")
        else:
            ca_key = ed25519.Ed25519PrivateKey.generate()
            data_dir.mkdir(parents=True, exist_ok=True)
            _write_private(
                root_key_path,
                ca_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        leaf, root = _issue_chain(signing_key, ca_key, key_id)
        (data_dir / CA_FILE).write_bytes(root)
        key_pem = signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(leaf + root, key_pem, anchor_pem=root)

    def sign(
        self,
        data: bytes,
        mime: str,
        *,
        title: str,
        evidence: Mapping[str, Any],
        captured_at: dt.datetime | None = None,
        tsa_url: str | None = None,
    ) -> bytes:
        """A copy of ``data`` (a ``mime`` file) carrying a manifest: created by digital
        capture (at ``captured_at``), with the evidence assertion ``evidence`` (case, order,
        tracking number, item, log entry...). ``tsa_url``: an RFC 3161 authority for the
        signature's time (the C2PA library then makes the HTTP request itself)."""
        out = io.BytesIO()
        self._sign(io.BytesIO(data), out, mime, title, evidence, captured_at, tsa_url)
        return out.getvalue()

    def sign_file(
        self,
        source: Path,
        dest: Path,
        mime: str,
        *,
        title: str,
        evidence: Mapping[str, Any],
        captured_at: dt.datetime | None = None,
    ) -> None:
        """:meth:`sign` from file to file, streamed (a clip is not read into memory);
        blocking. ``dest`` is removed again when signing fails."""
        try:
            with source.open("rb") as src, dest.open("w+b") as out:
                self._sign(src, out, mime, title, evidence, captured_at, None)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _sign(
        self,
        source: IO[bytes],
        dest: IO[bytes],
        mime: str,
        title: str,
        evidence: Mapping[str, Any],
        captured_at: dt.datetime | None,
        tsa_url: str | None,
    ) -> None:
        from c2pa import Builder, C2paError, C2paSigningAlg, Context, Settings, Signer

        action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": _DIGITAL_CAPTURE}
        if captured_at is not None:
            action["when"] = captured_at.isoformat()
        manifest = {
            "claim_generator_info": [_GENERATOR],
            "title": title,
            "format": mime,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [action]}},
                {"label": ASSERTION, "data": json.loads(json.dumps(dict(evidence), default=str))},
            ],
        }
        key = self._key
        # One signer per signature: a Builder consumes the signer it signs with.
        signer = Signer.from_callback(
            lambda message: _sign_with(key, bytes(message)),
            getattr(C2paSigningAlg, key.algorithm),
            self.chain_pem.decode(),
            tsa_url,
        )
        context = Context(Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
        try:
            with Builder(manifest, context) as builder:
                builder.sign(signer, mime, source, dest)
        except C2paError as exc:
            raise CredentialsError(f"the file could not be signed: {exc}") from None


@dataclass(frozen=True, slots=True)
class ReadCredentials:
    #: "Trusted" (signed by a certificate chaining to an anchor), "Valid" or "Invalid".
    state: str
    evidence: Mapping[str, Any] | None
    signer: str | None
    failures: tuple[str, ...]


def read_credentials(data: bytes, mime: str, *, anchors: bytes | None = None) -> ReadCredentials:
    """What a C2PA reader says of a file: its validation state, the evidence assertion and the
    failures (codes such as ``assertion.dataHash.mismatch``)."""
    from c2pa import C2paError, Context, Reader, Settings

    settings: dict[str, Any] = {}
    if anchors is not None:
        settings["trust"] = {"trust_anchors": anchors.decode()}
    try:
        with Reader(mime, io.BytesIO(data), None, Context(Settings.from_dict(settings))) as reader:
            state = str(reader.get_validation_state())
            manifest = reader.get_active_manifest() or {}
            results = reader.get_validation_results() or {}
    except C2paError as exc:
        raise CredentialsError(f"no content credentials could be read: {exc}") from None
    evidence = next(
        (a.get("data") for a in manifest.get("assertions", []) if a.get("label") == ASSERTION),
        None,
    )
    active = results.get("activeManifest", {}) if isinstance(results, Mapping) else {}
    failures = tuple(str(f.get("code")) for f in active.get("failure", []))
    signer = (manifest.get("signature_info") or {}).get("common_name")
    return ReadCredentials(state, evidence, signer, failures)
