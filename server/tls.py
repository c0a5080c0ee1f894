"""TLS for the embedded server: a self-signed certificate kept under ``data_dir`` (phones need
HTTPS for the camera on anything but localhost) and an SSL context."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["local_names", "self_signed_certificate", "ssl_context"]

logger = logging.getLogger(__name__)

CERT_FILE = "self-signed.crt"
KEY_FILE = "self-signed.key"
VALID_DAYS = 365
#: Re-issue when less than this is left, so a long-running install never serves an expired one.
RENEW_BEFORE = dt.timedelta(days=30)


def local_names() -> list[str]:
    """This host's name(s) and LAN addresses (no packets are sent), for the SAN list."""
    names: list[str] = []
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))  # UDP connect only picks the outgoing address
                address = probe.getsockname()[0]
        except OSError:
            continue
        if address not in names:
            names.append(address)
    return names


def _sans(hostnames: Iterable[str]) -> list[x509.GeneralName]:
    wanted = ["localhost", "127.0.0.1", "::1", *hostnames]
    result: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in wanted:
        name = name.strip().strip("[]")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name.split("%")[0])))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _reusable(cert_path: Path, key_path: Path, sans: list[x509.GeneralName]) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    return all(name in present for name in sans)


def self_signed_certificate(data_dir: Path, hostnames: Iterable[str] = ()) -> tuple[Path, Path]:
    """``(cert_path, key_path)`` of a P-256 self-signed certificate for localhost, 127.0.0.1,
    ::1 and ``hostnames`` (names or addresses). Reused while it covers those names and has more
    than 30 days left; otherwise a new one is written (key file mode 0600). Blocking IO."""
    folder = Path(data_dir) / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    sans = _sans(hostnames)
    if _reusable(cert_path, key_path, sans):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inspectd self-signed")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    logger.info("wrote a self-signed certificate to %s", cert_path)
    return cert_path, key_path


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or later) for ``cert`` and ``key``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
