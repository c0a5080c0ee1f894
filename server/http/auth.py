"""The request-facing half of accounts: credentials read from a request (the ``Authorization``
header, the session cookie) and the session cookie written on a response.

:class:`RequestAuth` fits ``signaling.Authenticator``: the Hub calls :meth:`RequestAuth.identify`
and :meth:`RequestAuth.authenticate` on the WebSocket upgrade, the REST edge and the pages call
them on every request. What the credentials mean is decided by ``server.accounts``.
"""

from __future__ import annotations

from aiohttp import web

from server.accounts import SESSION_COOKIE, AccountService, User
from signaling import Identity

__all__ = ["RequestAuth", "bearer_token"]


def bearer_token(request: web.BaseRequest) -> str | None:
    """The bearer token of the ``Authorization`` header: ``None`` without the header, ``""``
    when it holds another scheme (such a request is judged by that header alone)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


class RequestAuth:
    """Reads a request's credentials for :class:`server.accounts.AccountService` and keeps the
    session cookie. Cookies are ``Secure`` when the service's public URL is ``https://``."""

    def __init__(self, accounts: AccountService, *, public_url: str) -> None:
        self._accounts = accounts
        self._secure = public_url.startswith("https://")

    @property
    def accounts(self) -> AccountService:
        return self._accounts

    @property
    def secure_cookies(self) -> bool:
        return self._secure

    # -- signaling.Authenticator ---------------------------------------------------------------

    def verify_join_token(self, token: str) -> Identity:
        return self._accounts.verify_join_token(token)

    def identify(self, request: web.BaseRequest) -> Identity | None:
        """Staff from a bearer token or the session cookie (from the in-memory cache)."""
        return self._accounts.identify_credentials(
            bearer_token(request), request.cookies.get(SESSION_COOKIE)
        )

    async def authenticate(self, request: web.BaseRequest) -> Identity | None:
        """Like :meth:`identify`, but a cache miss is looked up in the store (a user or token
        created by another node)."""
        return await self._accounts.authenticate_credentials(
            bearer_token(request), request.cookies.get(SESSION_COOKIE)
        )

    # -- the session cookie --------------------------------------------------------------------

    def set_session_cookie(self, response: web.StreamResponse, user: User) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self._accounts.session_value(user),
            max_age=self._accounts.config.session_ttl_s,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._secure,
        )

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="Lax", secure=self._secure
        )
