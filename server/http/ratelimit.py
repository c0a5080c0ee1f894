"""Rate limits at the edge: per credential on ``/api``, per address and username on failed
logins."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.accounts import SESSION_COOKIE
from server.errors import DomainErrorCode
from server.http.errors import HttpError, error_response
from signaling import RateLimit, RateLimiter

__all__ = ["RateLimited", "RateLimits", "rate_limit_middleware", "too_many"]


class RateLimits:
    """The API's buckets: per credential for every request, per address and username for
    failed logins."""

    def __init__(self, *, rate_per_s: float, burst: int, login_failures_per_min: int) -> None:
        self.requests = RateLimiter(RateLimit(rate_per_s, burst))
        per_min = login_failures_per_min
        self.logins = RateLimiter(RateLimit(per_min / 60.0, per_min))

    @staticmethod
    def key(request: web.Request) -> str:
        """Who is asking: a digest of the bearer token or session cookie, else the address."""
        header = request.headers.get("Authorization", "")
        credential = header[7:].strip() if header[:7].lower() == "bearer " else ""
        credential = credential or request.cookies.get(SESSION_COOKIE, "")
        if credential:
            return "c:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
        return f"a:{request.remote or '-'}"


class RateLimited(HttpError):
    """429 with ``Retry-After`` in whole seconds."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(
            429,
            DomainErrorCode.RATE_LIMITED.value,
            message,
            {"Retry-After": str(max(1, math.ceil(retry_after)))},
        )


def too_many(retry_after: float, message: str) -> web.Response:
    """The response of :class:`RateLimited`, for a middleware that answers itself."""
    error = RateLimited(retry_after, message)
    response = error_response(error.status, error.code, error.message)
    response.headers.update(error.headers)
    return response


def rate_limit_middleware(limits: RateLimits) -> Callable[..., Awaitable[web.StreamResponse]]:
    """429 past a credential's request rate on /api (health and metrics are not limited)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        bucket = limits.requests.bucket(RateLimits.key(request))
        if not bucket.take():
            return too_many(bucket.retry_after(), "too many requests: slow down")
        return await handler(request)

    return middleware
