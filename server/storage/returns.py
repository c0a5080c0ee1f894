"""What the returns operations need of persistence: the versions of the return rule table.

Versions are append-only: saving a table adds the next version with who saved it, when and why,
and none is ever changed or removed, so the history is the audit of every rule change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RuleVersion", "RulesStore"]


@dataclass(frozen=True, slots=True)
class RuleVersion:
    version: int
    body: Mapping[str, Any]
    author: str
    note: str | None
    created_at: float


class RulesStore(Protocol):
    async def latest(self) -> RuleVersion | None:
        """The newest version, or ``None`` before any was saved."""
        ...

    async def get(self, version: int) -> RuleVersion | None: ...

    async def versions(self) -> list[RuleVersion]:
        """Every version, newest first."""
        ...

    async def add(
        self, body: Mapping[str, Any], *, author: str, note: str | None, at: float
    ) -> RuleVersion:
        """Keep ``body`` as the next version (one more than the newest, 1 for the first), in
        one transaction; returns it."""
        ...
