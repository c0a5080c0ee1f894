"""Errors of the service's own domains (cases, sites, capture, accounts): each carries a stable
``code`` and no HTTP status; the HTTP edge maps codes to statuses (``server.http.errors``)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidState",
    "NotFound",
    "DomainError",
    "DomainErrorCode",
    "Unauthorized",
]


class DomainErrorCode(StrEnum):
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


class DomainError(Exception):
    """Root of the domains' errors. ``fields`` names the request fields at fault, if any."""

    code: DomainErrorCode = DomainErrorCode.INTERNAL

    def __init__(
        self,
        message: str = "",
        *,
        code: DomainErrorCode | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        self.fields = fields
        super().__init__(self.message)


class InvalidRequest(DomainError, ValueError):
    code = DomainErrorCode.INVALID_REQUEST


class Unauthorized(DomainError):
    code = DomainErrorCode.UNAUTHORIZED


class Forbidden(DomainError, PermissionError):
    code = DomainErrorCode.FORBIDDEN


class NotFound(DomainError, LookupError):
    code = DomainErrorCode.NOT_FOUND


class InvalidState(DomainError):
    """A case transition that its current state does not allow."""

    code = DomainErrorCode.INVALID_STATE


class Conflict(DomainError):
    code = DomainErrorCode.CONFLICT
