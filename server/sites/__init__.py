"""Sites and their cameras: camera tokens, live presence, and packing / receiving stations."""

from __future__ import annotations

from ._credentials import split_rtsp_url
from .model import (
    CAMERA_TOKEN_PREFIX,
    Camera,
    CameraChanges,
    CameraKind,
    CameraListener,
    CameraToken,
    CameraTokenError,
    IssuedCameraToken,
    NewCamera,
    Site,
    SiteEvidenceLink,
    Station,
    StationStage,
    TokenState,
)
from .presence import (
    LIVE_WINDOW_S,
    CameraLink,
    CameraPresence,
    DetailSource,
    RoomStats,
    Source,
)
from .service import SiteService
from .stations import (
    TRACKING_FORMATS,
    CodeReader,
    ScannedCode,
    SegmentGrading,
    StationCaptures,
    StationConfig,
    StationService,
    StationSites,
    station_operator,
    tracking_number,
)

__all__ = [
    "CAMERA_TOKEN_PREFIX",
    "LIVE_WINDOW_S",
    "TRACKING_FORMATS",
    "Camera",
    "CameraChanges",
    "CameraKind",
    "CameraLink",
    "CameraListener",
    "CameraPresence",
    "CameraToken",
    "CameraTokenError",
    "CodeReader",
    "DetailSource",
    "IssuedCameraToken",
    "NewCamera",
    "RoomStats",
    "ScannedCode",
    "SegmentGrading",
    "Site",
    "SiteEvidenceLink",
    "SiteService",
    "Source",
    "Station",
    "StationCaptures",
    "StationConfig",
    "StationService",
    "StationSites",
    "StationStage",
    "TokenState",
    "split_rtsp_url",
    "station_operator",
    "tracking_number",
]
