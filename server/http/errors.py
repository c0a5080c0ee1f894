"""Errors at the HTTP edge: every package's errors mapped to a status and a JSON body
``{"error": {"code", "message"}}``, in one middleware.

The domains raise errors with a code and no status (``server.errors``); media, signaling and
evidence raise their own. This module is the one place that knows which status each code gets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from evidence import EvidenceError, EvidenceErrorCode
from media import MediaError
from server.errors import DomainError, DomainErrorCode
from server.storage.database import StorageUnavailable
from signaling import SignalingError, SignalingErrorCode

__all__ = ["DOMAIN_STATUS", "HttpError", "error_middleware", "error_response", "status_of"]

logger = logging.getLogger(__name__)

DOMAIN_STATUS: dict[DomainErrorCode, int] = {
    DomainErrorCode.INVALID_REQUEST: 400,
    DomainErrorCode.UNAUTHORIZED: 401,
    DomainErrorCode.INVALID_CREDENTIALS: 401,
    DomainErrorCode.FORBIDDEN: 403,
    DomainErrorCode.NOT_FOUND: 404,
    DomainErrorCode.METHOD_NOT_ALLOWED: 405,
    DomainErrorCode.INVALID_STATE: 409,
    DomainErrorCode.ALREADY_ACCEPTED: 409,
    DomainErrorCode.NOT_WAITING: 409,
    DomainErrorCode.CONFLICT: 409,
    DomainErrorCode.TOO_LARGE: 413,
    DomainErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    DomainErrorCode.RATE_LIMITED: 429,
    DomainErrorCode.UNAVAILABLE: 503,
    DomainErrorCode.INTERNAL: 500,
}

_EVIDENCE_STATUS = {
    EvidenceErrorCode.NOT_FOUND: 404,
    EvidenceErrorCode.INVALID: 400,
    EvidenceErrorCode.ON_LEGAL_HOLD: 409,
    EvidenceErrorCode.RETENTION_ACTIVE: 409,
    EvidenceErrorCode.STORAGE_FULL: 507,
    EvidenceErrorCode.UNAVAILABLE: 503,
}

#: Media errors that are not "the call is not in a state for this" (409).
_MEDIA_STATUS = {"capture_not_found": 404}

_SIGNALING_STATUS = {
    SignalingErrorCode.ALREADY_ACCEPTED: 409,
    SignalingErrorCode.NOT_WAITING: 409,
    SignalingErrorCode.NOT_FOUND: 404,
    SignalingErrorCode.FORBIDDEN: 403,
    SignalingErrorCode.UNAUTHORIZED: 401,
    SignalingErrorCode.TOKEN_EXPIRED: 401,
    SignalingErrorCode.INVALID: 400,
    SignalingErrorCode.UNAVAILABLE: 503,
}

_HTTP_CODES = {
    400: DomainErrorCode.INVALID_REQUEST,
    401: DomainErrorCode.UNAUTHORIZED,
    403: DomainErrorCode.FORBIDDEN,
    404: DomainErrorCode.NOT_FOUND,
    405: DomainErrorCode.METHOD_NOT_ALLOWED,
    413: DomainErrorCode.TOO_LARGE,
    415: DomainErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


class HttpError(Exception):
    """An error that only the edge raises, with its status and extra headers (a WHIP
    ``WWW-Authenticate`` challenge, CORS headers): protocol errors of a route, not the domain's."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, fields: tuple[str, ...] = ()
) -> web.Response:
    """``{"error": {"code", "message", "fields"?}}`` with ``status``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = list(fields)
    return web.json_response({"error": error}, status=status)


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error."""
    return DOMAIN_STATUS[exc.code]


#: The customer page's own API (frozen frames, photo uploads) under its path-scoped cookie.
_CUSTOMER_API = re.compile(r"^/join/c/[^/]+/(frozen|uploads|offers|intake)(/|$)")


def _is_api(request: web.Request) -> bool:
    path = request.path
    return (
        path == "/api"
        or path.startswith(("/api/", "/whip/"))
        or path in ("/healthz", "/metrics")
        or _CUSTOMER_API.match(path) is not None
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """JSON errors for the API paths; other paths (pages) keep aiohttp's own."""
    if not _is_api(request):
        return await handler(request)
    try:
        return await handler(request)
    except HttpError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    except DomainError as exc:
        status = status_of(exc)
        if status >= 500:
            logger.error("request failed: %s", exc.message)
        return error_response(status, exc.code.value, exc.message, exc.fields)
    except StorageUnavailable as exc:
        logger.error("database unavailable: %s", exc)
        response = error_response(503, DomainErrorCode.UNAVAILABLE.value, str(exc))
        response.headers["Retry-After"] = "2"
        return response
    except EvidenceError as exc:
        status = _EVIDENCE_STATUS.get(exc.code, 500)
        if status >= 500:
            logger.error("evidence archive failed: %s", exc.message)
        response = error_response(status, exc.code.value, exc.message)
        if status == 503:
            response.headers["Retry-After"] = "2"
        return response
    except MediaError as exc:
        status = 400 if isinstance(exc, ValueError) else _MEDIA_STATUS.get(exc.code, 409)
        return error_response(status, exc.code, exc.message)
    except SignalingError as exc:
        status = _SIGNALING_STATUS.get(exc.code, 500)
        if status >= 500:
            logger.error("call hub failed: %s", exc.message)
        return error_response(status, exc.code.value, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status)
        if code is None:
            code = DomainErrorCode.INVALID_REQUEST if exc.status < 500 else DomainErrorCode.INTERNAL
        message = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        response = error_response(exc.status, code.value, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, DomainErrorCode.INTERNAL.value, "internal error")
