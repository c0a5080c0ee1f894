"""An operator's C2PA certificate (INSPECT_C2PA_CERT, INSPECT_C2PA_KEY): one without the other
is an invalid setting that names them both, and a certificate that does not match its key
stops the start with that reason, before anything listens; the matching pair is the one the
service signs exported copies with. The certificates are made here (a root and a leaf, P-256)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evidence.credentials import CredentialsError
from server.app import create_app, running_service
from server.http.keys import CREDENTIALS_KEY
from server.settings import Settings, SettingsError, load_settings

PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Operator:
    chain: Path  # the signing certificate, then its root
    key: Path  # the signing certificate's key
    other_key: Path  # a key of the same kind that the certificate was not issued for


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Operator:
    """A CA's root and a signing certificate it issued, as an operator gets them from a CA."""
    folder = tmp_path_factory.mktemp("c2pa")
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Content CA")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "Merchant evidence signer"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Merchant"),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .sign(ca_key, hashes.SHA256())
    )
    made = Operator(folder / "chain.pem", folder / "key.pem", folder / "other_key.pem")
    made.chain.write_bytes(leaf.public_bytes(PEM) + root.public_bytes(PEM))
    made.key.write_bytes(_key_pem(key))
    made.other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    return made


def _settings(tmp_path: Path, cert: Path, key: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        port=0,
        shutdown_timeout_s=2.0,
        grading=False,
        captions=False,
        c2pa_cert=cert,
        c2pa_key=key,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(tmp_path: Path, **environ: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """``inspectd serve`` with the INSPECT_* variables ``environ`` (and no others)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    env |= {
        "INSPECT_DATA_DIR": str(tmp_path / "var"),
        "INSPECT_PORT": str(port),
        "INSPECT_GRADING": "0",
        "INSPECT_CAPTIONS": "0",
        **environ,
    }
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, port


@pytest.mark.parametrize("given", ["INSPECT_C2PA_CERT", "INSPECT_C2PA_KEY"])
def test_a_certificate_or_key_alone_is_an_invalid_setting(operator: Operator, given: str) -> None:
    path = operator.chain if given == "INSPECT_C2PA_CERT" else operator.key
    with pytest.raises(SettingsError) as caught:
        load_settings({given: str(path)})
    assert caught.value.variable == "INSPECT_C2PA_CERT"
    assert "INSPECT_C2PA_CERT" in str(caught.value) and "INSPECT_C2PA_KEY" in str(caught.value)
    both = load_settings({"INSPECT_C2PA_CERT": str(operator.chain), "INSPECT_C2PA_KEY": "k.pem"})
    assert (both.c2pa_cert, both.c2pa_key) == (operator.chain, Path("k.pem"))


@pytest.mark.parametrize("given", ["INSPECT_C2PA_CERT", "INSPECT_C2PA_KEY"])
def test_the_server_refuses_to_start_with_one_of_the_pair(
    operator: Operator, tmp_path: Path, given: str
) -> None:
    path = operator.chain if given == "INSPECT_C2PA_CERT" else operator.key
    done, _ = _serve(tmp_path, **{given: str(path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "inspectd: invalid setting INSPECT_C2PA_CERT: INSPECT_C2PA_CERT and INSPECT_C2PA_KEY go "
        "together"
    )
    assert not (tmp_path / "var").exists()  # refused before anything was opened


async def test_a_certificate_that_does_not_match_its_key_stops_the_start(
    operator: Operator, tmp_path: Path
) -> None:
    with pytest.raises(CredentialsError, match="the certificate does not match the private key"):
        await create_app(_settings(tmp_path, operator.chain, operator.other_key))
    with pytest.raises(CredentialsError, match="the private key cannot be read"):
        await create_app(_settings(tmp_path, operator.chain, operator.chain))
    with pytest.raises(CredentialsError, match="cannot read"):
        await create_app(_settings(tmp_path, operator.chain, tmp_path / "missing.pem"))


def test_the_server_refuses_to_start_with_a_mismatched_certificate(
    operator: Operator, tmp_path: Path
) -> None:
    done, port = _serve(
        tmp_path, INSPECT_C2PA_CERT=str(operator.chain), INSPECT_C2PA_KEY=str(operator.other_key)
    )
    assert done.returncode != 0, done.stderr
    assert "the certificate does not match the private key" in done.stderr
    with socket.socket() as s:  # nothing came to listen
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_mismatched_certificate_is_a_clear_error_without_a_traceback(
    operator: Operator, tmp_path: Path
) -> None:
    done, _ = _serve(
        tmp_path, INSPECT_C2PA_CERT=str(operator.chain), INSPECT_C2PA_KEY=str(operator.other_key)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


async def test_the_matching_pair_is_what_exports_are_signed_with(
    operator: Operator, tmp_path: Path
) -> None:
    async with running_service(_settings(tmp_path, operator.chain, operator.key)) as running:
        credentials = running.app[CREDENTIALS_KEY]
    assert credentials.chain_pem == operator.chain.read_bytes()
    assert credentials.anchor_pem is None  # an operator's CA: no anchor of the archive's own
    assert "Merchant evidence signer" in credentials.subject
