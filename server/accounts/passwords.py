"""Staff passwords: scrypt hashes with their parameters, checked in constant time."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets

from ._b64 import b64d, b64e

__all__ = ["hash_password", "verify_password"]

# scrypt cost: 16 MiB and ~50 ms per hash; parameters are stored with each hash so they can
# be raised later without invalidating existing passwords.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


def hash_password(
    password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt. CPU-heavy: call off the loop."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${b64e(salt)}${b64e(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=b64d(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(b64d(expected)),
        )
        return hmac.compare_digest(digest, b64d(expected))
    except (ValueError, binascii.Error):
        return False
