"""Who is calling: staff accounts (scrypt password hashes, signed session values), API bearer
tokens for integrations, and customers' join tokens (HMAC-signed, expiring, bound to one case).

Every signature uses a subkey derived from the one secret key with a purpose label, so a value
signed for one purpose (a session cookie) never verifies as another (a join token). Reading
credentials from a request and writing the cookie is the HTTP edge's part
(``server.http.auth``); this module sees only the credentials' text.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest
from server.storage.accounts import AccountStore, ApiTokenRecord, UserRecord
from signaling import Identity, Role, SignalingError, SignalingErrorCode, SubjectId

from ._b64 import b64d, b64e
from .model import STAFF_ROLES, ApiToken, IssuedToken, JoinLink, User
from .passwords import hash_password, verify_password
from .tokens import token_digest

__all__ = ["API_TOKEN_PREFIX", "AccountConfig", "AccountService"]

logger = logging.getLogger(__name__)

API_TOKEN_PREFIX = "insp_"
_MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """How long what accounts sign stays valid."""

    #: Seconds a session value (the sign-in cookie) is valid.
    session_ttl_s: int = 12 * 3600
    #: Seconds a customer's join token is valid unless the caller gives its own.
    join_token_ttl_s: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.session_ttl_s <= 0 or self.join_token_ttl_s <= 0:
            raise ValueError("session_ttl_s and join_token_ttl_s must be positive")


class AccountService:
    """Credentials to identities: users, passwords, session values, API and join tokens.

    :meth:`identify_credentials` is synchronous (the WebSocket upgrade calls it), so users and
    live API tokens are cached in memory: loaded by :meth:`load`, kept current by this object's
    own writes, and filled on a miss by the async :meth:`authenticate_credentials`.
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
        self._session_key = hmac.new(secret_key, b"inspect/session/v1", hashlib.sha256).digest()
        self._join_key = hmac.new(secret_key, b"inspect/join/v1", hashlib.sha256).digest()
        self._users: dict[str, User] = {}
        self._tokens: dict[str, ApiToken] = {}  # by SHA-256 of the token
        self._dummy_hash: str | None = None

    @property
    def config(self) -> AccountConfig:
        return self._config

    async def load(self) -> None:
        """Fill the cache of users and live API tokens from the store."""
        users = await self._store.list_users()
        tokens = await self._store.live_api_tokens()
        self._users = {record.id: User.from_record(record) for record in users}
        self._tokens = {record.token_hash: ApiToken.from_record(record) for record in tokens}

    # -- staff users ---------------------------------------------------------------------------

    async def create_user(self, username: str, password: str, name: str, role: Role) -> User:
        """A staff account; :class:`Conflict` if the username is taken."""
        role = Role(role)
        if role not in STAFF_ROLES:
            raise InvalidRequest(f"role: staff roles are agent, reviewer, admin (got {role})")
        if len(password) < 8:
            raise InvalidRequest("password: at least 8 characters", fields=("password",))
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(None, hash_password, password)
        record = UserRecord(
            id="u_" + secrets.token_hex(6),
            username=username,
            name=name,
            role=role.value,
            password_hash=encoded,
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

    def cached_token(self, token_id: str) -> ApiToken | None:
        """An API token's record (never the token itself) from the in-memory cache."""
        return next((t for t in self._tokens.values() if t.id == token_id), None)

    def cached_user(self, user_id: str) -> User | None:
        """The user from the in-memory cache (kept by :meth:`load` and every change)."""
        return self._users.get(user_id)

    async def get_user(self, user_id: str) -> User | None:
        record = await self._store.get_user(user_id)
        if record is None:
            self._users.pop(user_id, None)
            return None
        user = User.from_record(record)
        self._users[user.id] = user
        return user

    async def login(self, username: str, password: str) -> User:
        """The user for these credentials, else ``invalid_credentials`` (same answer and about
        the same time for an unknown name as for a wrong password)."""
        record = await self._store.find_user(username)
        loop = asyncio.get_running_loop()
        if record is None:
            if self._dummy_hash is None:
                self._dummy_hash = await loop.run_in_executor(None, hash_password, "x" * 16)
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
        user = User.from_record(record)
        self._users[user.id] = user
        logger.info("login", extra={"user_id": user.id})
        return user

    # -- session values ------------------------------------------------------------------------

    def _session_signature(self, payload: str) -> str:
        return b64e(hmac.new(self._session_key, payload.encode("ascii"), hashlib.sha256).digest())

    def session_value(self, user: User) -> str:
        """``<user id>.<expiry>.<HMAC-SHA256 of both>``: what the session cookie carries."""
        payload = f"{user.id}.{int(self._clock()) + self._config.session_ttl_s}"
        return f"{payload}.{self._session_signature(payload)}"

    def session_user_id(self, value: str) -> str | None:
        """The user id of a valid, unexpired session value, else ``None``."""
        if len(value) > _MAX_TOKEN_CHARS:
            return None
        parts = value.split(".")
        if len(parts) != 3:
            return None
        user_id, expiry, signature = parts
        expected = self._session_signature(f"{user_id}.{expiry}")
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
            return None
        try:
            if int(expiry) <= self._clock():
                return None
        except ValueError:
            return None
        return user_id

    # -- API tokens ----------------------------------------------------------------------------

    async def create_api_token(
        self, name: str, role: Role = Role.ADMIN, *, created_by: str | None = None
    ) -> IssuedToken:
        role = Role(role)
        if role not in STAFF_ROLES:
            raise InvalidRequest("role: API tokens take agent, reviewer or admin", fields=("role",))
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiTokenRecord(
            id="t_" + secrets.token_hex(6),
            name=name,
            role=role.value,
            token_hash=token_digest(token),
            created_by=created_by,
            created_at=self._clock(),
        )
        await self._store.add_api_token(record)
        self._tokens[record.token_hash] = ApiToken.from_record(record)
        logger.info("API token created", extra={"token_id": record.id})
        return IssuedToken(token=token, id=record.id)

    async def revoke_api_token(self, token_id: str) -> bool:
        changed = await self._store.revoke_api_token(token_id, at=self._clock())
        self._tokens = {k: v for k, v in self._tokens.items() if v.id != token_id}
        return changed

    # -- customer join tokens ------------------------------------------------------------------

    def _join_signature(self, payload: str) -> str:
        return b64e(hmac.new(self._join_key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue_join_token(self, case_id: str, ttl_s: int | None = None) -> JoinLink:
        """A customer token for ``case_id``: base64url(JSON payload) "." base64url(HMAC)."""
        expires = int(self._clock()) + (ttl_s or self._config.join_token_ttl_s)
        body = {"c": case_id, "r": Role.CUSTOMER.value, "exp": expires, "n": secrets.token_hex(6)}
        payload = b64e(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return JoinLink(
            case_id=case_id, token=f"{payload}.{self._join_signature(payload)}", expires_at=expires
        )

    def verify_join_token(self, token: str) -> Identity:
        """The customer identity of a join token; ``SignalingError`` ``unauthorized`` (forged,
        malformed) or ``token_expired``, as ``signaling.Authenticator`` says."""
        bad = SignalingError(SignalingErrorCode.UNAUTHORIZED, "invalid join token")
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise bad
        payload, signature = token.split(".")
        try:
            expected = self._join_signature(payload)
        except UnicodeEncodeError:
            raise bad from None
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
            raise bad
        try:
            body = json.loads(b64d(payload))
        except (ValueError, binascii.Error):
            raise bad from None
        if (
            not isinstance(body, dict)
            or body.get("r") != Role.CUSTOMER.value
            or not isinstance(body.get("c"), str)
            or not isinstance(body.get("exp"), int)
        ):
            raise bad
        if body["exp"] <= self._clock():
            raise SignalingError(SignalingErrorCode.TOKEN_EXPIRED, "the join link has expired")
        case_id: str = body["c"]
        return Identity(
            subject=SubjectId.customer(case_id),
            name="Customer",
            role=Role.CUSTOMER,
            case_id=case_id,
        )

    # -- credentials to identities -------------------------------------------------------------

    def identify_credentials(
        self, bearer: str | None, session_cookie: str | None
    ) -> Identity | None:
        """Staff from a bearer token or else a session value, from the in-memory cache.

        ``bearer``: ``None`` when the caller sent no ``Authorization``, ``""`` when it sent one
        that holds no bearer token. Whoever sends an ``Authorization`` is judged by it alone:
        the session cookie is then not looked at."""
        if bearer is not None:
            token = self._tokens.get(token_digest(bearer)) if bearer else None
            return token.identity() if token is not None else None
        if not session_cookie:
            return None
        user_id = self.session_user_id(session_cookie)
        user = self._users.get(user_id) if user_id is not None else None
        if user is None or user.disabled:
            return None
        return user.identity()

    async def authenticate_credentials(
        self, bearer: str | None, session_cookie: str | None
    ) -> Identity | None:
        """Like :meth:`identify_credentials`, but a cache miss is looked up in the store (a
        user or token created by another node)."""
        identity = self.identify_credentials(bearer, session_cookie)
        if identity is not None:
            return identity
        if bearer:
            digest = token_digest(bearer)
            record = await self._store.find_api_token(digest)
            if record is None or record.revoked_at is not None:
                return None
            token = ApiToken.from_record(record)
            self._tokens[digest] = token
            return token.identity()
        if bearer is not None:
            return None
        user_id = self.session_user_id(session_cookie) if session_cookie else None
        if user_id is None:
            return None
        user = await self.get_user(user_id)
        if user is None or user.disabled:
            return None
        return user.identity()
