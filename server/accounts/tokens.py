"""What is kept of a bearer secret (an API token, a camera token): its digest, never the token."""

from __future__ import annotations

import hashlib

__all__ = ["token_digest"]


def token_digest(token: str) -> str:
    """SHA-256 hex of a token. Tokens are 32 random bytes, so a plain hash (no salt, no
    stretching) cannot be reversed, and it lets a token be looked up by an index."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
