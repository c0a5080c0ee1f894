"""The media engine of this process and the one frame router that decides which decoded frames
reach which service."""

from __future__ import annotations

import socket
import time

from media import FrameRouter, MediaConfig, MediaEngine, StreamKey
from server.ice import turn_credentials
from server.settings import Settings
from signaling import RoomId, RoomKind

__all__ = ["SERVER_TURN_TTL_S", "is_case_room", "media_config", "open_media"]

#: Server peers keep one TURN credential for their lifetime.
SERVER_TURN_TTL_S = 30 * 24 * 3600


def media_config(settings: Settings) -> MediaConfig:
    username: str | None = None
    credential: str | None = None
    if settings.turn_secret and any(not url.startswith("stun:") for url in settings.ice_servers):
        username, credential = turn_credentials(
            settings.turn_secret, f"server-{socket.gethostname()}", SERVER_TURN_TTL_S, time.time()
        )
    return MediaConfig(
        ice_servers=settings.ice_servers,
        turn_username=username,
        turn_credential=credential,
        start_bitrate_kbps=settings.start_bitrate_kbps,
        close_timeout_s=settings.shutdown_timeout_s,
        sample_fps=settings.sample_fps,
        recording=settings.recording,
        preroll_s=settings.preroll_s,
        udp_ports=settings.media_port_range,
    )


def is_case_room(stream: StreamKey) -> bool:
    """A case's call (a customer showing an item), not a site camera's room."""
    return RoomId.parse(stream.room_id).kind is RoomKind.CASE


def open_media(settings: Settings) -> tuple[MediaEngine, FrameRouter]:
    """The engine, and the frame router it hands sampled frames to (sinks are added later,
    each with the predicate of the rooms it takes)."""
    frames = FrameRouter()
    media = MediaEngine(media_config(settings), frame_sink=frames)
    frames.bind(media)
    return media, frames
