"""The OpenAPI 3.1 document of the REST API, generated from the same pydantic models the
handlers validate and reply with, and the same route table :func:`server.http.setup_http`
registers (through :func:`bind`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server.http.replies import JsonReply

__all__ = ["ApiRoute", "ErrorDetail", "ErrorResponse", "bind", "openapi_document"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)\}")

_ERROR_TEXT = {
    400: "Invalid request (malformed JSON or a field fails validation)",
    401: "Not signed in (no or bad session cookie or API token)",
    403: "Signed in, but the role may not do this",
    404: "No such resource",
    409: "The case is not in a state that allows this",
    413: "Body too large",
    415: "Body is not JSON",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[str] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One REST endpoint: how it is registered and how it is documented."""

    method: str
    path: str
    handler: Handler
    summary: str
    who: str  # "anyone", "staff", or the roles allowed
    body: tuple[type[BaseModel], ...] = ()  # several: oneOf
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    tag: str = "api"


def bind(route: ApiRoute) -> Handler:
    """The aiohttp handler of ``route``: a success that was not written by the route's response
    model is an error (500, logged), never a body that differs from the document."""
    handler, expected = route.handler, route.response

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        if response.status < 300:
            model = response.model if isinstance(response, JsonReply) else None
            if model is not expected:
                raise TypeError(
                    f"{route.method} {route.path} answered with {model and model.__name__} "
                    f"but documents {expected and expected.__name__}"
                )
        return response

    return handle


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        name = model.__name__
        if name not in self.components:
            schema = model.model_json_schema(ref_template=_REF)
            for def_name, definition in schema.pop("$defs", {}).items():
                self.components.setdefault(def_name, definition)
            self.components[name] = schema
        return {"$ref": _REF.format(model=name)}


def _operation(route: ApiRoute, schemas: _Schemas) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__.lstrip("_"),
        "summary": route.summary,
        "description": f"Who: {route.who}.",
        "tags": [route.tag],
    }
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.path)
    ]
    if route.query is not None:
        query_schema = route.query.model_json_schema(ref_template=_REF)
        for def_name, definition in query_schema.get("$defs", {}).items():
            schemas.components.setdefault(def_name, definition)
        required = set(query_schema.get("required", ()))
        for name, schema in query_schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": schema}
            )
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        refs = [schemas.ref(model) for model in route.body]
        schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if route.response is not None:
        ok["content"] = {route.content_type: {"schema": schemas.ref(route.response)}}
    elif route.content_type != "application/json":
        ok["content"] = {route.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(route.status): ok}
    error_ref = schemas.ref(ErrorResponse)
    for status in sorted(set(route.errors)):
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": error_ref}},
        }
    operation["responses"] = responses
    if route.who != "anyone":
        operation["security"] = [{"sessionCookie": []}, {"bearerToken": []}]
    return operation


def openapi_document(
    routes: Iterable[ApiRoute], *, title: str, version: str, server_url: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": 'Errors are `{"error": {"code", "message"}}` with a proper status.',
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "inspect_session"},
                "bearerToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
