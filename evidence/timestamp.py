"""Outside timestamps (RFC 3161) of signed tree heads: the request for a head's signed message,
the check of a time-stamping authority's response, and the offline check of a kept response.

The message timestamped is the tree head's signed message (``SignedTreeHead.signed_message``):
a TSA vouches that the head, and so every item under it, existed at the token's ``genTime``.
Nothing here talks to the network; ``server`` sends the request to ``INSPECT_TSA_URL`` and keeps
what comes back. The response is kept whole (DER), so a verifier needs only it, the message and
the TSA's root certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimeStampRequest,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

__all__ = [
    "QUERY_TYPE",
    "REPLY_TYPE",
    "Timestamp",
    "TimestampError",
    "load_certificates",
    "request_for",
    "verify_response",
]

#: RFC 3161 section 3.4: the media types of a request and of a response over HTTP.
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


class TimestampError(ValueError):
    """A response that is not a valid timestamp of the message (the reason says why)."""


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A checked timestamp: when the authority says the message existed, who said so, and the
    response as received (what a bundle carries)."""

    gen_time: datetime
    serial: int
    #: The authority as its certificate names it (RFC 4514).
    authority: str
    policy: str
    response: bytes


def request_for(message: bytes) -> TimeStampRequest:
    """A SHA-256 request for ``message``, with a nonce and asking for the TSA's certificate."""
    return TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (the TSA's root, and intermediates if any)."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TimestampError(f"not PEM certificates: {exc}") from None
    if not certificates:
        raise TimestampError("no certificate in the PEM data")
    return certificates


def _authority(parsed: TimeStampResponse) -> str:
    """The authority's name (RFC 4514, "CN=..."): the name its token gives, else the subject of
    the certificate it signed with (tokens need not name their authority)."""
    name = parsed.tst_info.name
    value = getattr(name, "value", name)
    if isinstance(value, x509.Name):
        return value.rfc4514_string()
    if value is not None:
        return str(value)
    for der in parsed.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        try:
            usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.TIME_STAMPING in usage.value:
            return certificate.subject.rfc4514_string()
    return ""


def verify_response(
    response: bytes,
    message: bytes,
    roots: Sequence[x509.Certificate],
    *,
    request: TimeStampRequest | None = None,
) -> Timestamp:
    """Check that ``response`` is a granted timestamp of ``message`` signed by a certificate
    that chains to one of ``roots`` (its timeStamping use critical, valid at the token's time);
    with ``request``, also its nonce. Raises :class:`TimestampError` with the reason."""
    if not roots:
        raise TimestampError("no root certificate of the time-stamping authority to check with")
    try:
        parsed = decode_timestamp_response(response)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 response: {exc}") from None
    if parsed.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        detail = ", ".join(parsed.status_string) if parsed.status_string else "no reason given"
        raise TimestampError(f"the authority refused ({PKIStatus(parsed.status).name}: {detail})")
    builder = VerifierBuilder.from_request(request) if request is not None else VerifierBuilder()
    # The builder refuses a root given twice (a PEM file may repeat one).
    for root in {root.fingerprint(hashes.SHA256()): root for root in roots}.values():
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(parsed, message)
    except (VerificationError, ValueError) as exc:
        raise TimestampError(f"the timestamp does not verify: {exc}") from None
    info = parsed.tst_info
    return Timestamp(
        gen_time=info.gen_time,
        serial=int(info.serial_number),
        authority=_authority(parsed),
        policy=info.policy.dotted_string if info.policy is not None else "",
        response=response,
    )
