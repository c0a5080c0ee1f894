"""Accounts: staff users and roles, sessions, API tokens and customer join links."""

from __future__ import annotations

from .model import (
    API_TOKEN_ROLES,
    INTEGRATION,
    INTEGRATION_IDENTITY_ROLE,
    SESSION_COOKIE,
    STAFF_ROLES,
    ApiToken,
    Caller,
    CredentialKind,
    IssuedSession,
    IssuedToken,
    JoinLink,
    User,
)
from .password_policy import MIN_PASSWORD_CHARS, password_problem
from .passwords import SCRYPT_N, hash_password, verify_password
from .revocation import Revocation, RevocationListener, RevocationReason
from .secret_key import SECRET_KEY_FILE, SecretKeyConfig, load_secret_key
from .service import API_TOKEN_PREFIX, AccountConfig, AccountService
from .tokens import token_digest

__all__ = [
    "API_TOKEN_PREFIX",
    "API_TOKEN_ROLES",
    "INTEGRATION",
    "INTEGRATION_IDENTITY_ROLE",
    "MIN_PASSWORD_CHARS",
    "SCRYPT_N",
    "SECRET_KEY_FILE",
    "SESSION_COOKIE",
    "STAFF_ROLES",
    "AccountConfig",
    "AccountService",
    "ApiToken",
    "Caller",
    "CredentialKind",
    "IssuedSession",
    "IssuedToken",
    "JoinLink",
    "Revocation",
    "RevocationListener",
    "RevocationReason",
    "SecretKeyConfig",
    "User",
    "hash_password",
    "load_secret_key",
    "password_problem",
    "token_digest",
    "verify_password",
]
