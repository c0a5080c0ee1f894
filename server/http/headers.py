"""Security headers on every response of the service: pages, static files, the API, evidence
files and error answers alike.

They are added in ``on_response_prepare`` rather than in a middleware so that responses sent
before a handler returns (a streamed export, a ``FileResponse``, a WebSocket upgrade) and
aiohttp's own error pages get them too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from server.settings import Settings

__all__ = ["HSTS", "security_headers", "uses_https"]

#: One year, the usual floor for HSTS preload lists; subdomains are not ours to speak for.
HSTS = "max-age=31536000"


def uses_https(settings: Settings) -> bool:
    """Whether browsers reach the service over TLS: it terminates TLS itself, or its public URL
    (a proxy in front) is ``https://``."""
    return settings.tls or settings.base_url.lower().startswith("https://")


def security_headers(
    settings: Settings,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` handler: ``X-Content-Type-Options: nosniff`` everywhere (a
    stored file or a JSON answer is never sniffed into HTML), and ``Strict-Transport-Security``
    when the service is reached over https."""
    hsts = uses_https(settings)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if hsts:
            response.headers.setdefault("Strict-Transport-Security", HSTS)

    return add_headers
