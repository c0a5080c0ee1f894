"""Errors of the server package: each carries a stable ``code`` and the HTTP ``status`` the API
edge maps it to (``{"error": {"code", "message"}}``)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidState",
    "NotFound",
    "ServerError",
    "ServerErrorCode",
    "Unauthorized",
]


class ServerErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    INVALID_CREDENTIALS = "invalid_credentials"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_STATE = "invalid_state"
    ALREADY_ACCEPTED = "already_accepted"
    NOT_WAITING = "not_waiting"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


STATUS: dict[ServerErrorCode, int] = {
    ServerErrorCode.INVALID_REQUEST: 400,
    ServerErrorCode.UNAUTHORIZED: 401,
    ServerErrorCode.INVALID_CREDENTIALS: 401,
    ServerErrorCode.FORBIDDEN: 403,
    ServerErrorCode.NOT_FOUND: 404,
    ServerErrorCode.METHOD_NOT_ALLOWED: 405,
    ServerErrorCode.INVALID_STATE: 409,
    ServerErrorCode.ALREADY_ACCEPTED: 409,
    ServerErrorCode.NOT_WAITING: 409,
    ServerErrorCode.CONFLICT: 409,
    ServerErrorCode.TOO_LARGE: 413,
    ServerErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ServerErrorCode.RATE_LIMITED: 429,
    ServerErrorCode.UNAVAILABLE: 503,
    ServerErrorCode.INTERNAL: 500,
}


class ServerError(Exception):
    """Root of the package's errors. ``fields`` names the request fields at fault, if any."""

    code: ServerErrorCode = ServerErrorCode.INTERNAL

    def __init__(
        self,
        message: str = "",
        *,
        code: ServerErrorCode | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        self.fields = fields
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return STATUS[self.code]


class InvalidRequest(ServerError, ValueError):
    code = ServerErrorCode.INVALID_REQUEST


class Unauthorized(ServerError):
    code = ServerErrorCode.UNAUTHORIZED


class Forbidden(ServerError, PermissionError):
    code = ServerErrorCode.FORBIDDEN


class NotFound(ServerError, LookupError):
    code = ServerErrorCode.NOT_FOUND


class InvalidState(ServerError):
    """A case transition that its current state does not allow."""

    code = ServerErrorCode.INVALID_STATE


class Conflict(ServerError):
    code = ServerErrorCode.CONFLICT
