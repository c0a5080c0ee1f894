"""Bus backends: ``memory`` (embedded default) and ``redis`` (multi-node)."""

from __future__ import annotations

from .base import (
    Bus,
    BusUnavailable,
    ChatRecord,
    Lagged,
    QueueEntry,
    Reconnected,
    Subscription,
)
from .memory import MemoryBus
from .redis import RedisBus

__all__ = [
    "Bus",
    "BusUnavailable",
    "ChatRecord",
    "Lagged",
    "MemoryBus",
    "QueueEntry",
    "Reconnected",
    "RedisBus",
    "Subscription",
]
