"""Evidence capture: filing a room's clips and snapshots as evidence items."""

from __future__ import annotations

from .service import (
    CaptureInfo,
    CaptureService,
    CaptureTarget,
)

__all__ = [
    "CaptureInfo",
    "CaptureService",
    "CaptureTarget",
]
