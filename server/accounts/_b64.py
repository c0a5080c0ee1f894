"""Unpadded base64url, as the password hashes and the signed values of accounts write it."""

from __future__ import annotations

import base64

__all__ = ["b64d", "b64e"]


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
