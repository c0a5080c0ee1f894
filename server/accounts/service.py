"""Who is calling: staff accounts (scrypt password hashes, server-side sessions), API bearer
tokens for integrations, and customers' join tokens (HMAC-signed, expiring, bound to one case).

Sessions and API tokens are looked up in the store on every use (one indexed query), never in a
per-process cache: signing out, a revoked token, a disabled account or a changed role or
password holds on every process sharing the store from the next request on. Reading
credentials from a request and writing the cookie is the HTTP edge's part
(``server.http.auth``); this module sees only the credentials' text.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest, NotFound
from server.storage.accounts import (
    AccountStore,
    ApiTokenRecord,
    LastAdminError,
    SessionRecord,
    UserRecord,
    UserUpdate,
)
from signaling import Identity, Role, SubjectId, SubjectKind

from ._b64 import b64e
from .join_tokens import JoinTokens
from .model import (
    API_TOKEN_ROLES,
    INTEGRATION,
    STAFF_ROLES,
    ApiToken,
    Caller,
    CredentialKind,
    IssuedSession,
    IssuedToken,
    JoinLink,
    User,
    credential_of,
)
from .password_policy import password_problem
from .passwords import SCRYPT_N, hash_cost, hash_password, verify_password
from .revocation import Revocation, RevocationListener, RevocationReason
from .tokens import token_digest

__all__ = ["API_TOKEN_PREFIX", "AccountConfig", "AccountService"]

logger = logging.getLogger(__name__)

API_TOKEN_PREFIX = "insp_"
_MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """How long what accounts issue stays valid, and what a password hash costs."""

    #: Seconds a session (the sign-in cookie) lasts.
    session_ttl_s: int = 12 * 3600
    #: Seconds a customer's join token is valid unless the caller gives its own.
    join_token_ttl_s: int = 24 * 3600
    #: scrypt ``n`` of new password hashes (a power of two).
    scrypt_n: int = SCRYPT_N

    def __post_init__(self) -> None:
        if self.session_ttl_s <= 0 or self.join_token_ttl_s <= 0:
            raise ValueError("session_ttl_s and join_token_ttl_s must be positive")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError("scrypt_n must be a power of two")


class AccountService:
    """Credentials to identities: users, passwords, sessions, API and join tokens.

    Users and tokens are also kept by id in memory, for their *names* only (timelines and pages
    show who did what); no credential is ever judged from that memory.
    """

    def __init__(
        self,
        store: AccountStore,
        secret_key: bytes,
        *,
        config: AccountConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config or AccountConfig()
        self._clock = clock
        self._session_key = hmac.new(secret_key, b"inspect/session/v2", hashlib.sha256).digest()
        self._join = JoinTokens(secret_key, ttl_s=self._config.join_token_ttl_s, clock=clock)
        self._users: dict[str, User] = {}
        self._tokens: dict[str, ApiToken] = {}
        self._dummy_hash: str | None = None
        self._listeners: list[RevocationListener] = []

    @property
    def config(self) -> AccountConfig:
        return self._config

    async def load(self) -> None:
        """Fill the names of users and API tokens from the store."""
        users = await self._store.list_users()
        tokens = await self._store.list_api_tokens()
        self._users = {record.id: User.from_record(record) for record in users}
        self._tokens = {record.id: ApiToken.from_record(record) for record in tokens}

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """Have ``listener`` told of every credential that ends through this service."""
        self._listeners.append(listener)

    async def _announce(self, revocation: Revocation) -> None:
        logger.info(
            "credential ended",
            extra={"subject": str(revocation.subject), "reason": revocation.reason.value},
        )
        for listener in list(self._listeners):
            try:
                await listener(revocation)
            except Exception:
                logger.exception("revocation listener failed for %s", revocation.subject)

    # -- staff users ---------------------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, partial(hash_password, password, n=self._config.scrypt_n)
        )

    @staticmethod
    def _check_password(password: str, field: str = "password") -> None:
        problem = password_problem(password)
        if problem is not None:
            raise InvalidRequest(f"{field}: {problem}", fields=(field,))

    @staticmethod
    def _staff_role(role: Role | str) -> Role:
        try:
            staff = Role(role)
        except ValueError:
            staff = Role.CUSTOMER
        if staff not in STAFF_ROLES:
            raise InvalidRequest(
                f"role: staff roles are agent, reviewer, admin (got {role})", fields=("role",)
            )
        return staff

    async def create_user(self, username: str, password: str, name: str, role: Role | str) -> User:
        """A staff account; :class:`Conflict` if the username is taken."""
        staff = self._staff_role(role)
        self._check_password(password)
        record = UserRecord(
            id="u_" + secrets.token_hex(6),
            username=username,
            name=name,
            role=staff.value,
            password_hash=await self._hash(password),
            created_at=self._clock(),
        )
        if not await self._store.add_user(record):
            raise Conflict(f"username {username!r} is taken", fields=("username",))
        user = User.from_record(record)
        self._users[user.id] = user
        logger.info("user created", extra={"user_id": user.id, "role": user.role.value})
        return user

    async def user_count(self) -> int:
        return await self._store.user_count()

    async def list_users(self) -> list[User]:
        users = [User.from_record(record) for record in await self._store.list_users()]
        self._users.update((user.id, user) for user in users)
        return users

    def cached_token(self, token_id: str) -> ApiToken | None:
        """An API token's name and role (never the token), as last read: for display only."""
        return self._tokens.get(token_id)

    def cached_user(self, user_id: str) -> User | None:
        """The user as last read: for display only (names in timelines and pages)."""
        return self._users.get(user_id)

    async def get_user(self, user_id: str) -> User | None:
        record = await self._store.get_user(user_id)
        if record is None:
            self._users.pop(user_id, None)
            return None
        user = User.from_record(record)
        self._users[user.id] = user
        return user

    async def find_user(self, username: str) -> User | None:
        """The user with this sign-in name (compared regardless of case)."""
        record = await self._store.find_user(username)
        return User.from_record(record) if record is not None else None

    async def login(self, username: str, password: str) -> User:
        """The user for these credentials, else ``invalid_credentials`` (same answer and about
        the same time for an unknown name, a wrong password and a disabled account). A hash
        made at a lower cost than today's is replaced by one at today's cost."""
        record = await self._store.find_user(username)
        loop = asyncio.get_running_loop()
        if record is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash("x" * 16)
            await loop.run_in_executor(None, verify_password, password, self._dummy_hash)
            ok = False
        else:
            ok = await loop.run_in_executor(
                None, partial(verify_password, password, record.password_hash)
            )
        if not ok or record is None or record.disabled:
            logger.info("login failed")
            raise DomainError(
                "wrong username or password", code=DomainErrorCode.INVALID_CREDENTIALS
            )
        if hash_cost(record.password_hash) < self._config.scrypt_n:
            stronger = await self._hash(password)
            if await self._store.replace_password_hash(
                record.id, old=record.password_hash, new=stronger
            ):
                logger.info("password rehashed", extra={"user_id": record.id})
        user = User.from_record(record)
        self._users[user.id] = user
        logger.info("login", extra={"user_id": user.id})
        return user

    async def update_user(
        self,
        user_id: str,
        *,
        role: Role | str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> User:
        """An admin's change to an account. Any change ends every session of the user (and so
        every socket they opened); :class:`NotFound`, or :class:`Conflict` if no enabled admin
        would be left."""
        current = await self._store.get_user(user_id)
        if current is None:
            raise NotFound("no such user")
        new_role = self._staff_role(role).value if role is not None else None
        if password is not None:
            self._check_password(password)
        update = UserUpdate(
            role=new_role if new_role != current.role else None,
            disabled=disabled if disabled is not None and disabled != current.disabled else None,
            password_hash=await self._hash(password) if password is not None else None,
        )
        if update == UserUpdate():
            return User.from_record(current)
        try:
            record = await self._store.update_user(user_id, update, at=self._clock())
        except LastAdminError:
            raise Conflict(
                "at least one enabled admin must remain", fields=("role", "disabled")
            ) from None
        if record is None:
            raise NotFound("no such user")
        user = User.from_record(record)
        self._users[user.id] = user
        if update.disabled:
            reason = RevocationReason.DISABLED
        elif update.role is not None:
            reason = RevocationReason.ROLE_CHANGED
        elif update.password_hash is not None:
            reason = RevocationReason.PASSWORD_CHANGED
        else:  # enabled again: its sessions had ended when it was disabled
            return user
        logger.info("account changed", extra={"user_id": user.id, "reason": reason.value})
        await self._announce(Revocation(SubjectId.user(user.id), reason))
        return user

    async def change_password(self, user_id: str, old: str, new: str) -> IssuedSession:
        """The user's own change: ``old`` must be the current password. Every session of the
        user ends; the returned one replaces the caller's."""
        self._check_password(new, "new_password")
        record = await self._store.get_user(user_id)
        if record is None or record.disabled:
            raise NotFound("no such user")
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(
            None, partial(verify_password, old, record.password_hash)
        ):
            raise DomainError(
                "the current password is wrong", code=DomainErrorCode.INVALID_CREDENTIALS
            )
        changed = await self._store.update_user(
            user_id, UserUpdate(password_hash=await self._hash(new)), at=self._clock()
        )
        if changed is None:
            raise NotFound("no such user")
        user = User.from_record(changed)
        await self._announce(Revocation(SubjectId.user(user.id), RevocationReason.PASSWORD_CHANGED))
        return await self.start_session(user)

    # -- sessions ------------------------------------------------------------------------------

    def _session_signature(self, payload: str) -> str:
        return b64e(hmac.new(self._session_key, payload.encode("ascii"), hashlib.sha256).digest())

    async def start_session(self, user: User) -> IssuedSession:
        """A new session of ``user``. Its value (``<secret>.<expiry>.<HMAC of both>``) goes
        into the cookie; the store keeps the secret's digest. The signature lets a value this
        service never issued be refused without a lookup."""
        now = self._clock()
        secret = secrets.token_urlsafe(32)
        expires = int(now) + self._config.session_ttl_s
        record = SessionRecord(
            id="s_" + secrets.token_hex(8),
            user_id=user.id,
            token_hash=token_digest(secret),
            created_at=now,
            expires_at=float(expires),
        )
        await self._store.add_session(record)
        payload = f"{secret}.{expires}"
        return IssuedSession(
            value=f"{payload}.{self._session_signature(payload)}",
            id=record.id,
            expires_at=float(expires),
        )

    def _session_secret(self, value: str) -> str | None:
        """The secret of a well-formed, signed, unexpired session value, else ``None``."""
        if len(value) > _MAX_TOKEN_CHARS:
            return None
        parts = value.split(".")
        if len(parts) != 3:
            return None
        secret, expiry, signature = parts
        try:
            expected = self._session_signature(f"{secret}.{expiry}")
            if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
                return None
            if int(expiry) <= self._clock():
                return None
        except (UnicodeEncodeError, ValueError):
            return None
        return secret

    async def end_session(self, session_id: str, user_id: str) -> bool:
        """Sign out of one session; ``False`` if it had already ended."""
        if not await self._store.end_session(session_id, at=self._clock()):
            return False
        await self._announce(
            Revocation(SubjectId.user(user_id), RevocationReason.SIGNED_OUT, session_id)
        )
        return True

    async def end_all_sessions(self, user_id: str) -> int:
        """Sign the user out everywhere; how many sessions ended."""
        ended = await self._store.end_user_sessions(user_id, at=self._clock())
        await self._announce(
            Revocation(SubjectId.user(user_id), RevocationReason.SIGNED_OUT_EVERYWHERE)
        )
        return ended

    # -- API tokens ----------------------------------------------------------------------------

    async def create_api_token(
        self, name: str, role: Role | str = INTEGRATION, *, created_by: str | None = None
    ) -> IssuedToken:
        """A bearer token (shown once). ``integration`` unless a staff role is asked for."""
        role_name = role.value if isinstance(role, Role) else str(role)
        if role_name not in API_TOKEN_ROLES:
            raise InvalidRequest(
                f"role: API tokens take {', '.join(API_TOKEN_ROLES)} (got {role_name})",
                fields=("role",),
            )
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiTokenRecord(
            id="t_" + secrets.token_hex(6),
            name=name,
            role=role_name,
            token_hash=token_digest(token),
            created_by=created_by,
            created_at=self._clock(),
        )
        await self._store.add_api_token(record)
        self._tokens[record.id] = ApiToken.from_record(record)
        logger.info("API token created", extra={"token_id": record.id, "role": role_name})
        return IssuedToken(token=token, id=record.id)

    async def list_api_tokens(self) -> list[ApiToken]:
        tokens = [ApiToken.from_record(record) for record in await self._store.list_api_tokens()]
        self._tokens.update((token.id, token) for token in tokens)
        return tokens

    async def revoke_api_token(self, token_id: str) -> bool:
        if not await self._store.revoke_api_token(token_id, at=self._clock()):
            return False
        record = await self._store.get_api_token(token_id)
        if record is not None:
            self._tokens[token_id] = ApiToken.from_record(record)
        await self._announce(
            Revocation(SubjectId.api_token(token_id), RevocationReason.TOKEN_REVOKED)
        )
        return True

    # -- customer join tokens ------------------------------------------------------------------

    def issue_join_token(self, case_id: str, ttl_s: int | None = None) -> JoinLink:
        """A customer token for ``case_id``: base64url(JSON payload) "." base64url(HMAC)."""
        return self._join.issue(case_id, ttl_s)

    def verify_join_token(self, token: str) -> Identity:
        """The customer identity of a join token; ``SignalingError`` ``unauthorized`` (forged,
        malformed) or ``token_expired``, as ``signaling.Authenticator`` says."""
        return self._join.verify(token)

    # -- credentials to callers ----------------------------------------------------------------

    async def authenticate(self, bearer: str | None, session_cookie: str | None) -> Caller | None:
        """Staff (or an integration) from a bearer token or else a session value, as the store
        says now.

        ``bearer``: ``None`` when the caller sent no ``Authorization``, ``""`` when it sent one
        that holds no bearer token. Whoever sends an ``Authorization`` is judged by it alone:
        the session cookie is then not looked at."""
        if bearer is not None:
            return await self._token_caller(bearer) if bearer else None
        if not session_cookie:
            return None
        secret = self._session_secret(session_cookie)
        if secret is None:
            return None
        found = await self._store.find_session(token_digest(secret))
        if found is None:
            return None
        session, record = found
        if session.revoked_at is not None or session.expires_at <= self._clock():
            return None
        if record.disabled:
            return None
        user = User.from_record(record)
        self._users[user.id] = user
        return Caller(
            identity=user.identity(session.id),
            kind=CredentialKind.SESSION,
            credential_id=session.id,
            role=user.role.value,
            username=user.username,
        )

    async def _token_caller(self, bearer: str) -> Caller | None:
        if len(bearer) > _MAX_TOKEN_CHARS or not bearer.startswith(API_TOKEN_PREFIX):
            return None  # not one of ours: no lookup
        record = await self._store.find_api_token(token_digest(bearer))
        if record is None or record.revoked_at is not None:
            return None
        token = ApiToken.from_record(record)
        self._tokens[token.id] = token
        return Caller(
            identity=token.identity(),
            kind=CredentialKind.API_TOKEN,
            credential_id=token.id,
            role=token.role,
        )

    async def still_valid(self, identity: Identity) -> bool:
        """Whether the credential ``identity`` was made from still holds: the token is not
        revoked, or the account is enabled with the same role (and, when the identity names
        its session, that session has not ended or expired). Identities this service does not
        vouch for by a stored credential (customers' join links, cameras) are not judged here:
        ``True``."""
        subject = SubjectId.parse(identity.subject)
        if subject.kind is SubjectKind.API_TOKEN:
            token = await self._store.get_api_token(subject.key)
            return (
                token is not None
                and token.revoked_at is None
                and ApiToken.from_record(token).identity_role == identity.role
            )
        if subject.kind is not SubjectKind.USER:
            return True
        user = await self._store.get_user(str(subject))
        if user is None or user.disabled or user.role != identity.role.value:
            return False
        session_id = credential_of(identity)
        if session_id is None:
            return True
        session = await self._store.get_session(session_id)
        return (
            session is not None
            and session.user_id == user.id
            and session.revoked_at is None
            and session.expires_at > self._clock()
        )
