"""Which pages may open ``/ws``: the ``Origin`` of a WebSocket upgrade.

Browsers attach the session cookie to a WebSocket upgrade from any page of the same *site*
(``SameSite=Lax`` does not tell another port or a sibling subdomain apart), and WebSockets
have no CORS: the server must look at ``Origin`` itself. Browsers always send it on an upgrade;
other clients (the aiohttp and aiortc ones, encoders, scripts) send none, and they carry no
ambient credential for a page to ride on, so no ``Origin`` passes."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["origin_allowed", "origin_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: The page origin a WebSocket scheme stands for (a same-origin check compares page origins).
_PAGE_SCHEMES = {"ws": "http", "wss": "https"}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` as browsers serialise an origin (lower case, the
    default port left out), or ``None`` for anything that is not an http(s) URL with a host
    (``null`` included)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    scheme = _PAGE_SCHEMES.get(scheme, scheme)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(request: web.BaseRequest, allowed: frozenset[str]) -> bool:
    """Whether the page that sent ``request`` may use the socket: no ``Origin`` at all, or one
    of ``allowed``; with ``allowed`` empty, only the origin the request itself was sent to."""
    header = request.headers.get("Origin")
    if header is None:
        return True
    origin = origin_of(header)
    if origin is None:  # "null" (a sandboxed frame, a file:// page) or garbage
        return False
    if allowed:
        return origin in allowed
    return origin == origin_of(f"{request.scheme}://{request.host}")
