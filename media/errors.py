"""Errors raised by the media plane.

Each carries a ``code`` that the edge (signaling, REST) maps to its own error codes; the stdlib
bases let callers that only know the ``MediaGateway`` contract catch ``ValueError``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BadCandidate",
    "BadSdp",
    "BadSdpFragment",
    "CaptureNotFound",
    "IceNotRestartable",
    "MediaError",
    "MediaErrorCode",
    "NothingToRecord",
    "PeerNotFound",
]


class MediaErrorCode(StrEnum):
    """The ``code`` of each media error; the values reach clients as they are."""

    MEDIA_ERROR = "media_error"
    BAD_SDP = "bad_sdp"
    BAD_SDPFRAG = "bad_sdpfrag"
    BAD_CANDIDATE = "bad_candidate"
    ICE_NOT_RESTARTABLE = "ice_not_restartable"
    NOT_IN_CALL = "not_in_call"
    NOTHING_TO_RECORD = "nothing_to_record"
    CAPTURE_NOT_FOUND = "capture_not_found"


class MediaError(Exception):
    """Root of every error the media package raises on purpose."""

    code: MediaErrorCode = MediaErrorCode.MEDIA_ERROR
    #: Whether the same request may succeed if retried unchanged.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSdp(MediaError, ValueError):
    """The client's SDP offer cannot be applied. The message is fit to show the client."""

    code = MediaErrorCode.BAD_SDP


class BadSdpFragment(BadSdp):
    """A trickle-ICE SDP fragment (RFC 8840) cannot be read. The message is fit to show."""

    code = MediaErrorCode.BAD_SDPFRAG


class BadCandidate(MediaError, ValueError):
    """The client's ICE candidate cannot be parsed or applied."""

    code = MediaErrorCode.BAD_CANDIDATE


class IceNotRestartable(MediaError):
    """ICE of that peer has not completed (or has failed), so there is nothing to restart."""

    code = MediaErrorCode.ICE_NOT_RESTARTABLE


class PeerNotFound(MediaError, LookupError):
    """No server-side peer exists for that participant (never offered, or already closed)."""

    code = MediaErrorCode.NOT_IN_CALL

    def __init__(self, participant_id: str) -> None:
        super().__init__(f"no media session for participant {participant_id!r}")
        self.participant_id = participant_id


class NothingToRecord(MediaError, LookupError):
    """Nobody publishes a track in that room, so there is nothing to capture."""

    code = MediaErrorCode.NOTHING_TO_RECORD

    def __init__(self, room_id: str) -> None:
        super().__init__(f"nothing is published in room {room_id!r}")
        self.room_id = room_id


class CaptureNotFound(MediaError, LookupError):
    """No running capture has that id (never started, or already stopped)."""

    code = MediaErrorCode.CAPTURE_NOT_FOUND

    def __init__(self, capture_id: str) -> None:
        super().__init__(f"no running capture {capture_id!r}")
        self.capture_id = capture_id
