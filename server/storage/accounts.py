"""What the accounts domain needs of persistence: staff users and API tokens.

Only plain records cross this seam, so a backend on another database implements the same
:class:`AccountStore`. Tokens are stored as their digest, passwords as their scrypt hash: a
backend never sees a secret. A token is looked up by its digest on each use, which is what lets
every process see a revocation at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["AccountStore", "ApiTokenRecord", "UserRecord"]


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
class ApiTokenRecord:
    """An API token's record: its digest, never the token."""

    id: str
    name: str
    role: str
    token_hash: str
    created_by: str | None
    created_at: float
    revoked_at: float | None = None


class AccountStore(Protocol):
    """Staff users and API tokens, as stored."""

    async def add_user(self, user: UserRecord) -> bool:
        """Store a new user; ``False`` (nothing stored) if the username is taken, in any case."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_user(self, username: str) -> UserRecord | None:
        """The user with this username, compared regardless of case."""
        ...

    async def list_users(self) -> list[UserRecord]: ...

    async def user_count(self) -> int: ...

    async def add_api_token(self, token: ApiTokenRecord) -> None: ...

    async def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        """The token with this digest, revoked or not."""
        ...

    async def live_api_tokens(self) -> list[ApiTokenRecord]:
        """Every token not revoked."""
        ...

    async def revoke_api_token(self, token_id: str, *, at: float) -> bool:
        """Revoke the token; ``False`` if there is no such token or it already was revoked."""
        ...
