"""The accounts domain's types: staff users, API tokens, customers' join links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from server.storage.accounts import ApiTokenRecord, UserRecord
from signaling import Identity, Role, SubjectId

__all__ = ["SESSION_COOKIE", "STAFF_ROLES", "ApiToken", "IssuedToken", "JoinLink", "User"]

#: The name of the cookie that carries a signed session value.
SESSION_COOKIE = "inspect_session"
STAFF_ROLES = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    name: str
    role: Role
    created_at: float
    disabled: bool = False

    @classmethod
    def from_record(cls, record: UserRecord) -> User:
        return cls(
            id=record.id,
            username=record.username,
            name=record.name,
            role=Role(record.role),
            created_at=record.created_at,
            disabled=record.disabled,
        )

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username, "name": self.name, "role": self.role}

    def identity(self) -> Identity:
        return Identity(subject=self.id, name=self.name, role=self.role)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    name: str
    role: Role
    created_at: float

    @classmethod
    def from_record(cls, record: ApiTokenRecord) -> ApiToken:
        return cls(
            id=record.id, name=record.name, role=Role(record.role), created_at=record.created_at
        )

    def identity(self) -> Identity:
        return Identity(subject=SubjectId.api_token(self.id), name=self.name, role=self.role)


class IssuedToken(NamedTuple):
    """An API token as created: ``token`` is shown once and never stored. Unpacks as
    ``token, token_id``."""

    token: str
    id: str


@dataclass(frozen=True, slots=True)
class JoinLink:
    case_id: str
    token: str
    expires_at: float
