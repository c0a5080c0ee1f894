"""Errors of the signaling package; each carries the code sent to the client."""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["CloseCode", "ProtocolError", "SignalingError", "SignalingErrorCode"]


class CloseCode(IntEnum):
    """WebSocket close codes the server sends and the pages act on (``web/static/js/protocol.js``
    mirrors them; a test keeps the two equal)."""

    #: The server is shutting down: reconnect.
    GOING_AWAY = 1001
    #: The client kept flooding after ``rate_limited``.
    POLICY_VIOLATION = 1008
    #: A frame larger than the socket takes.
    MESSAGE_TOO_BIG = 1009
    #: Fell behind the outbound queue: reconnect and resume from the last sequence.
    LAGGING = 4008
    #: The node holding the call's media stopped: reconnect, resume and offer again.
    MEDIA_LOST = 4012
    #: Not authorised: do not retry with the same credential.
    UNAUTHORIZED = 4401
    #: A camera page opened again elsewhere: do not reconnect, the newer page publishes now.
    REPLACED = 4409


class SignalingErrorCode(StrEnum):
    MALFORMED = "malformed"  # not JSON, not an object, no type
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"  # fields fail validation
    TOO_LARGE = "too_large"
    NOT_JOINED = "not_joined"  # first message must be join
    ALREADY_JOINED = "already_joined"
    UNAUTHORIZED = "unauthorized"  # no or bad credentials
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"  # authenticated, but the role may not do this
    NOT_FOUND = "not_found"
    ALREADY_ACCEPTED = "already_accepted"  # another agent won the race
    NOT_WAITING = "not_waiting"  # case is not in the queue
    NOT_IN_CALL = "not_in_call"
    BAD_SDP = "bad_sdp"
    BAD_CANDIDATE = "bad_candidate"
    RATE_LIMITED = "rate_limited"
    REPLACED = "replaced"  # a camera opened again elsewhere: the older connection is closed
    UNAVAILABLE = "unavailable"  # the shared bus or the node holding the media did not answer
    MEDIA_LOST = "media_lost"  # the node holding the call's media stopped: reconnect, offer again
    INTERNAL = "internal"


class SignalingError(Exception):
    """Root of the package's errors."""

    code: SignalingErrorCode = SignalingErrorCode.INTERNAL
    retryable = False

    def __init__(
        self, code: SignalingErrorCode | None = None, message: str = "", *, ref: str | None = None
    ) -> None:
        super().__init__(message or (code or self.code).value)
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        self.ref = ref


class ProtocolError(SignalingError, ValueError):
    """A client message that cannot be accepted; the connection stays open."""
