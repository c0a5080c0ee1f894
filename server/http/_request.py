"""HTTP helpers shared by the REST route modules: JSON bodies validated by pydantic models,
JSON responses, and the role checks."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.accounts import SESSION_COOKIE
from server.cases import Case
from server.errors import (
    DomainError,
    DomainErrorCode,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from server.http.auth import bearer_token
from server.http.keys import AUTH_KEY, CASES_KEY
from signaling import Identity, Role, SignalingError
from web import JOIN_COOKIE

__all__ = [
    "ADMIN",
    "CALL_TAKERS",
    "MAX_BODY_BYTES",
    "STAFF",
    "case_id_of",
    "customer_of",
    "credential_of",
    "json_response",
    "read_body",
    "read_json",
    "require",
    "validation_error",
]

MAX_BODY_BYTES = 64 * 1024

STAFF = frozenset({Role.AGENT, Role.REVIEWER, Role.ADMIN})
CALL_TAKERS = frozenset({Role.AGENT, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})

M = TypeVar("M", bound=BaseModel)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=str))


def validation_error(exc: ValidationError) -> InvalidRequest:
    parts: list[str] = []
    fields: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
        if loc:
            fields.append(loc)
    return InvalidRequest("; ".join(parts) or "invalid body", fields=tuple(fields))


async def read_json(request: web.Request) -> Any:
    """The request's JSON body. It must be labelled ``application/json`` (or ``+json``): a body
    without a Content-Type is refused (415), never parsed, because a cross-site form or
    ``fetch`` may send ``text/plain`` or nothing at all without a CORS preflight."""
    content_type = request.headers.get("Content-Type")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json" and not mime.endswith("+json"):
        sent = f"not {mime}" if mime else "this request has no Content-Type"
        raise DomainError(
            f"send the body as application/json ({sent})",
            code=DomainErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    limit = MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise DomainError(f"body over {limit} bytes", code=DomainErrorCode.TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise DomainError(f"body over {limit} bytes", code=DomainErrorCode.TOO_LARGE)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidRequest("a JSON object body is required")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise InvalidRequest("body is not valid UTF-8 JSON") from None


async def read_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def require(request: web.Request, roles: frozenset[Role] = STAFF) -> Identity:
    identity = await request.app[AUTH_KEY].authenticate(request)
    if identity is None or not identity.is_staff:
        raise Unauthorized("sign in (POST /api/login) or send an API bearer token")
    if identity.role not in roles:
        allowed = ", ".join(sorted(role.value for role in roles))
        raise Forbidden(f"this needs the role {allowed}; you are {identity.role.value}")
    return identity


def case_id_of(request: web.Request) -> str:
    return request.match_info["id"]


def credential_of(request: web.BaseRequest) -> str | None:
    """The secret a request is authenticated by, as :meth:`RequestAuth.identify` picks it: the
    bearer token when there is an ``Authorization`` header, else the session cookie."""
    token = bearer_token(request)
    if token is not None:
        return token or None
    return request.cookies.get(SESSION_COOKIE) or None


async def customer_of(request: web.Request) -> tuple[Identity, Case]:
    """The customer whose page's cookie came with the request (``/join/c/{case_id}/...``), and
    their case."""
    # The page's cookie; an app may send the link's token as a bearer instead.
    token = request.cookies.get(JOIN_COOKIE) or bearer_token(request)
    if not token:
        raise Unauthorized("open your link again: this page's session is missing")
    try:
        identity = request.app[AUTH_KEY].verify_join_token(token)
    except SignalingError as exc:
        raise Unauthorized(f"{exc.message}: open your link again") from None
    case_id = request.match_info["case_id"]
    if identity.case_id != case_id:
        raise NotFound("there is no such call")
    return identity, await request.app[CASES_KEY].require(case_id)
