"""Who is calling, and how fast: the edge middleware that looks a request's credentials up once
(before anything else), holds integration tokens to their routes, and limits the request rate;
and the sign-in throttle.

Buckets are keyed on what was *checked*: a valid credential has its own bucket, anything else
(no credential, or one that names nobody) shares its client address's. The client address is
``X-Forwarded-For``'s only when the request comes from a trusted proxy
(``INSPECT_TRUSTED_PROXIES``), so behind the shipped proxy one client cannot exhaust another's
bucket, and outside it nobody chooses their own address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache

from aiohttp import web

from server.errors import DomainErrorCode
from server.http.auth import RequestAuth
from server.http.errors import HttpError, error_response
from signaling import RateLimit, RateLimiter

__all__ = [
    "INTEGRATION_ROUTES",
    "LoginThrottle",
    "RateLimited",
    "RateLimits",
    "client_address",
    "within",
    "rate_limit_middleware",
    "too_many",
]

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: (method, route) an integration token may call: create cases, mint join links, read cases
#: (and see itself). Every other route, page and ``/ws`` refuses it before its handler runs.
INTEGRATION_ROUTES = frozenset(
    {
        ("POST", "/api/cases"),
        ("GET", "/api/cases"),
        ("GET", "/api/cases/{id}"),
        ("POST", "/api/cases/{id}/join-link"),
        ("GET", "/api/me"),
    }
)


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            # Settings validate the list; one that slipped through trusts nobody, never all.
            logger.error("INSPECT_TRUSTED_PROXIES: %r is no address or network", entry)
    return tuple(networks)


def within(address: str, entries: Iterable[str]) -> bool:
    """Whether ``address`` is one of ``entries`` (addresses or CIDRs)."""
    return _within(address, _networks(tuple(entries)))


def _within(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.BaseRequest, trusted_proxies: Iterable[str] = ()) -> str:
    """The address of the client: the peer's, or, when the peer is a trusted proxy, the
    nearest ``X-Forwarded-For`` hop that is not a trusted proxy (each proxy appends the address
    it saw, so hops further left were written by the client and prove nothing)."""
    remote = request.remote or "-"
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _within(remote, networks):
        return remote
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", ())
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _within(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return hop[:64]
    return hops[0] if hops else remote


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


class _FailureCounts:
    """Failed sign-ins per username from every address, leaking away at ``per_s``. Bounded:
    counts that leaked to nothing are dropped first, and past ``max_keys`` new names share
    one count, so a flood of invented names neither grows memory nor wipes a real name's
    count (as evicting the least recently used would)."""

    _OVERFLOW = "\x00overflow"

    def __init__(self, per_s: float, *, max_keys: int, clock: Callable[[], float]) -> None:
        self._per_s = per_s
        self._max_keys = max_keys
        self._clock = clock
        self._counts: dict[str, tuple[float, float]] = {}

    def _key(self, username: str) -> str:
        if username in self._counts or len(self._counts) < self._max_keys:
            return username
        now = self._clock()
        for name in [n for n, (c, at) in self._counts.items() if c - (now - at) * self._per_s <= 0]:
            del self._counts[name]
        return username if len(self._counts) < self._max_keys else self._OVERFLOW

    def count(self, username: str) -> float:
        entry = self._counts.get(username) or self._counts.get(self._OVERFLOW)
        if entry is None:
            return 0.0
        count, at = entry
        return max(0.0, count - (self._clock() - at) * self._per_s)

    def add(self, username: str) -> None:
        key = self._key(username)
        self._counts[key] = (self.count(key) + 1.0, self._clock())


class LoginThrottle:
    """Three limits on sign-in attempts, none of which lets a stranger lock a user out:

    * per client address and username, failures are limited (429): a client guessing one
      account's password stops; the real user, from another address, is not affected;
    * per username, from every address together, failures past ``failures_per_min`` slow
      every attempt on that name down (a delay doubling per failure, up to ``max_delay_s``):
      distributed guessing crawls, and the real user still gets in, a few seconds later;
    * at most ``max_concurrent`` password checks run at once (each costs 128 MiB and a few
      hundred ms), with at most ``max_waiting`` queued behind them; past that, 429.
    """

    def __init__(
        self,
        *,
        failures_per_min: int,
        max_concurrent: int = 4,
        max_waiting: int = 64,
        base_delay_s: float = 0.25,
        max_delay_s: float = 5.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        per_s = failures_per_min / 60.0
        self._free = float(failures_per_min)
        self._per_client = RateLimiter(RateLimit(per_s, failures_per_min), clock=clock)
        self._per_username = _FailureCounts(per_s, max_keys=max_keys, clock=clock)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_waiting = max_concurrent + max_waiting
        self._in_flight = 0
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s

    def delay_for(self, username: str) -> float:
        """Seconds every attempt on ``username`` waits, from its recent failures."""
        excess = self._per_username.count(username.casefold()) - self._free
        if excess < 0:
            return 0.0
        delay: float = self._base_delay_s * 2.0 ** min(excess, 32.0)
        return min(self._max_delay_s, delay)

    @asynccontextmanager
    async def attempt(self, address: str, username: str) -> AsyncIterator[Callable[[], None]]:
        """Around one password check; yields ``failed()``, to call when it failed. Raises
        :class:`RateLimited` when this address has failed too often on this name, or when
        too many checks are waiting already."""
        name = username.casefold()
        bucket = self._per_client.bucket(f"{address}|{name}")
        if bucket.retry_after() > 0:
            raise RateLimited(bucket.retry_after(), "too many failed logins: try again later")
        if self._in_flight >= self._max_waiting:
            raise RateLimited(1.0, "too many logins at once: try again in a moment")
        self._in_flight += 1
        try:
            delay = self.delay_for(name)
            if delay > 0:
                await asyncio.sleep(delay)

            def failed() -> None:
                bucket.take()
                self._per_username.add(name)

            async with self._slots:
                yield failed
        finally:
            self._in_flight -= 1


class RateLimits:
    """The API's buckets (per checked credential, else per client address) and the sign-in
    throttle."""

    def __init__(self, *, rate_per_s: float, burst: int, login_failures_per_min: int) -> None:
        self.requests = RateLimiter(RateLimit(rate_per_s, burst))
        self.logins = LoginThrottle(failures_per_min=login_failures_per_min)


def _forbidden(message: str) -> web.Response:
    return error_response(403, DomainErrorCode.FORBIDDEN.value, message)


def rate_limit_middleware(
    limits: RateLimits, *, auth: RequestAuth, trusted_proxies: Iterable[str] = ()
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Looks the caller up (one store lookup per request that carries credentials, kept on
    the request for the handler), holds integration tokens to :data:`INTEGRATION_ROUTES`, and
    answers 429 past the caller's request rate on ``/api`` (health and metrics are not
    limited). A caller without a credential is keyed on its :func:`client_address` behind
    ``trusted_proxies``."""
    proxies = tuple(trusted_proxies)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/static/"):
            return await handler(request)
        caller = await auth.caller(request)
        if caller is not None and caller.integration:
            route = request.match_info.route.resource
            if (request.method, route.canonical if route else "") not in INTEGRATION_ROUTES:
                return _forbidden(
                    "an integration token may only create cases, mint join links and read cases"
                )
        if not request.path.startswith("/api/"):
            return await handler(request)
        if caller is not None:
            key = f"c:{caller.credential_id}"
        else:
            key = f"a:{client_address(request, proxies)}"
        bucket = limits.requests.bucket(key)
        if not bucket.take():
            return too_many(bucket.retry_after(), "too many requests: slow down")
        return await handler(request)

    return middleware
