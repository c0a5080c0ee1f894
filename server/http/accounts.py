"""REST routes of accounts: sign in and out, the signed-in user, staff users and API tokens."""

from __future__ import annotations

from typing import Annotated, cast

from aiohttp import web
from pydantic import StringConstraints

from server.errors import DomainError, NotFound, Unauthorized
from server.http._request import ADMIN, read_body, require
from server.http.keys import ACCOUNTS_KEY, AUTH_KEY, RATE_LIMITS_KEY
from server.http.openapi import ApiRoute
from server.http.ratelimit import RateLimited
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, Name, ShortText, StaffRole
from signaling import Identity, Role, SubjectId, SubjectKind

__all__ = ["routes"]


class LoginBody(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class NewUserBody(Body):
    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    password: Annotated[str, StringConstraints(min_length=8, max_length=1024)]
    name: Name
    role: StaffRole


class NewTokenBody(Body):
    name: ShortText
    role: StaffRole = "admin"


class UserOut(Out):
    id: str
    username: str | None
    name: str
    role: StaffRole


class UserResponse(Out):
    user: UserOut


class TokenCreatedResponse(Out):
    token: str
    id: str


async def _user_out(request: web.Request, identity: Identity) -> UserOut:
    subject = SubjectId.parse(identity.subject)
    if subject.kind is SubjectKind.API_TOKEN:
        return UserOut(
            id=subject.key,
            username=None,
            name=identity.name,
            role=cast(StaffRole, identity.role.value),
        )
    user = await request.app[ACCOUNTS_KEY].get_user(identity.subject)
    if user is None:
        raise Unauthorized("the account no longer exists")
    return UserOut.model_validate(user.to_json())


async def login(request: web.Request) -> JsonReply[UserResponse]:
    body = await read_body(request, LoginBody)
    accounts = request.app[ACCOUNTS_KEY]
    failures = request.app[RATE_LIMITS_KEY].logins.bucket(
        f"{request.remote or '-'}|{body.username.casefold()}"
    )
    if failures.retry_after() > 0:
        raise RateLimited(failures.retry_after(), "too many failed logins: try again later")
    try:
        user = await accounts.login(body.username, body.password)
    except DomainError:
        failures.take()
        raise
    response = reply(UserResponse, {"user": user.to_json()})
    request.app[AUTH_KEY].set_session_cookie(response, user)
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    request.app[AUTH_KEY].clear_session_cookie(response)
    return response


async def me(request: web.Request) -> JsonReply[UserResponse]:
    identity = await require(request)
    return reply(UserResponse, UserResponse(user=await _user_out(request, identity)))


async def create_user(request: web.Request) -> JsonReply[UserResponse]:
    await require(request, ADMIN)
    body = await read_body(request, NewUserBody)
    user = await request.app[ACCOUNTS_KEY].create_user(
        body.username, body.password, body.name, Role(body.role)
    )
    return reply(UserResponse, {"user": user.to_json()}, status=201)


async def create_token(request: web.Request) -> JsonReply[TokenCreatedResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewTokenBody)
    issued = await request.app[ACCOUNTS_KEY].create_api_token(
        body.name, Role(body.role), created_by=identity.subject
    )
    return reply(TokenCreatedResponse, {"token": issued.token, "id": issued.id}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    if not await request.app[ACCOUNTS_KEY].revoke_api_token(request.match_info["id"]):
        raise NotFound("no such API token")
    return web.Response(status=204)


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("POST", "/api/login", login, "Sign in; sets the session cookie", "anyone",
          body=(LoginBody,), response=UserResponse, errors=(400, 401, 413, 415, 429),
          tag="auth"),
        R("POST", "/api/logout", logout, "Sign out; clears the session cookie", "staff",
          status=204, tag="auth"),
        R("GET", "/api/me", me, "The signed-in user", "staff", response=UserResponse,
          errors=(401,), tag="auth"),
        R("POST", "/api/users", create_user, "Create a staff account", "admin",
          body=(NewUserBody,), response=UserResponse, status=201,
          errors=(400, 401, 403, 409, 413, 415), tag="admin"),
        R("POST", "/api/tokens", create_token, "Create an API token (shown once)", "admin",
          body=(NewTokenBody,), response=TokenCreatedResponse, status=201,
          errors=(400, 401, 403, 413, 415), tag="admin"),
        R("DELETE", "/api/tokens/{id}", revoke_token, "Revoke an API token", "admin",
          status=204, errors=(401, 403, 404), tag="admin"),
    ]  # fmt: skip
