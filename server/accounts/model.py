"""The accounts domain's types: staff users, their sessions, API tokens, the caller a request's
credentials name, customers' join links."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from server.storage.accounts import ApiTokenRecord, UserRecord
from signaling import Identity, Role, SubjectId

__all__ = [
    "API_TOKEN_ROLES",
    "INTEGRATION",
    "INTEGRATION_IDENTITY_ROLE",
    "SESSION_COOKIE",
    "STAFF_ROLES",
    "ApiToken",
    "Caller",
    "CredentialKind",
    "IssuedSession",
    "IssuedToken",
    "JoinLink",
    "User",
]

#: The name of the cookie that carries a session value.
SESSION_COOKIE = "inspect_session"
STAFF_ROLES = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})

#: The role of an API token for an integration (a shop, an ERP): it creates cases, mints
#: customer join links and reads cases, nothing else. The default for new tokens.
INTEGRATION = "integration"
#: What an API token may be: the integration role or a staff role (``admin`` only when asked).
API_TOKEN_ROLES = (INTEGRATION, Role.AGENT.value, Role.REVIEWER.value, Role.ADMIN.value)
#: The role an integration token's identity carries. The REST role checks and the hub know
#: staff roles only, so an integration acts with an agent's role, and the HTTP edge holds it to
#: the integration routes (``server.http.ratelimit.INTEGRATION_ROUTES``) before any handler
#: runs; no socket, page or other route admits it.
INTEGRATION_IDENTITY_ROLE = Role.AGENT

# ``Identity.credential_id`` (the session or token an identity was made from) lets a socket's
# periodic re-check and a revocation name one session. Signaling adds it; until then an
# identity carries none and a re-check judges the account as a whole.
_IDENTITY_HAS_CREDENTIAL = "credential_id" in {f.name for f in dataclasses.fields(Identity)}


def _with_credential(identity: Identity, credential_id: str) -> Identity:
    if not _IDENTITY_HAS_CREDENTIAL:
        return identity
    changes: dict[str, Any] = {"credential_id": credential_id}
    return dataclasses.replace(identity, **changes)


def credential_of(identity: Identity) -> str | None:
    """The session or token id ``identity`` was made from, if it carries one."""
    value = getattr(identity, "credential_id", None)
    return value if isinstance(value, str) else None


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

    def to_admin_json(self) -> dict[str, object]:
        """As an admin's list shows the account: with its state."""
        return {**self.to_json(), "disabled": self.disabled, "created_at": self.created_at}

    def identity(self, session_id: str | None = None) -> Identity:
        identity = Identity(subject=SubjectId.user(self.id), name=self.name, role=self.role)
        return identity if session_id is None else _with_credential(identity, session_id)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    name: str
    #: As stored: ``integration`` or a staff role.
    role: str
    created_at: float
    created_by: str | None = None
    revoked_at: float | None = None

    @classmethod
    def from_record(cls, record: ApiTokenRecord) -> ApiToken:
        return cls(
            id=record.id,
            name=record.name,
            role=record.role,
            created_at=record.created_at,
            created_by=record.created_by,
            revoked_at=record.revoked_at,
        )

    @property
    def identity_role(self) -> Role:
        return INTEGRATION_IDENTITY_ROLE if self.role == INTEGRATION else Role(self.role)

    def identity(self) -> Identity:
        identity = Identity(
            subject=SubjectId.api_token(self.id), name=self.name, role=self.identity_role
        )
        return _with_credential(identity, self.id)

    def to_json(self) -> dict[str, object]:
        """The token as an admin's list shows it: never the secret, which is not kept."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


class CredentialKind(StrEnum):
    SESSION = "session"
    API_TOKEN = "api_token"


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request's credentials name, as the store says at the time of the request."""

    identity: Identity
    kind: CredentialKind
    #: The session's id or the API token's id.
    credential_id: str
    #: The role as stored: a staff role, or :data:`INTEGRATION` for such a token.
    role: str
    #: The user's sign-in name (``None`` for an API token).
    username: str | None = None

    @property
    def integration(self) -> bool:
        return self.kind is CredentialKind.API_TOKEN and self.role == INTEGRATION


class IssuedToken(NamedTuple):
    """An API token as created: ``token`` is shown once and never stored. Unpacks as
    ``token, token_id``."""

    token: str
    id: str


class IssuedSession(NamedTuple):
    """A session as started: ``value`` goes into the cookie and is never stored."""

    value: str
    id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class JoinLink:
    case_id: str
    token: str
    expires_at: float
