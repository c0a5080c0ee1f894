"""Errors that cross between nodes: a reply carries an error as data, and the calling node
raises it again as the same kind (media errors keep their class and code, domain errors their
code), so the HTTP edge and the hub map a remote failure exactly as they would a local one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from media import BadCandidate, BadSdp, CaptureNotFound, MediaError, NothingToRecord, PeerNotFound
from server.errors import (
    Conflict,
    DomainError,
    DomainErrorCode,
    Forbidden,
    InvalidRequest,
    InvalidState,
    NotFound,
    Unauthorized,
)
from signaling import SignalingError, SignalingErrorCode

__all__ = ["EXPECTED", "RemoteFailure", "RoomMoved", "decode_error", "encode_error"]


class RoomMoved(SignalingError):
    """The node asked to hold a room's media no longer is its home (another node is)."""

    code = SignalingErrorCode.UNAVAILABLE
    retryable = True

    def __init__(self, home: str) -> None:
        super().__init__(message=f"the room's media moved to node {home}")
        self.home = home


class RemoteFailure(SignalingError):
    """A request failed on the other node in a way it did not mean to (a bug there)."""

    code = SignalingErrorCode.INTERNAL


#: Errors a handler raises on purpose (anything else is logged as a failure there).
EXPECTED = (MediaError, DomainError, SignalingError, ValueError, LookupError, RoomMoved)

#: Server errors cross as their own classes (callers catch ``NotFound`` and friends).
_SERVER_ERRORS: dict[str, type[DomainError]] = {
    cls.code.value: cls
    for cls in (Conflict, Forbidden, InvalidRequest, InvalidState, NotFound, Unauthorized)
}

_MEDIA_ERRORS: dict[str, Callable[[str, str], MediaError]] = {
    "BadSdp": lambda message, _: BadSdp(message),
    "BadCandidate": lambda message, _: BadCandidate(message),
    "PeerNotFound": lambda _, key: PeerNotFound(key),
    "NothingToRecord": lambda _, key: NothingToRecord(key),
    "CaptureNotFound": lambda _, key: CaptureNotFound(key),
}


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as the data a reply carries."""
    if isinstance(exc, RoomMoved):
        return {"kind": "moved", "home": exc.home}
    if isinstance(exc, MediaError):
        key = next(
            (
                str(getattr(exc, name))
                for name in ("participant_id", "room_id", "capture_id")
                if hasattr(exc, name)
            ),
            "",
        )
        return {"kind": "media", "type": type(exc).__name__, "message": exc.message, "key": key}
    if isinstance(exc, DomainError):
        return {"kind": "server", "code": exc.code.value, "message": exc.message}
    if isinstance(exc, SignalingError):
        return {"kind": "signaling", "code": exc.code.value, "message": exc.message}
    if isinstance(exc, ValueError):
        return {"kind": "value", "message": str(exc)}
    if isinstance(exc, LookupError):
        return {"kind": "lookup", "message": str(exc)}
    return {"kind": "internal", "message": type(exc).__name__}


def decode_error(error: Mapping[str, Any], node: str) -> Exception:
    """The exception a reply's error data stands for."""
    kind = error.get("kind")
    message = str(error.get("message", ""))
    if kind == "moved":
        return RoomMoved(str(error.get("home")))
    if kind == "media":
        make = _MEDIA_ERRORS.get(str(error.get("type")))
        return make(message, str(error.get("key", ""))) if make else MediaError(message)
    if kind == "server":
        code = str(error.get("code"))
        known = _SERVER_ERRORS.get(code)
        if known is not None:
            return known(message)
        try:
            return DomainError(message, code=DomainErrorCode(code))
        except ValueError:
            return DomainError(message)
    if kind == "signaling":
        try:
            return SignalingError(SignalingErrorCode(str(error.get("code"))), message)
        except ValueError:
            return RemoteFailure(message=message)
    if kind == "value":
        return ValueError(message)
    if kind == "lookup":
        return LookupError(message)
    return RemoteFailure(message=f"node {node} failed to serve the request ({message})")
