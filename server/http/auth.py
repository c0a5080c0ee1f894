"""The request-facing half of accounts: credentials read from a request (the ``Authorization``
header, the session cookie) and the session cookie written on a response.

:class:`RequestAuth` fits ``signaling.Authenticator``: the Hub calls :meth:`RequestAuth.identify`
and :meth:`RequestAuth.authenticate` on the WebSocket upgrade and
:meth:`RequestAuth.still_valid` to re-check an open socket; the REST edge and the pages call
them on every request. The edge middleware (``server.http.ratelimit``) looks a request's
credentials up in the store before anything else and keeps the answer on that request only
(:meth:`RequestAuth.caller`, :meth:`RequestAuth.identify`); :meth:`RequestAuth.authenticate`
always asks the store again. Nothing is kept beyond a request, so a revocation holds from the
next request on.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from server.accounts import SESSION_COOKIE, AccountService, Caller, IssuedSession
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


def has_credentials(request: web.BaseRequest) -> bool:
    """Whether the request carries anything that could name a caller."""
    return "Authorization" in request.headers or bool(request.cookies.get(SESSION_COOKIE))


@dataclass(frozen=True, slots=True)
class _Looked:
    """The answer for one request (``caller`` ``None``: no valid credentials)."""

    caller: Caller | None


_CALLER = web.RequestKey("inspect_caller", _Looked)


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

    async def caller(self, request: web.BaseRequest) -> Caller | None:
        """Who the request's credentials name, looked up in the store once per request (the
        edge middleware asks first; the handler's later questions get the same answer)."""
        looked: _Looked | None = request.get(_CALLER)
        if looked is None:
            return await self._look_up(request)
        return looked.caller

    async def _look_up(self, request: web.BaseRequest) -> Caller | None:
        found = None
        if has_credentials(request):
            found = await self._accounts.authenticate(
                bearer_token(request), request.cookies.get(SESSION_COOKIE)
            )
        request[_CALLER] = _Looked(found)
        return found

    def identified(self, request: web.BaseRequest) -> Caller | None:
        """The caller :meth:`caller` found for this request, if it was asked already."""
        looked: _Looked | None = request.get(_CALLER)
        return looked.caller if looked is not None else None

    # -- signaling.Authenticator ---------------------------------------------------------------

    def verify_join_token(self, token: str) -> Identity:
        return self._accounts.verify_join_token(token)

    def identify(self, request: web.BaseRequest) -> Identity | None:
        """Staff as the edge middleware found them for this request; ``None`` if it did not
        look (then :meth:`authenticate` does)."""
        caller = self.identified(request)
        return caller.identity if caller is not None else None

    async def authenticate(self, request: web.BaseRequest) -> Identity | None:
        """Staff from a bearer token or the session cookie, as the store says *now*: looked up
        again on every call, because the Hub calls it on a socket's upgrade request for as
        long as the socket is open, to re-check it."""
        caller = await self._look_up(request)
        return caller.identity if caller is not None else None

    async def still_valid(self, identity: Identity) -> bool:
        """Whether an open socket's identity still holds (see
        :meth:`server.accounts.AccountService.still_valid`)."""
        return await self._accounts.still_valid(identity)

    # -- the session cookie --------------------------------------------------------------------

    def set_session_cookie(self, response: web.StreamResponse, session: IssuedSession) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            session.value,
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
