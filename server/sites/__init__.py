"""Sites and their cameras: camera tokens, live presence, and packing / receiving stations."""

from __future__ import annotations

from .presence import (
    LIVE_WINDOW_S,
    CameraLink,
    CameraPresence,
    DetailSource,
    Source,
)
from .service import (
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
    SiteService,
    Station,
    StationStage,
    split_rtsp_url,
)
from .stations import (
    TRACKING_FORMATS,
    StationConfig,
    StationService,
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
    "DetailSource",
    "IssuedCameraToken",
    "NewCamera",
    "Site",
    "SiteService",
    "Source",
    "Station",
    "StationConfig",
    "StationService",
    "StationStage",
    "split_rtsp_url",
    "station_operator",
    "tracking_number",
]
