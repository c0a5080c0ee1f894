"""Staff users, sessions and API tokens on PostgreSQL (tables ``users``, ``sessions`` and
``api_tokens``).

Usernames are unique regardless of case through a unique index on ``lower(username)``. A
change that could leave no enabled admin takes one advisory lock first, so two nodes demoting
the last two admins at once cannot both see the other still there."""

from __future__ import annotations

from server.storage.accounts import (
    ApiTokenRecord,
    LastAdminError,
    SessionRecord,
    UserRecord,
    UserUpdate,
)

from .._rows import api_token_record as _token
from .._rows import session_record as _session
from .._rows import user_record as _user
from .database import Connection, PostgresDatabase

__all__ = ["PostgresAccountStore"]

_USER_COLUMNS = "id, username, name, role, password_hash, created_at, disabled"
_SESSION_COLUMNS = "id, user_id, token_hash, created_at, expires_at, revoked_at"
_TOKEN_COLUMNS = "id, name, role, token_hash, created_by, created_at, revoked_at"

#: Held (for the transaction) by every change of a user's role or state.
_ADMINS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('inspectd.users.admins'))"


class PostgresAccountStore:
    """:class:`server.storage.AccountStore` on a :class:`PostgresDatabase`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    # -- users ---------------------------------------------------------------------------------

    async def add_user(self, user: UserRecord) -> bool:
        # ON CONFLICT on the lower(username) index: a name taken in any case inserts nothing.
        changed = await self._db.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT ((lower(username))) DO NOTHING",
            (
                user.id,
                user.username,
                user.name,
                user.role,
                user.password_hash,
                user.created_at,
                user.disabled,
            ),
        )
        return changed > 0

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", (user_id,)
        )
        return _user(row) if row is not None else None

    async def find_user(self, username: str) -> UserRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE lower(username) = lower($1)", (username,)
        )
        return _user(row) if row is not None else None

    async def list_users(self) -> list[UserRecord]:
        rows = await self._db.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at, id")
        return [_user(row) for row in rows]

    async def user_count(self) -> int:
        return int(await self._db.fetchval("SELECT COUNT(*) FROM users"))

    async def update_user(
        self, user_id: str, update: UserUpdate, *, at: float
    ) -> UserRecord | None:
        async def work(conn: Connection) -> UserRecord | None:
            await conn.execute(_ADMINS_LOCK)
            row = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id
            )
            if row is None:
                return None
            before = _user(row)
            after = UserRecord(
                id=before.id,
                username=before.username,
                name=before.name,
                role=update.role if update.role is not None else before.role,
                password_hash=(
                    update.password_hash
                    if update.password_hash is not None
                    else before.password_hash
                ),
                created_at=before.created_at,
                disabled=update.disabled if update.disabled is not None else before.disabled,
            )
            await conn.execute(
                "UPDATE users SET role = $1, disabled = $2, password_hash = $3 WHERE id = $4",
                after.role,
                after.disabled,
                after.password_hash,
                user_id,
            )
            admins = await conn.fetchval(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled"
            )
            if admins == 0 and before.role == "admin" and not before.disabled:
                # Raising rolls the transaction back: the update above is undone.
                raise LastAdminError(user_id)
            await conn.execute(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                at,
                user_id,
            )
            return after

        return await self._db.transaction(work)

    async def replace_password_hash(self, user_id: str, *, old: str, new: str) -> bool:
        changed = await self._db.execute(
            "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
            (new, user_id, old),
        )
        return changed > 0

    # -- sessions ------------------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute("DELETE FROM sessions WHERE expires_at < $1", session.created_at)
            await conn.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                session.id,
                session.user_id,
                session.token_hash,
                session.created_at,
                session.expires_at,
                session.revoked_at,
            )

        await self._db.transaction(work)

    async def find_session(self, token_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = await self._db.fetchrow(
            "SELECT s.id AS session_id, s.user_id, s.token_hash, s.created_at AS session_at,"
            " s.expires_at, s.revoked_at, u.id, u.username, u.name, u.role, u.password_hash,"
            " u.created_at, u.disabled"
            " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.token_hash = $1",
            (token_hash,),
        )
        if row is None:
            return None
        session = SessionRecord(
            id=row["session_id"],
            user_id=row["user_id"],
            token_hash=row["token_hash"],
            created_at=row["session_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )
        return session, _user(row)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = $1", (session_id,)
        )
        return _session(row) if row is not None else None

    async def end_session(self, session_id: str, *, at: float) -> bool:
        changed = await self._db.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            (at, session_id),
        )
        return changed > 0

    async def end_user_sessions(self, user_id: str, *, at: float) -> int:
        return await self._db.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            (at, user_id),
        )

    # -- API tokens ----------------------------------------------------------------------------

    async def add_api_token(self, token: ApiTokenRecord) -> None:
        await self._db.execute(
            f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (
                token.id,
                token.name,
                token.role,
                token.token_hash,
                token.created_by,
                token.created_at,
                token.revoked_at,
            ),
        )

    async def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1", (token_hash,)
        )
        return _token(row) if row is not None else None

    async def get_api_token(self, token_id: str) -> ApiTokenRecord | None:
        row = await self._db.fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1", (token_id,)
        )
        return _token(row) if row is not None else None

    async def list_api_tokens(self) -> list[ApiTokenRecord]:
        rows = await self._db.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        )
        return [_token(row) for row in rows]

    async def live_api_tokens(self) -> list[ApiTokenRecord]:
        rows = await self._db.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE revoked_at IS NULL"
            " ORDER BY created_at, id"
        )
        return [_token(row) for row in rows]

    async def revoke_api_token(self, token_id: str, *, at: float) -> bool:
        changed = await self._db.execute(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            (at, token_id),
        )
        return changed > 0
