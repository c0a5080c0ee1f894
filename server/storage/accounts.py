"""What the accounts domain needs of persistence: staff users, their sessions and API tokens.

Only plain records cross this seam, so a backend on another database implements the same
:class:`AccountStore`. Session secrets and tokens are stored as their digest, passwords as their
scrypt hash: a backend never sees a secret. A session or token is looked up by its digest on
each use, which is what lets every process sharing the database see a revocation at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "AccountStore",
    "ApiTokenRecord",
    "LastAdminError",
    "SessionRecord",
    "UserRecord",
    "UserUpdate",
]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    #: Unique regardless of case.
    username: str
    name: str
    role: str
    password_hash: str
    created_at: float
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """What an admin (or the user, for the password) changes; ``None`` keeps the field."""

    role: str | None = None
    disabled: bool | None = None
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A signed-in browser: the digest of its cookie's secret, never the secret."""

    id: str
    user_id: str
    token_hash: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    """An API token's record: its digest, never the token."""

    id: str
    name: str
    role: str
    token_hash: str
    created_by: str | None
    created_at: float
    revoked_at: float | None = None


class LastAdminError(Exception):
    """The change would leave no enabled admin; nothing was changed."""


class AccountStore(Protocol):
    """Staff users, sessions and API tokens, as stored."""

    async def add_user(self, user: UserRecord) -> bool:
        """Store a new user; ``False`` (nothing stored) if the username is taken, in any case."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_user(self, username: str) -> UserRecord | None:
        """The user with this username, compared regardless of case."""
        ...

    async def list_users(self) -> list[UserRecord]: ...

    async def user_count(self) -> int: ...

    async def update_user(
        self, user_id: str, update: UserUpdate, *, at: float
    ) -> UserRecord | None:
        """Apply ``update`` and end every live session of the user (``revoked_at = at``), in
        one transaction; the user as changed, or ``None`` if there is no such user. Raises
        :class:`LastAdminError`, changing nothing, if no enabled admin would be left."""
        ...

    async def replace_password_hash(self, user_id: str, *, old: str, new: str) -> bool:
        """Swap a hash for a stronger one of the same password, only if it still is ``old``
        (a password changed meanwhile wins). Sessions are kept."""
        ...

    async def add_session(self, session: SessionRecord) -> None:
        """Store a new session; sessions that expired before it was made are dropped."""
        ...

    async def find_session(self, token_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        """The session with this digest, ended or not, with its user (one lookup)."""
        ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def end_session(self, session_id: str, *, at: float) -> bool:
        """End the session; ``False`` if there is none or it already was ended."""
        ...

    async def end_user_sessions(self, user_id: str, *, at: float) -> int:
        """End every live session of the user; how many were ended."""
        ...

    async def add_api_token(self, token: ApiTokenRecord) -> None: ...

    async def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        """The token with this digest, revoked or not."""
        ...

    async def get_api_token(self, token_id: str) -> ApiTokenRecord | None:
        """The token with this id, revoked or not."""
        ...

    async def list_api_tokens(self) -> list[ApiTokenRecord]:
        """Every token, revoked ones included, oldest first."""
        ...

    async def live_api_tokens(self) -> list[ApiTokenRecord]:
        """Every token not revoked."""
        ...

    async def revoke_api_token(self, token_id: str, *, at: float) -> bool:
        """Revoke the token; ``False`` if there is no such token or it already was revoked."""
        ...
