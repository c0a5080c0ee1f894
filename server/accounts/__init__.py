"""Accounts: staff users and roles, sessions, API tokens and customer join links."""

from __future__ import annotations

from .model import SESSION_COOKIE, STAFF_ROLES, ApiToken, IssuedToken, JoinLink, User
from .passwords import hash_password, verify_password
from .secret_key import SECRET_KEY_FILE, SecretKeyConfig, load_secret_key
from .service import API_TOKEN_PREFIX, AccountConfig, AccountService
from .tokens import token_digest

__all__ = [
    "API_TOKEN_PREFIX",
    "SECRET_KEY_FILE",
    "SESSION_COOKIE",
    "STAFF_ROLES",
    "AccountConfig",
    "AccountService",
    "ApiToken",
    "IssuedToken",
    "JoinLink",
    "SecretKeyConfig",
    "User",
    "hash_password",
    "load_secret_key",
    "token_digest",
    "verify_password",
]
