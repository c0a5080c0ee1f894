"""Where a state-changing request comes from: the ``Origin`` check of the REST edge and the pages.

Session cookies are ``SameSite=Lax``, which stops cross-*site* requests but not other origins of
the same site (another port on the host, a sibling subdomain, an XSS there). So every request
that may change something (any method but GET, HEAD and OPTIONS) must come from one of the
service's own origins when a browser sent it:

* ``Origin`` present: it must be one of :func:`allowed_origins` (``null`` is judged as absent);
* no usable ``Origin``: ``Sec-Fetch-Site`` (set by the browser, never by page scripts) must say
  ``same-origin`` (or ``none``: the user's own action), else ``Referer`` must be ours;
* none of the three: not a browser (browsers send ``Origin`` with every such request), so
  there is no ambient credential to abuse: API bearer clients and curl pass.

WHIP is left out: encoders post offers from anywhere with a bearer token (``ACAO: *`` without
credentials), which no page can make a browser send on its own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from server.errors import DomainErrorCode
from server.http.errors import error_response
from server.settings import Settings
from signaling import origin_of

__all__ = ["SAFE_METHODS", "allowed_origins", "origin_middleware", "origin_of", "request_origin_ok"]

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths whose unsafe methods take credentials that no browser attaches by itself.
_EXEMPT_PREFIXES = ("/whip/",)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _is_loopback_or_any(host: str) -> bool:
    if host in ("", "localhost", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The origins the service's own pages are served from: its public URL
    (``settings.base_url``) and the address it listens on. A service listening on loopback or on
    every address is reachable as ``127.0.0.1``, ``localhost`` and ``[::1]`` on its port, so
    those count too. On a LAN address or behind a proxy, set ``INSPECT_PUBLIC_URL``.

    The ``/ws`` upgrade check takes the same set (``HubConfig.allowed_origins``)."""
    scheme = "https" if settings.tls else "http"
    origins: set[str] = set()
    public = origin_of(settings.base_url)
    if public is not None:
        origins.add(public)
    hosts = [settings.host]
    if _is_loopback_or_any(settings.host):
        hosts.extend(_LOOPBACK_NAMES)
    for host in hosts:
        if host in ("", "0.0.0.0", "::"):
            continue
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        listen = origin_of(f"{scheme}://{name}:{settings.port}")
        if listen is not None:
            origins.add(listen)
    return frozenset(origins)


def request_origin_ok(request: web.BaseRequest, allowed: frozenset[str]) -> bool:
    """Whether ``request`` came from one of ``allowed`` as far as its browser says; a request
    with none of ``Origin``, ``Sec-Fetch-Site`` and ``Referer`` is not from a browser and passes."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.strip() != "null":
        return origin_of(origin) in allowed
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in ("same-origin", "none")
    referer = request.headers.get("Referer")
    if referer is not None:
        return origin_of(referer) in allowed
    # An opaque origin (a sandboxed frame, a privacy redirect) with nothing else to go by.
    return origin is None


def origin_middleware(allowed: frozenset[str]) -> Middleware:
    """Refuse (403 ``forbidden``) a state-changing request a browser sent from another origin."""

    @web.middleware
    async def check_origin(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method in SAFE_METHODS or request.path.startswith(_EXEMPT_PREFIXES):
            return await handler(request)
        if not request_origin_ok(request, allowed):
            logger.warning(
                "refused %s %s from another origin",
                request.method,
                request.path,
                extra={"origin": request.headers.get("Origin", "")},
            )
            return error_response(
                403,
                DomainErrorCode.FORBIDDEN.value,
                "this request came from another site; use the service's own pages",
            )
        return await handler(request)

    return check_origin
