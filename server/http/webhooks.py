"""REST routes of webhook targets (admins): list, add (the secret is shown once), remove."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import AnyHttpUrl, StringConstraints

from server.errors import NotFound
from server.http._request import ADMIN, read_body, require
from server.http.keys import WEBHOOKS_KEY
from server.http.openapi import ApiRoute
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body

__all__ = ["routes"]


class NewWebhookBody(Body):
    url: AnyHttpUrl
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] | None = None


class WebhookOut(Out):
    id: str
    url: str
    created_at: str


class WebhookCreatedResponse(Out):
    webhook: WebhookOut
    secret: str


class WebhookListResponse(Out):
    webhooks: list[WebhookOut]


async def list_webhooks(request: web.Request) -> JsonReply[WebhookListResponse]:
    await require(request, ADMIN)
    hooks = await request.app[WEBHOOKS_KEY].list_webhooks()
    return reply(WebhookListResponse, {"webhooks": [hook.to_json() for hook in hooks]})


async def create_webhook(request: web.Request) -> JsonReply[WebhookCreatedResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewWebhookBody)
    hook, secret = await request.app[WEBHOOKS_KEY].add_webhook(
        str(body.url), body.secret, created_by=identity.subject
    )
    return reply(WebhookCreatedResponse, {"webhook": hook.to_json(), "secret": secret}, status=201)


async def delete_webhook(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    if not await request.app[WEBHOOKS_KEY].remove_webhook(request.match_info["id"]):
        raise NotFound("no such webhook")
    return web.Response(status=204)


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("GET", "/api/webhooks", list_webhooks, "Configured webhook targets", "admin",
          response=WebhookListResponse, errors=(401, 403), tag="admin"),
        R("POST", "/api/webhooks", create_webhook,
          "Add a webhook target (its secret is shown once)", "admin", body=(NewWebhookBody,),
          response=WebhookCreatedResponse, status=201, errors=(400, 401, 403, 413, 415),
          tag="admin"),
        R("DELETE", "/api/webhooks/{id}", delete_webhook,
          "Remove a webhook target (cancels its pending deliveries)", "admin", status=204,
          errors=(401, 403, 404), tag="admin"),
    ]  # fmt: skip
