"""Errors raised by the media plane.

Each carries a ``code`` that the edge (signaling, REST) maps to its own error codes; the stdlib
bases let callers that only know the ``MediaGateway`` contract catch ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "BadCandidate",
    "BadSdp",
    "CaptureNotFound",
    "IceNotRestartable",
    "MediaError",
    "NothingToRecord",
    "PeerNotFound",
]


class MediaError(Exception):
    """Root of every error the media package raises on purpose."""

    code: str = "media_error"
    #: Whether the same request may succeed if retried unchanged.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSdp(MediaError, ValueError):
    """The client's SDP offer cannot be applied. The message is fit to show the client."""

    code = "bad_sdp"


class BadCandidate(MediaError, ValueError):
    """The client's ICE candidate cannot be parsed or applied."""

    code = "bad_candidate"


class IceNotRestartable(MediaError):
    """ICE of that peer has not completed (or has failed), so there is nothing to restart."""

    code = "ice_not_restartable"


class PeerNotFound(MediaError, LookupError):
    """No server-side peer exists for that participant (never offered, or already closed)."""

    code = "not_in_call"

    def __init__(self, participant_id: str) -> None:
        super().__init__(f"no media session for participant {participant_id!r}")
        self.participant_id = participant_id


class NothingToRecord(MediaError, LookupError):
    """Nobody publishes a track in that room, so there is nothing to capture."""

    code = "nothing_to_record"

    def __init__(self, room_id: str) -> None:
        super().__init__(f"nothing is published in room {room_id!r}")
        self.room_id = room_id


class CaptureNotFound(MediaError, LookupError):
    """No running capture has that id (never started, or already stopped)."""

    code = "capture_not_found"

    def __init__(self, capture_id: str) -> None:
        super().__init__(f"no running capture {capture_id!r}")
        self.capture_id = capture_id
