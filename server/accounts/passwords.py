"""Staff passwords: scrypt hashes with their parameters, checked in constant time."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets

from ._b64 import b64d, b64e

__all__ = ["SCRYPT_N", "hash_cost", "hash_password", "verify_password"]

#: scrypt cost for new hashes: 2^17 with r=8 is 128 MiB and a few hundred ms per hash (the
#: OWASP minimum for scrypt). The parameters are stored with each hash, so older, cheaper
#: hashes still verify and are replaced at the next successful sign-in.
SCRYPT_N = 2**17
_SCRYPT_R = 8
_SCRYPT_P = 1
# Hashes with parameters past these are refused unread: a stored hash must not make a
# sign-in allocate gigabytes.
_MAX_N = 2**20
_MAX_R = 16
_MAX_P = 4


def _maxmem(n: int, r: int, p: int) -> int:
    # scrypt needs 128 * r * (n + p) bytes; OpenSSL refuses more than its 32 MiB default
    # unless told, which 2^17 exceeds.
    return 128 * r * (n + p) + 1024 * 1024


def hash_password(
    password: str, *, n: int = SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt. CPU-heavy: call off the loop."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_maxmem(n, r, p)
    )
    return f"scrypt${n}${r}${p}${b64e(salt)}${b64e(digest)}"


def hash_cost(encoded: str) -> int:
    """The scrypt ``n`` a hash was made with (0 for a string that is no scrypt hash): a hash
    cheaper than the current cost is replaced on the next sign-in."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return 0
    try:
        return int(parts[1])
    except ValueError:
        return 0


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n_text, r_text, p_text, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_text), int(r_text), int(p_text)
        if not (1 < n <= _MAX_N and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=b64d(salt),
            n=n,
            r=r,
            p=p,
            dklen=len(b64d(expected)),
            maxmem=_maxmem(n, r, p),
        )
        return hmac.compare_digest(digest, b64d(expected))
    except (ValueError, binascii.Error):
        return False
