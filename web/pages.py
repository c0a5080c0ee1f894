"""Page routes: staff login, the agent console, the case page, the evidence archive, the
customer join page, the camera page of a site's phone, the walkthrough of a site's cameras and
the administration of sites and cameras.

Pages are thin server renders; the live behaviour (signaling, WebRTC, chat) lives in the ES
modules under ``static/js``. Nothing here talks to the database or the signaling hub: what a
render needs comes from the :class:`PageBackend` that ``server`` wires in.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from web.locales import (
    DEFAULT_LOCALE,
    catalogue_subset,
    catalogues,
    direction,
    language_names,
    negotiate,
    supported_locale,
)

__all__ = [
    "BACKEND_KEY",
    "CAMERA_COOKIE",
    "JOIN_COOKIE",
    "LANG_COOKIE",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "CameraView",
    "JoinView",
    "PageBackend",
    "SiteView",
    "StaffView",
    "setup_pages",
]

logger = logging.getLogger(__name__)

PACKAGE_DIR: Final = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
STATIC_DIR: Final = PACKAGE_DIR / "static"

#: Content types by suffix. ES modules must be served as ``text/javascript`` (browsers refuse
#: module scripts with a non-JavaScript MIME type), whatever the host's mimetypes table says.
_CONTENT_TYPES: Final[dict[str, str]] = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".woff2": "font/woff2",
}

#: How each logistics stage reads on a page (value, label), in shipping order. Which stages exist
#: is the evidence record's to say (``setup_pages(logistics_stages=...)``); this table is only
#: the words, and the stage list until the app passes one. Every page renders the list it uses
#: (``base.html``), so the scripts read labels from the page instead of keeping their own copy.
LOGISTICS_STAGES: Final = (
    ("packing", "Packing"),
    ("domestic_pickup", "Domestic pickup"),
    ("export_customs", "Export customs"),
    ("international_transport", "International transport"),
    ("import_customs", "Import customs"),
    ("last_mile", "Last mile"),
    ("return_receipt", "Return receipt"),
    ("refurbishment_qc", "Refurbishment QC"),
)
_STAGE_LABELS: Final = dict(LOGISTICS_STAGES)

#: What a capture was for.
EVIDENCE_USES: Final = (
    ("return", "Return"),
    ("walkthrough", "Walkthrough"),
    ("support", "Support"),
    ("packing", "Packing"),
)

#: Roles that may open the evidence archive (the API enforces the same; this is the friendly page).
ARCHIVE_ROLES: Final = frozenset({"reviewer", "admin"})

#: Pages only load their own scripts and styles; media comes from the camera and WebRTC.
_CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        # 'self' covers ws:/wss: to this host and port (CSP Level 3); no other host.
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)


#: Cookies that hold a customer's join token and a phone camera's token once the page has taken
#: it out of the address. Each is scoped to its page's path (``/join/c/<case>``,
#: ``/camera/c/<camera>``), HttpOnly and SameSite=Strict: no other page, no script and no other
#: site's request carries it, and the token never sits in a URL, the history or a Referer.
JOIN_COOKIE: Final = "inspect_join"
CAMERA_COOKIE: Final = "inspect_camera"
#: Browsers cap cookie lifetimes at 400 days; a camera token without an expiry gets that.
_MAX_COOKIE_AGE_S: Final = 400 * 24 * 3600
_MAX_TOKEN_BODY_BYTES: Final = 8 * 1024


@dataclass(frozen=True, slots=True)
class StaffView:
    """The logged-in staff member, as pages show them."""

    user_id: str
    username: str
    name: str
    role: str  # "agent" | "reviewer" | "admin"


@dataclass(frozen=True, slots=True)
class JoinView:
    """What a customer join token points at; ``ok`` is false for an expired or invalid link."""

    ok: bool
    error: str | None  # None | "expired" | "invalid"
    case_id: str | None = None
    kind: str | None = None  # "return" | "support"
    customer_name: str | None = None
    order_id: str | None = None
    sku: str | None = None
    #: The merchant asks customers whether to share their location with their photos.
    photo_location: bool = False
    #: The case's ``customer_locale``: the page's language unless the customer picked another.
    locale: str | None = None
    #: Speech in the call is transcribed (captions on by setting and for the case): the page
    #: tells the customer so.
    captions: bool = False
    #: The return's questions before the call are still to answer (``POST .../intake``).
    intake_open: bool = False


@dataclass(frozen=True, slots=True)
class CameraView:
    """What a camera token points at. ``error``: None, "invalid", "expired", "revoked",
    "disabled" (the camera is switched off) or "wrong_kind" (not a phone camera's token)."""

    ok: bool
    error: str | None
    camera_id: str | None = None
    camera_name: str | None = None
    site_name: str | None = None
    #: When the token stops working (unix seconds), ``None`` for "until revoked".
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SiteView:
    site_id: str
    name: str


#: Each link problem's HTTP status; its words are ``error.join_<problem>_title`` and ``_text``
#: in the catalogues.
JOIN_ERRORS: Final[dict[str, int]] = {"invalid": 404, "expired": 410, "missing": 404}

#: Each camera token problem's HTTP status; its words are ``error.camera_<problem>_title`` and
#: ``_text``.
CAMERA_ERRORS: Final[dict[str, int]] = {
    "missing": 404,
    "invalid": 404,
    "expired": 410,
    "revoked": 410,
    "disabled": 403,
    "wrong_kind": 400,
}

#: The cookie that keeps the language a customer picked in the switcher (``?lang=``).
LANG_COOKIE: Final = "inspect_lang"
_LANG_COOKIE_AGE_S: Final = 365 * 24 * 3600

#: The reasons a customer may give at intake, in the order the page lists them (the values of
#: ``server.returns.ReturnReason``; their words are ``reason.<value>`` in the catalogues).
RETURN_REASONS: Final = (
    "defective", "damaged_in_transit", "missing_parts", "wrong_item", "not_as_described",
    "size_too_large", "size_too_small", "color", "style", "unwanted", "other",
)  # fmt: skip

#: Stations a fixed camera can watch (value, label).
STATION_STAGES: Final = (
    ("receiving", "Receiving"),
    ("packing", "Packing"),
    ("returns_qc", "Returns QC"),
)


class PageBackend(Protocol):
    """What the pages need from the rest of the service (wired in by ``server``)."""

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies the pages set are ``Secure`` (the service is reached over https)."""
        ...

    def staff(self, request: web.Request) -> StaffView | None:
        """The staff member behind the request's session cookie, or ``None``."""
        ...

    def join_view(self, token: str) -> JoinView | Awaitable[JoinView]:
        """Check a customer join token (signature, expiry) and describe its case.

        May be a coroutine (it usually reads the case from the database)."""
        ...

    def camera_view(self, token: str) -> CameraView | Awaitable[CameraView]:
        """Check a phone camera's token (known, not revoked or expired, camera switched on)."""
        ...

    def site_view(self, site_id: str) -> SiteView | None | Awaitable[SiteView | None]:
        """The site, or ``None`` when there is no such site."""
        ...


BACKEND_KEY: Final = web.AppKey("web.page_backend", PageBackend)


def setup_pages(
    app: web.Application,
    backend: PageBackend,
    *,
    logistics_stages: Iterable[str] | None = None,
) -> None:
    """Mount the page routes, the templates and ``/static/`` on ``app``.

    ``logistics_stages`` are the stage values evidence can be filed under, in journey order (the
    app passes its evidence record's); every stage select offers them and every page carries
    their labels. Without it the pages offer :data:`LOGISTICS_STAGES`."""
    app[BACKEND_KEY] = backend
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["logistics_stages"] = _stage_options(logistics_stages)
    # Read and checked now: a broken catalogue stops the start, naming the file and the key.
    catalogues()
    app.router.add_get("/", _index, name="index")
    app.router.add_get("/login", _login, name="login")
    app.router.add_get("/agent", _agent, name="agent")
    app.router.add_get("/agent/cases/{case_id}", _case, name="agent_case")
    app.router.add_get("/evidence", _evidence, name="evidence")
    for kind in (_JOIN, _CAMERA):
        handlers, name = _link_handlers(kind), kind.name
        app.router.add_get(f"/{name}", handlers["link"], name=f"{name}_link")
        app.router.add_post(f"/{name}/session", handlers["session"], name=f"{name}_session")
        app.router.add_get(f"/{name}/c/{{{kind.param}}}", handlers["page"], name=name)
        app.router.add_get(f"/{name}/{{token}}", handlers["legacy"], name=f"{name}_legacy")
    app.router.add_get("/walkthrough", _sites, name="sites")
    app.router.add_get("/walkthrough/{site_id}", _walkthrough, name="walkthrough")
    app.router.add_get("/admin/sites", _admin_sites, name="admin_sites")
    app.router.add_get("/admin/sites/{site_id}", _admin_site, name="admin_site")
    app.router.add_get("/admin/returns", _admin_returns, name="admin_returns")
    app.router.add_get("/analytics", _analytics, name="analytics")
    app.router.add_get("/static/{path:.+}", _static, name="static")


# -- helpers -----------------------------------------------------------------------------------


def _stage_options(values: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
    """(value, label) of each stage, in the order given; a stage this module has no words for
    reads as its value in words (``new_stage`` -> "New stage")."""
    if values is None:
        return LOGISTICS_STAGES
    return tuple(
        (str(value), _STAGE_LABELS.get(str(value)) or str(value).replace("_", " ").capitalize())
        for value in values
    )


def _backend(request: web.Request) -> PageBackend:
    return request.app[BACKEND_KEY]


def _safe_next(value: str | None) -> str:
    """A post-login target: a path on this site (no scheme, no host), else ``/agent``.

    Browsers drop tabs and newlines from a URL and read a backslash as ``/``, so ``/<TAB>/evil``
    leaves the site as ``//evil``: a target with any control character or backslash is refused
    outright rather than cleaned."""
    if not value or "\\" in value or any(_is_control(char) for char in value):
        return "/agent"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/agent"
    return value


def _is_control(char: str) -> bool:
    """C0, DEL and C1 control characters."""
    return char < " " or "\x7f" <= char <= "\x9f"


def page_locale(request: web.Request, preferred: str | None = None) -> str:
    """The language of a customer's or camera's page: the one picked in the switcher (``?lang=``,
    then its cookie), else ``preferred`` (the case's), else the browser's ``Accept-Language``,
    else English."""
    picked = supported_locale(request.query.get("lang")) or supported_locale(
        request.cookies.get(LANG_COOKIE)
    )
    return picked or negotiate(request.headers.get("Accept-Language"), preferred)


def _words(locale: str) -> dict[str, Any]:
    """What a template needs to speak ``locale``: ``t(key, **values)`` (escaped, ready to place),
    the language and direction for ``<html>``, the switcher's list and the catalogue block the
    page's script reads."""
    books = catalogues()

    def t(key: str, **values: Any) -> Markup:
        return Markup(books.render(locale, key, values, quote=lambda text: str(escape(text))))

    return {
        "locale": locale,
        "dir": direction(locale),
        "t": t,
        "languages": language_names(),
        "i18n": catalogue_subset(locale, ("",)),
    }


def _render(
    template: str,
    request: web.Request,
    context: dict[str, Any],
    *,
    status: int = 200,
    locale: str = DEFAULT_LOCALE,
) -> web.Response:
    """``template`` in ``locale`` (staff pages are in English; customer and camera pages pass
    :func:`page_locale`), with the pages' security headers."""
    response = aiohttp_jinja2.render_template(
        template, request, {**_words(locale), **context}, status=status
    )
    picked = supported_locale(request.query.get("lang"))
    if picked is not None and picked == locale:
        # The switcher's choice outlives this page: the next link opens in it too.
        response.set_cookie(
            LANG_COOKIE,
            picked,
            path="/",
            max_age=_LANG_COOKIE_AGE_S,
            samesite="Lax",
            secure=_backend(request).secure_cookies,
        )
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _require_staff(request: web.Request) -> StaffView:
    staff = _backend(request).staff(request)
    if staff is None:
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}")
    return staff


def _forbidden(request: web.Request, staff: StaffView, message: str) -> web.Response:
    """A 403 page that says why, inside the staff frame (the header still works)."""
    return _render(
        "forbidden.html",
        request,
        {"title": "Not allowed", "staff": staff, "message": message},
        status=403,
    )


def _not_found(request: web.Request, staff: StaffView, message: str) -> web.Response:
    return _render(
        "not_found.html", request, {"title": "Not found", "staff": staff, "message": message},
        status=404,
    )  # fmt: skip


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- handlers ----------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/agent")


async def _login(request: web.Request) -> web.StreamResponse:
    target = _safe_next(request.query.get("next"))
    return _render("login.html", request, {"title": "Sign in", "next": target})


async def _agent(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    return _render(
        "agent.html",
        request,
        {"title": "Agent console", "staff": staff},
    )


async def _case(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    case_id = request.match_info["case_id"]
    return _render(
        "case.html", request, {"title": f"Case {case_id}", "staff": staff, "case_id": case_id}
    )


async def _evidence(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    if staff.role not in ARCHIVE_ROLES:
        return _forbidden(request, staff, "The evidence archive is for reviewers")
    context = {
        "title": "Evidence archive",
        "staff": staff,
        "uses": EVIDENCE_USES,
    }
    return _render("evidence.html", request, context)


# -- customer and camera links ----------------------------------------------------------------
#
# A link carries its token in the fragment (``/join#t=<token>``), which browsers never send: the
# link page's script takes it out of the address, POSTs it to ``/join/session`` and goes on to
# the token-free page (``/join/c/<case>``) with the token in a path-scoped cookie. Links sent
# before, with the token in the path (``/join/<token>``), still open: that page sets the cookie
# itself and moves on the same way. The move is made by the page's script, not by a redirect,
# so that the strict cookie goes with it even when the link was opened from another site (a
# webmail page): a navigation that a cross-site one redirects is cross-site too.


@dataclass(frozen=True, slots=True)
class _LinkKind:
    """A kind of link: a customer's join link or a phone camera's link. Both go the same way
    (link page, token exchange, token-free page); only these differ."""

    name: str  # "join" | "camera": the path's first segment, the link page's wording
    cookie: str
    #: The token-free page's path parameter: the case or the camera the token is for.
    param: str
    #: Each problem's HTTP status (its words are in the catalogues).
    errors: Mapping[str, int]
    error_template: str
    #: Whether the cookie outlives the browser session when the token sets no end (a phone on a
    #: shelf is restarted now and then; a customer's link is for one call).
    outlives_browser: bool

    def path(self, target: str) -> str:
        return f"/{self.name}/c/{quote(target, safe='')}"


_JOIN = _LinkKind(
    "join", JOIN_COOKIE, "case_id", JOIN_ERRORS, "join_error.html", outlives_browser=False
)
_CAMERA = _LinkKind(
    "camera", CAMERA_COOKIE, "camera_id", CAMERA_ERRORS, "camera_error.html", outlives_browser=True
)


async def _open_link(
    request: web.Request, kind: _LinkKind, token: str
) -> tuple[JoinView | CameraView, str | None, float | None]:
    """What ``token`` opens: the view, its case or camera, and when the token ends."""
    if kind is _JOIN:
        join: JoinView = await _resolve(_backend(request).join_view(token))
        return join, join.case_id, None
    camera: CameraView = await _resolve(_backend(request).camera_view(token))
    return camera, camera.camera_id, camera.expires_at


def _set_link_cookie(
    request: web.Request,
    response: web.StreamResponse,
    kind: _LinkKind,
    token: str,
    target: str,
    expires_at: float | None = None,
) -> None:
    """The token in its page's cookie, for as long as the token lasts (when it says)."""
    max_age: int | None = None
    if expires_at is not None:
        max_age = max(0, min(_MAX_COOKIE_AGE_S, int(expires_at - time.time())))
    elif kind.outlives_browser:
        max_age = _MAX_COOKIE_AGE_S
    response.set_cookie(
        kind.cookie,
        token,
        path=kind.path(target),
        max_age=max_age,
        httponly=True,
        samesite="Strict",
        secure=_backend(request).secure_cookies,
    )


def _clear_link_cookie(
    request: web.Request, response: web.StreamResponse, kind: _LinkKind, target: str
) -> None:
    response.del_cookie(
        kind.cookie,
        path=kind.path(target),
        httponly=True,
        samesite="Strict",
        secure=_backend(request).secure_cookies,
    )


def _problem(kind: _LinkKind, error: str, locale: str) -> tuple[int, str, str, str]:
    """A link problem's (status, code, heading, explanation) in ``locale``; an unknown problem
    reads as an invalid link."""
    code = error if error in kind.errors else "invalid"
    books = catalogues()
    heading = books.render(locale, f"error.{kind.name}_{code}_title", {})
    text = books.render(locale, f"error.{kind.name}_{code}_text", {})
    return kind.errors[code], code, heading, text


def _link_page(request: web.Request, kind: _LinkKind, *, next_url: str = "") -> web.Response:
    """The page that takes a token out of the address (see above) and moves on."""
    locale = page_locale(request)
    _, _, heading, text = _problem(kind, "missing", locale)
    title_key = "page.join_title" if kind is _JOIN else "page.camera_title"
    context = {
        "title": catalogues().render(locale, title_key, {}),
        "kind": kind.name,
        "next": next_url,
        "heading": heading,
        "text": text,
    }
    return _render("link.html", request, context, locale=locale)


def _link_error(request: web.Request, kind: _LinkKind, error: str) -> web.Response:
    """The JSON answer of a refused token exchange: the words the link page shows, in the
    language the page was shown in."""
    status, _, heading, text = _problem(kind, error, page_locale(request))
    body = {"error": {"code": error, "message": heading, "help": text}}
    response = web.json_response(body, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _posted_token(request: web.Request) -> str | None:
    """``{"token": "..."}`` from the link page, or ``None`` for anything else."""
    mime = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        return None
    if request.content_length is None or request.content_length > _MAX_TOKEN_BODY_BYTES:
        return None
    try:
        data = json.loads(await request.read())
    except ValueError:
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and 0 < len(token) <= 4096 else None


def _error_page(
    request: web.Request, kind: _LinkKind, error: str, preferred: str | None = None
) -> web.Response:
    locale = page_locale(request, preferred)
    status, _, heading, text = _problem(kind, error, locale)
    context = {"title": heading, "error": error, "heading": heading, "text": text}
    return _render(kind.error_template, request, context, status=status, locale=locale)


def _link_handlers(
    kind: _LinkKind,
) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """The four routes of a kind of link: its link page, the token exchange, the path-token
    link of old, and the token-free page."""

    async def link(request: web.Request) -> web.StreamResponse:
        return _link_page(request, kind)

    async def session(request: web.Request) -> web.StreamResponse:
        token = await _posted_token(request)
        if token is None:
            return _link_error(request, kind, "invalid")
        view, target, expires_at = await _open_link(request, kind, token)
        if not view.ok or not target:
            return _link_error(request, kind, view.error or "invalid")
        response = web.json_response({"url": kind.path(target)})
        response.headers["Cache-Control"] = "no-store"
        _set_link_cookie(request, response, kind, token, target, expires_at)
        return response

    async def legacy(request: web.Request) -> web.StreamResponse:
        """A link with the token in the path (sent before links used the fragment)."""
        token = request.match_info["token"]
        view, target, expires_at = await _open_link(request, kind, token)
        if not view.ok or not target:
            return _error_page(request, kind, view.error or "invalid")
        response = _link_page(request, kind, next_url=kind.path(target))
        _set_link_cookie(request, response, kind, token, target, expires_at)
        return response

    async def page(request: web.Request) -> web.StreamResponse:
        """The customer's page, or the page a site's staff phone keeps open (it publishes the
        rear camera); the token comes from the page's cookie."""
        target = request.match_info[kind.param]
        token = request.cookies.get(kind.cookie)
        if not token:
            return _error_page(request, kind, "missing")
        view, opened, _ = await _open_link(request, kind, token)
        if not view.ok or opened != target:
            response = _error_page(request, kind, view.error or "invalid")
            _clear_link_cookie(request, response, kind, target)
            return response
        if isinstance(view, CameraView):
            locale = page_locale(request)
            title = view.camera_name or catalogues().render(locale, "page.camera_title", {})
            context = {"title": title, "view": view, "token": token}
            return _render("camera.html", request, context, locale=locale)
        locale = page_locale(request, view.locale)
        context = {
            "title": catalogues().render(locale, "page.join_title", {}),
            "view": view,
            "token": token,
            "reasons": RETURN_REASONS,
        }
        return _render("join.html", request, context, locale=locale)

    return {"link": link, "session": session, "legacy": legacy, "page": page}


async def _sites(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    return _render("sites.html", request, {"title": "Sites", "staff": staff})


async def _site_or_none(request: web.Request) -> SiteView | None:
    site: SiteView | None = await _resolve(
        _backend(request).site_view(request.match_info["site_id"])
    )
    return site


async def _walkthrough(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    site = await _site_or_none(request)
    if site is None:
        return _not_found(request, staff, "There is no such site")
    context = {
        "title": f"Walkthrough · {site.name}",
        "staff": staff,
        "site": site,
    }
    return _render("walkthrough.html", request, context)


async def _admin_sites(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    if staff.role != "admin":
        return _forbidden(request, staff, "Managing sites and cameras is for administrators")
    return _render("admin_sites.html", request, {"title": "Sites and cameras", "staff": staff})


async def _admin_site(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    if staff.role != "admin":
        return _forbidden(request, staff, "Managing sites and cameras is for administrators")
    site = await _site_or_none(request)
    if site is None:
        return _not_found(request, staff, "There is no such site")
    context = {
        "title": f"Site · {site.name}",
        "staff": staff,
        "site": site,
        "station_stages": STATION_STAGES,
    }
    return _render("admin_site.html", request, context)


async def _analytics(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    return _render("analytics.html", request, {"title": "Returns analytics", "staff": staff})


async def _admin_returns(request: web.Request) -> web.StreamResponse:
    staff = _require_staff(request)
    if staff.role != "admin":
        return _forbidden(request, staff, "The return rules are for administrators")
    return _render("admin_returns.html", request, {"title": "Return rules", "staff": staff})


async def _static(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
