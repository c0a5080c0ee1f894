"""Accounts: staff users and roles, sessions, API tokens and customer join links."""

from __future__ import annotations

from .service import (
    SESSION_COOKIE,
    STAFF_ROLES,
    ApiToken,
    Auth,
    IssuedToken,
    JoinLink,
    User,
    hash_password,
    load_secret_key,
    token_digest,
    verify_password,
)

__all__ = [
    "SESSION_COOKIE",
    "STAFF_ROLES",
    "ApiToken",
    "Auth",
    "IssuedToken",
    "JoinLink",
    "User",
    "hash_password",
    "load_secret_key",
    "token_digest",
    "verify_password",
]
