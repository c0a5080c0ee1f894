"""The accounts store on SQLite: the ``users``, ``sessions`` and ``api_tokens`` tables of
:mod:`server.storage.sqlite.database`."""

from __future__ import annotations

import sqlite3

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
from .database import Database

__all__ = ["SqliteAccountStore"]

_USER_COLUMNS = "id, username, name, role, password_hash, created_at, disabled"


class SqliteAccountStore:
    """:class:`server.storage.AccountStore` on the service's SQLite :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- users ---------------------------------------------------------------------------------

    async def add_user(self, user: UserRecord) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            # The username column is UNIQUE COLLATE NOCASE: look first, so that an
            # IntegrityError is never mistaken for a taken name.
            taken = conn.execute(
                "SELECT 1 FROM users WHERE username = ?", (user.username,)
            ).fetchone()
            if taken is not None:
                return False
            conn.execute(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    user.username,
                    user.name,
                    user.role,
                    user.password_hash,
                    user.created_at,
                    int(user.disabled),
                ),
            )
            return True

        return await self._db.transaction(work)

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._db.fetchone(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(row) if row is not None else None

    async def find_user(self, username: str) -> UserRecord | None:
        row = await self._db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)
        )
        return _user(row) if row is not None else None

    async def list_users(self) -> list[UserRecord]:
        rows = await self._db.fetchall(f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at, id")
        return [_user(row) for row in rows]

    async def user_count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row is not None else 0

    async def update_user(
        self, user_id: str, update: UserUpdate, *, at: float
    ) -> UserRecord | None:
        def work(conn: sqlite3.Connection) -> UserRecord | None:
            row = conn.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone()
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
            conn.execute(
                "UPDATE users SET role = ?, disabled = ?, password_hash = ? WHERE id = ?",
                (after.role, int(after.disabled), after.password_hash, user_id),
            )
            admins = conn.execute(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0"
            ).fetchone()[0]
            if admins == 0 and before.role == "admin" and not before.disabled:
                # Raising rolls the transaction back: the update above is undone.
                raise LastAdminError(user_id)
            conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (at, user_id),
            )
            return after

        return await self._db.transaction(work)

    async def replace_password_hash(self, user_id: str, *, old: str, new: str) -> bool:
        changed = await self._db.execute(
            "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
            (new, user_id, old),
        )
        return changed > 0

    # -- sessions ------------------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (session.created_at,))
            conn.execute(
                "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at,"
                " revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.user_id,
                    session.token_hash,
                    session.created_at,
                    session.expires_at,
                    session.revoked_at,
                ),
            )

        await self._db.transaction(work)

    async def find_session(self, token_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = await self._db.fetchone(
            "SELECT s.id AS session_id, s.user_id, s.token_hash, s.created_at AS session_at,"
            " s.expires_at, s.revoked_at, u.id, u.username, u.name, u.role, u.password_hash,"
            " u.created_at, u.disabled"
            " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.token_hash = ?",
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
        row = await self._db.fetchone("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return _session(row) if row is not None else None

    async def end_session(self, session_id: str, *, at: float) -> bool:
        changed = await self._db.execute(
            "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (at, session_id),
        )
        return changed > 0

    async def end_user_sessions(self, user_id: str, *, at: float) -> int:
        return await self._db.execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (at, user_id),
        )

    # -- API tokens ----------------------------------------------------------------------------

    async def add_api_token(self, token: ApiTokenRecord) -> None:
        await self._db.execute(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_by, created_at,"
            " revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        row = await self._db.fetchone(
            "SELECT * FROM api_tokens WHERE token_hash = ?", (token_hash,)
        )
        return _token(row) if row is not None else None

    async def get_api_token(self, token_id: str) -> ApiTokenRecord | None:
        row = await self._db.fetchone("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return _token(row) if row is not None else None

    async def list_api_tokens(self) -> list[ApiTokenRecord]:
        rows = await self._db.fetchall("SELECT * FROM api_tokens ORDER BY created_at, id")
        return [_token(row) for row in rows]

    async def live_api_tokens(self) -> list[ApiTokenRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at, id"
        )
        return [_token(row) for row in rows]

    async def revoke_api_token(self, token_id: str, *, at: float) -> bool:
        changed = await self._db.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (at, token_id),
        )
        return changed > 0
