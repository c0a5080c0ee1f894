"""Evidence capture: filing a room's clips and snapshots as evidence items."""

from __future__ import annotations

from .ports import CaptureConfig, FrameSource, RoomRecorder
from .service import CaptureInfo, CaptureService, CaptureTarget, FiledHook

__all__ = [
    "CaptureConfig",
    "CaptureInfo",
    "CaptureService",
    "CaptureTarget",
    "FiledHook",
    "FrameSource",
    "RoomRecorder",
]
