"""RFC 3161 round trip with a local ``openssl ts`` authority on loopback: a tree head's message
timestamped and checked against the authority's root; a changed message, another root, a
replayed nonce and a refusal are named."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.timestamp import (
    QUERY_TYPE,
    TimestampError,
    load_certificates,
    request_for,
    verify_response,
)
from tests.fakes.tsa import LocalTsa

MESSAGE = b'{"key_id":"ab","root_hash":"cd","timestamp":1,"tree_size":3,"version":"x"}'


@pytest.fixture
async def tsa() -> AsyncIterator[LocalTsa]:
    authority = await LocalTsa().start()
    yield authority
    await authority.aclose()


async def _ask(tsa: LocalTsa, query: bytes) -> bytes:
    async with (
        aiohttp.ClientSession() as http,
        http.post(tsa.url, data=query, headers={"Content-Type": QUERY_TYPE}) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.content_type == "application/timestamp-reply"
        return await response.read()


def _other_root() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "someone else")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2040, 1, 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


async def test_a_tree_head_is_timestamped_and_checked_offline(tsa: LocalTsa) -> None:
    request = request_for(MESSAGE)
    response = await _ask(tsa, request.as_bytes())
    roots = load_certificates(tsa.root_pem)
    stamp = verify_response(response, MESSAGE, roots, request=request)
    assert stamp.gen_time.tzinfo is not None and stamp.serial >= 1
    assert stamp.authority == "CN=inspectd test TSA" and stamp.policy == "1.2.3.4.1"
    # Kept whole, it checks again later without the request.
    assert verify_response(stamp.response, MESSAGE, roots).gen_time == stamp.gen_time

    with pytest.raises(TimestampError, match="does not verify"):
        verify_response(response, MESSAGE + b" ", roots)
    with pytest.raises(TimestampError, match="does not verify"):
        verify_response(response, MESSAGE, [_other_root()])
    with pytest.raises(TimestampError, match="not an RFC 3161 response"):
        verify_response(b"\x30\x03\x02\x01\x00" + response[:20], MESSAGE, roots)
    with pytest.raises(TimestampError, match="no root"):
        verify_response(response, MESSAGE, [])
    # Another request's nonce: this answer is not the answer to it.
    with pytest.raises(TimestampError, match="does not verify"):
        verify_response(response, MESSAGE, roots, request=request_for(MESSAGE))


async def test_a_refusal_is_named(tsa: LocalTsa) -> None:
    refused = await _ask(tsa, b"not a query")
    with pytest.raises(TimestampError, match="refused"):
        verify_response(refused, MESSAGE, load_certificates(tsa.root_pem))


def test_bad_certificates_are_named() -> None:
    with pytest.raises(TimestampError, match="not PEM"):
        load_certificates(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
