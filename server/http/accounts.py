"""REST routes of accounts: sign in and out, the signed-in user and their password, staff users
(list, create, disable, role, password reset) and API tokens (list, create, revoke)."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import StrictBool, StringConstraints, model_validator

from server.accounts import Caller, CredentialKind
from server.errors import DomainError, Forbidden, NotFound, Unauthorized
from server.http._request import ADMIN, read_body, require
from server.http.keys import ACCOUNTS_KEY, AUTH_KEY, RATE_LIMITS_KEY, SETTINGS_KEY
from server.http.openapi import ApiRoute
from server.http.ratelimit import client_address
from server.http.replies import JsonReply, Out, reply
from server.http.wire import Body, Name, ShortText, StaffRole

__all__ = ["routes"]

#: What an API token may be: ``integration`` (the default) or a staff role.
TokenRole = Literal["integration", "agent", "reviewer", "admin"]
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]


class LoginBody(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class NewUserBody(Body):
    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    password: Password
    name: Name
    role: StaffRole


class UserChangeBody(Body):
    disabled: StrictBool | None = None
    role: StaffRole | None = None
    password: Password | None = None

    @model_validator(mode="after")
    def _something(self) -> UserChangeBody:
        if self.disabled is None and self.role is None and self.password is None:
            raise ValueError("give at least one of disabled, role, password")
        return self


class PasswordChangeBody(Body):
    old_password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    new_password: Password


class NewTokenBody(Body):
    name: ShortText
    role: TokenRole = "integration"


class UserOut(Out):
    id: str
    username: str | None
    name: str
    role: TokenRole


class UserResponse(Out):
    user: UserOut


class AccountOut(Out):
    id: str
    username: str
    name: str
    role: StaffRole
    disabled: bool
    created_at: float


class AccountResponse(Out):
    user: AccountOut


class AccountListResponse(Out):
    users: list[AccountOut]


class TokenCreatedResponse(Out):
    token: str
    id: str


class TokenOut(Out):
    id: str
    name: str
    role: TokenRole
    created_by: str | None
    created_at: float
    revoked_at: float | None


class TokenListResponse(Out):
    tokens: list[TokenOut]


def _login_address(request: web.Request) -> str:
    """The client address the sign-in throttle keys on (behind trusted proxies only)."""
    return client_address(request, request.app[SETTINGS_KEY].trusted_proxies)


async def _caller(request: web.Request) -> Caller:
    await require(request)
    caller = await request.app[AUTH_KEY].caller(request)
    if caller is None:  # require() found one a moment ago on this very request
        raise Unauthorized("sign in (POST /api/login) or send an API bearer token")
    return caller


async def _session_caller(request: web.Request) -> Caller:
    caller = await _caller(request)
    if caller.kind is not CredentialKind.SESSION:
        raise Forbidden("this is for a signed-in user, not an API token")
    return caller


async def login(request: web.Request) -> JsonReply[UserResponse]:
    body = await read_body(request, LoginBody)
    accounts = request.app[ACCOUNTS_KEY]
    throttle = request.app[RATE_LIMITS_KEY].logins
    async with throttle.attempt(_login_address(request), body.username) as failed:
        try:
            user = await accounts.login(body.username, body.password)
        except DomainError:
            failed()
            raise
    session = await accounts.start_session(user)
    response = reply(UserResponse, {"user": user.to_json()})
    request.app[AUTH_KEY].set_session_cookie(response, session)
    return response


async def logout(request: web.Request) -> web.Response:
    auth = request.app[AUTH_KEY]
    caller = await auth.caller(request)
    if caller is not None and caller.kind is CredentialKind.SESSION:
        await request.app[ACCOUNTS_KEY].end_session(caller.credential_id, caller.identity.subject)
    response = web.Response(status=204)
    auth.clear_session_cookie(response)
    return response


async def logout_everywhere(request: web.Request) -> web.Response:
    caller = await _session_caller(request)
    await request.app[ACCOUNTS_KEY].end_all_sessions(caller.identity.subject)
    response = web.Response(status=204)
    request.app[AUTH_KEY].clear_session_cookie(response)
    return response


async def me(request: web.Request) -> JsonReply[UserResponse]:
    caller = await _caller(request)
    return reply(
        UserResponse,
        {
            "user": {
                "id": caller.credential_id
                if caller.kind is CredentialKind.API_TOKEN
                else caller.identity.subject,
                "username": caller.username,
                "name": caller.identity.name,
                "role": caller.role,
            }
        },
    )


async def change_own_password(request: web.Request) -> web.Response:
    caller = await _session_caller(request)
    body = await read_body(request, PasswordChangeBody)
    throttle = request.app[RATE_LIMITS_KEY].logins
    # A stolen cookie must not become a way to guess the password at leisure.
    async with throttle.attempt(_login_address(request), caller.username or "") as failed:
        try:
            session = await request.app[ACCOUNTS_KEY].change_password(
                caller.identity.subject, body.old_password, body.new_password
            )
        except DomainError as exc:
            if exc.code.value == "invalid_credentials":
                failed()
            raise
    response = web.Response(status=204)
    request.app[AUTH_KEY].set_session_cookie(response, session)
    return response


async def list_users(request: web.Request) -> JsonReply[AccountListResponse]:
    await require(request, ADMIN)
    users = await request.app[ACCOUNTS_KEY].list_users()
    return reply(AccountListResponse, {"users": [user.to_admin_json() for user in users]})


async def create_user(request: web.Request) -> JsonReply[UserResponse]:
    await require(request, ADMIN)
    body = await read_body(request, NewUserBody)
    user = await request.app[ACCOUNTS_KEY].create_user(
        body.username, body.password, body.name, body.role
    )
    return reply(UserResponse, {"user": user.to_json()}, status=201)


async def change_user(request: web.Request) -> JsonReply[AccountResponse]:
    await require(request, ADMIN)
    body = await read_body(request, UserChangeBody)
    user = await request.app[ACCOUNTS_KEY].update_user(
        request.match_info["id"], role=body.role, disabled=body.disabled, password=body.password
    )
    return reply(AccountResponse, {"user": user.to_admin_json()})


async def list_tokens(request: web.Request) -> JsonReply[TokenListResponse]:
    await require(request, ADMIN)
    tokens = await request.app[ACCOUNTS_KEY].list_api_tokens()
    return reply(TokenListResponse, {"tokens": [token.to_json() for token in tokens]})


async def create_token(request: web.Request) -> JsonReply[TokenCreatedResponse]:
    identity = await require(request, ADMIN)
    body = await read_body(request, NewTokenBody)
    issued = await request.app[ACCOUNTS_KEY].create_api_token(
        body.name, body.role, created_by=identity.subject
    )
    return reply(TokenCreatedResponse, {"token": issued.token, "id": issued.id}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    await require(request, ADMIN)
    if not await request.app[ACCOUNTS_KEY].revoke_api_token(request.match_info["id"]):
        raise NotFound("no such API token")
    return web.Response(status=204)


_BODY_ERRORS = (400, 401, 403, 413, 415)


def routes() -> list[ApiRoute]:
    R = ApiRoute
    return [
        R("POST", "/api/login", login, "Sign in; starts a session and sets its cookie",
          "anyone", body=(LoginBody,), response=UserResponse,
          errors=(400, 401, 413, 415, 429), tag="auth"),
        R("POST", "/api/logout", logout, "Sign out: ends this session and clears its cookie",
          "anyone", status=204, tag="auth"),
        R("POST", "/api/logout-everywhere", logout_everywhere,
          "End every session of the signed-in user (every browser, every open socket)",
          "signed-in staff", status=204, errors=(401, 403), tag="auth"),
        R("GET", "/api/me", me, "The signed-in user (or the API token)", "staff",
          response=UserResponse, errors=(401,), tag="auth"),
        R("POST", "/api/me/password", change_own_password,
          "Change one's own password (the current one is needed); every other session ends",
          "signed-in staff", body=(PasswordChangeBody,), status=204,
          errors=(*_BODY_ERRORS, 429), tag="auth"),
        R("GET", "/api/users", list_users, "Staff accounts, disabled ones included", "admin",
          response=AccountListResponse, errors=(401, 403), tag="admin"),
        R("POST", "/api/users", create_user, "Create a staff account", "admin",
          body=(NewUserBody,), response=UserResponse, status=201,
          errors=(*_BODY_ERRORS, 409), tag="admin"),
        R("PATCH", "/api/users/{id}", change_user,
          "Disable or enable an account, change its role or reset its password; the"
          " account's sessions end", "admin", body=(UserChangeBody,),
          response=AccountResponse, errors=(*_BODY_ERRORS, 404, 409), tag="admin"),
        R("GET", "/api/tokens", list_tokens, "API tokens (never their secrets)", "admin",
          response=TokenListResponse, errors=(401, 403), tag="admin"),
        R("POST", "/api/tokens", create_token,
          "Create an API token (shown once); role integration unless asked", "admin",
          body=(NewTokenBody,), response=TokenCreatedResponse, status=201,
          errors=_BODY_ERRORS, tag="admin"),
        R("DELETE", "/api/tokens/{id}", revoke_token, "Revoke an API token", "admin",
          status=204, errors=(401, 403, 404), tag="admin"),
    ]  # fmt: skip
