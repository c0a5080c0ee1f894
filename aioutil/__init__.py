"""Owned background tasks, shared by every package: the one leaf that all of them may import.

It imports nothing of the project's own, so it cannot tie the packages to each other."""

from __future__ import annotations

from .tasks import OwnedTasks, cancel_and_wait

__all__ = ["OwnedTasks", "cancel_and_wait"]
