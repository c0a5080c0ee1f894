"""Bus backends: ``memory`` (embedded default) and ``redis`` (multi-node)."""

from __future__ import annotations

from .base import Bus, ChatRecord, Lagged, QueueEntry, Subscription
from .memory import MemoryBus

__all__ = ["Bus", "ChatRecord", "Lagged", "MemoryBus", "QueueEntry", "Subscription"]
