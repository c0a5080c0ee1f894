""":class:`~server.storage.returns.RulesStore` on PostgreSQL (table ``return_rules``).

Two admins saving at once on two nodes: the first to lock the table gets the next version,
the second waits and gets the one after, so versions stay consecutive and none is lost."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.storage.returns import RuleVersion

from .._rows import rule_version as _version
from .database import Connection, PostgresDatabase

__all__ = ["PostgresRulesStore"]

_COLUMNS = "version, body, author, note, created_at"


class PostgresRulesStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def latest(self) -> RuleVersion | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM return_rules ORDER BY version DESC LIMIT 1"
        )
        return _version(row) if row is not None else None

    async def get(self, version: int) -> RuleVersion | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM return_rules WHERE version = $1", (version,)
        )
        return _version(row) if row is not None else None

    async def versions(self) -> list[RuleVersion]:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM return_rules ORDER BY version DESC")
        return [_version(row) for row in rows]

    async def add(
        self, body: Mapping[str, Any], *, author: str, note: str | None, at: float
    ) -> RuleVersion:
        async def work(conn: Connection) -> RuleVersion:
            # Readers go on; a second writer waits here for the first to commit.
            await conn.execute("LOCK TABLE return_rules IN SHARE ROW EXCLUSIVE MODE")
            version = int(
                await conn.fetchval("SELECT COALESCE(MAX(version), 0) + 1 FROM return_rules")
            )
            await conn.execute(
                f"INSERT INTO return_rules ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5)",
                version,
                json.dumps(dict(body)),
                author,
                note,
                at,
            )
            return RuleVersion(version, dict(body), author, note, at)

        return await self._db.transaction(work)
