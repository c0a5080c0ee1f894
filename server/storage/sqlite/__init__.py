"""The SQLite backend of the storage seam (the embedded default)."""

from __future__ import annotations

from .database import SCHEMA_VERSION, Database

__all__ = [
    "SCHEMA_VERSION",
    "Database",
]
