""":class:`~server.storage.returns.RulesStore` on SQLite (table ``return_rules``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from server.storage.returns import RuleVersion

from .._rows import rule_version as _version
from .database import Database

__all__ = ["SqliteRulesStore"]


class SqliteRulesStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest(self) -> RuleVersion | None:
        row = await self._db.fetchone("SELECT * FROM return_rules ORDER BY version DESC LIMIT 1")
        return _version(row) if row is not None else None

    async def get(self, version: int) -> RuleVersion | None:
        row = await self._db.fetchone("SELECT * FROM return_rules WHERE version = ?", (version,))
        return _version(row) if row is not None else None

    async def versions(self) -> list[RuleVersion]:
        rows = await self._db.fetchall("SELECT * FROM return_rules ORDER BY version DESC")
        return [_version(row) for row in rows]

    async def add(
        self, body: Mapping[str, Any], *, author: str, note: str | None, at: float
    ) -> RuleVersion:
        def work(conn: sqlite3.Connection) -> RuleVersion:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM return_rules").fetchone()
            version = int(row["v"]) + 1
            conn.execute(
                "INSERT INTO return_rules (version, body, author, note, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (version, json.dumps(dict(body)), author, note, at),
            )
            return RuleVersion(version, dict(body), author, note, at)

        return await self._db.transaction(work)
