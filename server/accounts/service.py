"""Who is calling: staff accounts (scrypt password hashes, signed session cookies), API bearer
tokens for integrations, and customers' join tokens (HMAC-signed, expiring, bound to one case).

Every signature uses a subkey derived from the one secret key with a purpose label, so a value
signed for one purpose (a session cookie) never verifies as another (a join token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from server.errors import Conflict, DomainError, DomainErrorCode, InvalidRequest
from server.settings import Settings
from server.storage.sqlite import Database
from signaling.errors import SignalingError, SignalingErrorCode
from signaling.messages import Role
from signaling.ports import Identity

__all__ = [
    "ApiToken",
    "Auth",
    "IssuedToken",
    "JoinLink",
    "SESSION_COOKIE",
    "STAFF_ROLES",
    "User",
    "hash_password",
    "load_secret_key",
    "token_digest",
    "verify_password",
]

logger = logging.getLogger(__name__)

SESSION_COOKIE = "inspect_session"
STAFF_ROLES = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})
SECRET_KEY_FILE = "secret_key"
API_TOKEN_PREFIX = "insp_"
_MAX_TOKEN_CHARS = 2048

# scrypt cost: 16 MiB and ~50 ms per hash; parameters are stored with each hash so they can
# be raised later without invalidating existing passwords.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh 16-byte salt. CPU-heavy: call off the loop."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_b64d(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_b64d(expected)),
        )
        return hmac.compare_digest(digest, _b64d(expected))
    except (ValueError, binascii.Error):
        return False


def token_digest(token: str) -> str:
    """SHA-256 hex of an API token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_secret_key(settings: Settings) -> bytes:
    """``settings.secret_key``, or a random key generated once into ``data_dir/secret_key``
    (mode 0600) and read back on later starts. Blocking file IO: call at start-up."""
    if settings.secret_key:
        if len(settings.secret_key) < 16:
            logger.warning("INSPECT_SECRET_KEY is shorter than 16 characters")
        return settings.secret_key.encode("utf-8")
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
        text = path.read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a hex secret key") from exc
        if len(key) < 16:
            raise ValueError(f"{path} holds a secret key shorter than 16 bytes") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    logger.info("generated a new secret key in %s", path)
    return key


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    name: str
    role: Role
    created_at: float
    disabled: bool = False

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

    def identity(self) -> Identity:
        return Identity(subject=f"token:{self.id}", name=self.name, role=self.role)


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


def _user_from_row(row: sqlite3.Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        name=row["name"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


def _token_from_row(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        id=row["id"], name=row["name"], role=Role(row["role"]), created_at=row["created_at"]
    )


class Auth:
    """Credentials to identities. Fits ``signaling.Authenticator``.

    ``identify`` is synchronous (the WebSocket upgrade calls it), so users and API tokens are
    cached in memory: loaded by :meth:`load`, kept current by this object's own writes, and
    filled on a miss by the async :meth:`authenticate` that the REST API uses.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        secret_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._session_key = hmac.new(secret_key, b"inspect/session/v1", hashlib.sha256).digest()
        self._join_key = hmac.new(secret_key, b"inspect/join/v1", hashlib.sha256).digest()
        self._users: dict[str, User] = {}
        self._tokens: dict[str, ApiToken] = {}  # by SHA-256 of the token
        self._dummy_hash: str | None = None

    @property
    def secure_cookies(self) -> bool:
        return self._settings.base_url.startswith("https://")

    async def load(self) -> None:
        """Fill the cache of users and live API tokens from the database."""
        users = await self._db.fetchall("SELECT * FROM users")
        tokens = await self._db.fetchall("SELECT * FROM api_tokens WHERE revoked_at IS NULL")
        self._users = {row["id"]: _user_from_row(row) for row in users}
        self._tokens = {row["token_hash"]: _token_from_row(row) for row in tokens}

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
        user = User(
            id="u_" + secrets.token_hex(6),
            username=username,
            name=name,
            role=role,
            created_at=self._clock(),
        )
        try:
            await self._db.execute(
                "INSERT INTO users (id, username, name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user.id, user.username, user.name, user.role.value, encoded, user.created_at),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"username {username!r} is taken", fields=("username",)) from exc
        self._users[user.id] = user
        logger.info("user created", extra={"user_id": user.id, "role": user.role.value})
        return user

    async def user_count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row is not None else 0

    def cached_token(self, token_id: str) -> ApiToken | None:
        """An API token's record (never the token itself) from the in-memory cache."""
        return next((t for t in self._tokens.values() if t.id == token_id), None)

    def cached_user(self, user_id: str) -> User | None:
        """The user from the in-memory cache (kept by :meth:`load` and every change)."""
        return self._users.get(user_id)

    async def get_user(self, user_id: str) -> User | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            self._users.pop(user_id, None)
            return None
        user = _user_from_row(row)
        self._users[user.id] = user
        return user

    async def login(self, username: str, password: str) -> User:
        """The user for these credentials, else ``invalid_credentials`` (same answer and about
        the same time for an unknown name as for a wrong password)."""
        row = await self._db.fetchone("SELECT * FROM users WHERE username = ?", (username,))
        loop = asyncio.get_running_loop()
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = await loop.run_in_executor(None, hash_password, "x" * 16)
            await loop.run_in_executor(None, verify_password, password, self._dummy_hash)
            ok = False
        else:
            ok = await loop.run_in_executor(
                None, partial(verify_password, password, row["password_hash"])
            )
        if not ok or row is None or row["disabled"]:
            logger.info("login failed")
            raise DomainError(
                "wrong username or password", code=DomainErrorCode.INVALID_CREDENTIALS
            )
        user = _user_from_row(row)
        self._users[user.id] = user
        logger.info("login", extra={"user_id": user.id})
        return user

    # -- session cookies -----------------------------------------------------------------------

    def _session_signature(self, payload: str) -> str:
        return _b64e(hmac.new(self._session_key, payload.encode("ascii"), hashlib.sha256).digest())

    def session_value(self, user: User) -> str:
        """``<user id>.<expiry>.<HMAC-SHA256 of both>``."""
        payload = f"{user.id}.{int(self._clock()) + self._settings.session_ttl_s}"
        return f"{payload}.{self._session_signature(payload)}"

    def session_user_id(self, value: str) -> str | None:
        """The user id of a valid, unexpired session cookie value, else ``None``."""
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

    def set_session_cookie(self, response: web.StreamResponse, user: User) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.session_value(user),
            max_age=self._settings.session_ttl_s,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.secure_cookies,
        )

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="Lax", secure=self.secure_cookies
        )

    # -- API tokens ----------------------------------------------------------------------------

    async def create_api_token(
        self, name: str, role: Role = Role.ADMIN, *, created_by: str | None = None
    ) -> IssuedToken:
        role = Role(role)
        if role not in STAFF_ROLES:
            raise InvalidRequest("role: API tokens take agent, reviewer or admin", fields=("role",))
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        api_token = ApiToken(
            id="t_" + secrets.token_hex(6), name=name, role=role, created_at=self._clock()
        )
        digest = token_digest(token)
        await self._db.execute(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (api_token.id, name, role.value, digest, created_by, api_token.created_at),
        )
        self._tokens[digest] = api_token
        logger.info("API token created", extra={"token_id": api_token.id})
        return IssuedToken(token=token, id=api_token.id)

    async def revoke_api_token(self, token_id: str) -> bool:
        changed = await self._db.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (self._clock(), token_id),
        )
        self._tokens = {k: v for k, v in self._tokens.items() if v.id != token_id}
        return changed > 0

    # -- customer join tokens ------------------------------------------------------------------

    def _join_signature(self, payload: str) -> str:
        return _b64e(hmac.new(self._join_key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue_join_token(self, case_id: str, ttl_s: int | None = None) -> JoinLink:
        """A customer token for ``case_id``: base64url(JSON payload) "." base64url(HMAC)."""
        expires = int(self._clock()) + (ttl_s or self._settings.join_token_ttl_s)
        body = {"c": case_id, "r": Role.CUSTOMER.value, "exp": expires, "n": secrets.token_hex(6)}
        payload = _b64e(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return JoinLink(
            case_id=case_id, token=f"{payload}.{self._join_signature(payload)}", expires_at=expires
        )

    def verify_join_token(self, token: str) -> Identity:
        """The customer identity of a join token; ``SignalingError`` ``unauthorized`` (forged,
        malformed) or ``token_expired``."""
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
            body = json.loads(_b64d(payload))
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
            subject=f"customer:{case_id}", name="Customer", role=Role.CUSTOMER, case_id=case_id
        )

    # -- requests ------------------------------------------------------------------------------

    @staticmethod
    def _bearer(request: web.BaseRequest) -> str | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return ""
        return value.strip()

    def identify(self, request: web.BaseRequest) -> Identity | None:
        """Staff from a bearer token or the session cookie (from the in-memory cache)."""
        bearer = self._bearer(request)
        if bearer is not None:
            token = self._tokens.get(token_digest(bearer)) if bearer else None
            return token.identity() if token is not None else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        user_id = self.session_user_id(cookie)
        user = self._users.get(user_id) if user_id is not None else None
        if user is None or user.disabled:
            return None
        return user.identity()

    async def authenticate(self, request: web.BaseRequest) -> Identity | None:
        """Like :meth:`identify`, but a cache miss is looked up in the database (a user or token
        created by another node)."""
        identity = self.identify(request)
        if identity is not None:
            return identity
        bearer = self._bearer(request)
        if bearer:
            digest = token_digest(bearer)
            row = await self._db.fetchone(
                "SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL", (digest,)
            )
            if row is None:
                return None
            token = _token_from_row(row)
            self._tokens[digest] = token
            return token.identity()
        if bearer is not None:
            return None
        cookie = request.cookies.get(SESSION_COOKIE)
        user_id = self.session_user_id(cookie) if cookie else None
        if user_id is None:
            return None
        user = await self.get_user(user_id)
        if user is None or user.disabled:
            return None
        return user.identity()
