"""Operations routes: ``/healthz`` (the database included) and Prometheus ``/metrics``."""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from server.http.keys import DB_KEY, METRICS_KEY, NODE_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["API_VERSION", "routes"]

API_VERSION = "0.1.0"


class HealthResponse(Out):
    status: Literal["ok", "degraded"]
    db: Literal["ok", "error"]
    version: str
    #: Which node answered (several may share the port: ``inspectd serve --workers N``).
    node: str | None = None


async def healthz(request: web.Request) -> JsonReply[HealthResponse]:
    ok = await request.app[DB_KEY].ping()
    health = HealthResponse(
        status="ok" if ok else "degraded",
        db="ok" if ok else "error",
        version=API_VERSION,
        node=request.app.get(NODE_KEY),
    )
    return reply(HealthResponse, health, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    text = await request.app[METRICS_KEY].render()
    return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("GET", "/healthz", healthz, "Health (database included)", "anyone",
          response=HealthResponse, errors=(503,), tag="operations"),
        R("GET", "/metrics", metrics, "Prometheus metrics", "anyone",
          content_type="text/plain", tag="operations"),
    ]  # fmt: skip
