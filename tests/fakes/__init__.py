"""Test doubles shared by the test suite and bench/."""

from .camera import (
    NumberedVideoTrack,
    PreEncodedVideoTrack,
    ToneAudioTrack,
    TrackReader,
    audio_level,
    client_accept,
    client_offer,
    client_pc,
    read_frame_number,
    wait_connected,
)

__all__ = [
    "NumberedVideoTrack",
    "PreEncodedVideoTrack",
    "ToneAudioTrack",
    "TrackReader",
    "audio_level",
    "client_accept",
    "client_offer",
    "client_pc",
    "read_frame_number",
    "wait_connected",
]
