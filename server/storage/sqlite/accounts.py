"""The accounts store on SQLite: the ``users`` and ``api_tokens`` tables of
:mod:`server.storage.sqlite.database`."""

from __future__ import annotations

import sqlite3

from server.storage.accounts import ApiTokenRecord, UserRecord

from .database import Database

__all__ = ["SqliteAccountStore"]


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        name=row["name"],
        role=row["role"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        disabled=bool(row["disabled"]),
    )


def _token(row: sqlite3.Row) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        token_hash=row["token_hash"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqliteAccountStore:
    """:class:`server.storage.AccountStore` on the service's SQLite :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
                "INSERT INTO users (id, username, name, role, password_hash, created_at,"
                " disabled) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        row = await self._db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row is not None else None

    async def find_user(self, username: str) -> UserRecord | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE username = ?", (username,))
        return _user(row) if row is not None else None

    async def list_users(self) -> list[UserRecord]:
        rows = await self._db.fetchall("SELECT * FROM users ORDER BY created_at, id")
        return [_user(row) for row in rows]

    async def user_count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row is not None else 0

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
