"""Times as the service writes them: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_time"]


def iso_time(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds (``2025-01-31T12:00:00.000Z``)."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
