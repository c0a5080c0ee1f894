"""Evidence capture: filing a room's clips and snapshots as evidence items, and the inspection
of a call beyond its video (frozen and marked-up frames, the customer's photos)."""

from __future__ import annotations

from .inspection import (
    FrozenFrame,
    InspectionConfig,
    InspectionService,
    NoStillGrading,
    PhotoMeta,
    StillGrader,
)
from .ports import CaptureConfig, FrameSource, RoomRecorder, TranscriptSource
from .service import CaptureInfo, CaptureService, CaptureTarget, FiledHook
from .uploads import OffsetMismatch, StorageFull, Upload, UploadStore

__all__ = [
    "CaptureConfig",
    "CaptureInfo",
    "CaptureService",
    "CaptureTarget",
    "FiledHook",
    "FrameSource",
    "FrozenFrame",
    "InspectionConfig",
    "InspectionService",
    "NoStillGrading",
    "OffsetMismatch",
    "PhotoMeta",
    "RoomRecorder",
    "StillGrader",
    "StorageFull",
    "TranscriptSource",
    "Upload",
    "UploadStore",
]
