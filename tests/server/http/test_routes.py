"""The route table against what its handlers return: a route that documents a response model
has a handler that replies with exactly that model (``JsonReply[Model]``), and one that
documents none replies with no model, so ``/api/openapi.json`` and the responses cannot drift.
The binder refuses, at run time, a success written by another model."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.http import api_routes
from server.http.openapi import ApiRoute, bind
from server.http.replies import JsonReply, Out, reply

ROUTES = api_routes()


def _returned_model(route: ApiRoute) -> type[Any] | None:
    hints = typing.get_type_hints(route.handler)
    returned = hints["return"]
    if typing.get_origin(returned) is JsonReply:
        (model,) = typing.get_args(returned)
        return typing.cast(type[Any], model)
    return None


def test_every_route_is_listed_once() -> None:
    keys = [(route.method, route.path) for route in ROUTES]
    assert len(keys) == len(set(keys))
    names = [route.handler.__name__ for route in ROUTES]
    assert len(names) == len(set(names)), "operation ids are the handlers' names"
    assert len(ROUTES) >= 50


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_handler_replies_with_the_documented_model(route: ApiRoute) -> None:
    assert _returned_model(route) is route.response


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.response is not None], ids=lambda r: f"{r.method} {r.path}"
)
def test_response_models_refuse_unknown_keys(route: ApiRoute) -> None:
    assert route.response is not None
    assert issubclass(route.response, Out)
    assert route.response.model_config.get("extra") == "forbid"


class _Right(Out):
    value: int


class _Wrong(Out):
    other: int


async def test_the_binder_refuses_a_success_written_by_another_model() -> None:
    async def handler(request: web.Request) -> JsonReply[_Wrong]:
        return reply(_Wrong, {"other": 1})

    route = ApiRoute("GET", "/api/x", handler, "x", "anyone", response=_Right)
    with pytest.raises(TypeError, match="_Wrong but documents _Right"):
        await bind(route)(make_mocked_request("GET", "/api/x"))


async def test_a_reply_keeps_absent_keys_absent_and_refuses_unknown_ones() -> None:
    class Body(Out):
        a: int
        b: int | None = None

    response = reply(Body, {"a": 1})
    assert response.body == b'{"a": 1}'
    with pytest.raises(ValueError, match="c"):
        reply(Body, {"a": 1, "c": 2})
