"""Operations routes: ``/healthz`` (the database included) and Prometheus ``/metrics``.

What they tell is for operators: ``/metrics`` (load, sessions, streams) and the node id in
``/healthz`` answer only a caller on this host or on a trusted proxy (``trusted_proxies``)
whose request was not forwarded for someone else, or an admin (session or bearer token).
Everyone else still learns from ``/healthz`` whether the service and its database are up.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from server.http.keys import AUTH_KEY, DB_KEY, METRICS_KEY, NODE_KEY, SETTINGS_KEY
from server.http.openapi import ApiRoute
from server.http.ratelimit import client_address, within
from server.http.replies import JsonReply, Out, reply
from server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from signaling import Role

__all__ = ["API_VERSION", "routes"]

API_VERSION = "0.1.0"


class HealthResponse(Out):
    status: Literal["ok", "degraded"]
    db: Literal["ok", "error"]
    version: str
    #: Which node answered (several may share the port: ``inspectd serve --workers N``); only
    #: for operators (see the module's docstring).
    node: str | None = None


#: This host: a request from it that no proxy forwarded is an operator's.
_THIS_HOST = ("127.0.0.0/8", "::1")


async def _is_operator(request: web.Request) -> bool:
    trusted = (*request.app[SETTINGS_KEY].trusted_proxies, *_THIS_HOST)
    if within(client_address(request, trusted), trusted):
        return True
    identity = await request.app[AUTH_KEY].authenticate(request)
    return identity is not None and identity.role is Role.ADMIN


async def healthz(request: web.Request) -> JsonReply[HealthResponse]:
    ok = await request.app[DB_KEY].ping()
    health: dict[str, str] = {
        "status": "ok" if ok else "degraded",
        "db": "ok" if ok else "error",
        "version": API_VERSION,
    }
    node = request.app.get(NODE_KEY)
    if node is not None and await _is_operator(request):
        health["node"] = node
    return reply(HealthResponse, health, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    if not await _is_operator(request):
        raise web.HTTPForbidden(
            reason="metrics are for this host, a trusted proxy or an admin's bearer token"
        )
    text = await request.app[METRICS_KEY].render()
    return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("GET", "/healthz", healthz, "Health (database included); the node id for operators",
          "anyone", response=HealthResponse, errors=(503,), tag="operations"),
        R("GET", "/metrics", metrics, "Prometheus metrics",
          "this host, trusted proxies, admin", errors=(403,), content_type="text/plain",
          tag="operations"),
    ]  # fmt: skip
