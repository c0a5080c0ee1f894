"""The customer's and the camera's pages in the customer's language: chosen by the switcher
(kept in a cookie), else the case, else the browser; written right to left in Arabic; the link
problems and the token exchange's refusals in the same language."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import unescape
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from web import CAMERA_COOKIE, JOIN_COOKIE, LANG_COOKIE, CameraView, setup_pages
from web.locales import SUPPORTED_LOCALES, catalogues, translate

from .test_pages import CASE_VIEW, ClientFactory, FakeBackend

#: The warehouse phone's camera the camera token ``cam_good`` opens.
CAMERA_VIEW = CameraView(True, None, "cam_1", "Dock 3", "Madrid DC", None)


class Backend(FakeBackend):
    """``good`` is a case in German; ``plain`` one without a language; ``talk`` one whose speech
    is transcribed. The camera token ``cam_good`` opens :data:`CAMERA_VIEW`; any other names its
    problem (``cam_revoked``)."""

    async def camera_view(self, token: str) -> CameraView:
        if token == "cam_good":
            return CAMERA_VIEW
        return CameraView(False, token.removeprefix("cam_"))

    async def join_view(self, token: str) -> Any:
        if token == "good":
            return replace(CASE_VIEW, locale="de")
        if token == "plain":
            return CASE_VIEW
        if token == "talk":
            return replace(CASE_VIEW, captions=True)
        return await super().join_view(token)


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    app = web.Application()
    setup_pages(app, Backend())
    return await aiohttp_client(app)


async def _page(
    client: TestClient[Any, Any], token: str, *, query: str = "", headers: Any = None,
    cookies: Any = None,
) -> tuple[str, Any]:  # fmt: skip
    response = await client.get(
        f"/join/c/case-42{query}",
        cookies={JOIN_COOKIE: token, **(cookies or {})},
        headers=headers or {},
        allow_redirects=False,
    )
    assert response.status == 200
    return await response.text(), response


def _html_lang(html: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]+)" dir="([^"]+)">', html)
    assert match, html[:200]
    return match.group(1), match.group(2)


def _catalogue_block(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="i18n">(.*?)</script>', html, re.S)
    assert match
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def _text(locale: str, key: str, **values: Any) -> str:
    return translate(locale, key, **values)


async def test_the_case_language_wins_over_the_browser(client: TestClient[Any, Any]) -> None:
    html, _ = await _page(client, "good", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert _html_lang(html) == ("de", "ltr")
    assert _text("de", "join.start_camera") in unescape(html)
    assert _text("de", "join.lead_named", name="Maria") in unescape(html)
    block = _catalogue_block(html)
    assert block["locale"] == "de" and block["dir"] == "ltr"
    assert block["messages"]["state.waiting"] == _text("de", "state.waiting")


async def test_without_a_case_language_the_browser_decides(client: TestClient[Any, Any]) -> None:
    html, _ = await _page(client, "plain", headers={"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"})
    assert _html_lang(html) == ("zh-Hant", "ltr")
    assert _text("zh-Hant", "join.heading_return") in unescape(html)
    html, _ = await _page(client, "plain", headers={"Accept-Language": "xx"})
    assert _html_lang(html) == ("en", "ltr")
    assert "Show us your return" in html


async def test_arabic_is_written_right_to_left(client: TestClient[Any, Any]) -> None:
    html, _ = await _page(client, "plain", headers={"Accept-Language": "ar"})
    assert _html_lang(html) == ("ar", "rtl")
    assert _text("ar", "join.start_camera") in unescape(html)


async def test_the_switcher_picks_a_language_that_is_kept(client: TestClient[Any, Any]) -> None:
    html, response = await _page(client, "good", query="?lang=ja")
    assert _html_lang(html) == ("ja", "ltr")
    cookie = response.cookies[LANG_COOKIE]
    assert cookie.value == "ja" and cookie["path"] == "/" and cookie["samesite"] == "Lax"
    # Every language is offered, each under its own name, the page's own selected.
    options = re.findall(r'<option value="([^"]+)" lang="[^"]+"( selected)?>([^<]+)</option>', html)
    assert [code for code, _, _ in options] == list(SUPPORTED_LOCALES)
    assert [code for code, selected, _ in options if selected] == ["ja"]
    names = {code: unescape(name) for code, _, name in options}
    assert names["ar"] == catalogues().message("ar", "language.name")
    # The next page (the case says German) keeps the customer's pick.
    client.session.cookie_jar.clear()
    html, _ = await _page(client, "good", cookies={LANG_COOKIE: "ja"})
    assert _html_lang(html) == ("ja", "ltr")
    # A language with no catalogue is ignored, not an error.
    client.session.cookie_jar.clear()
    html, response = await _page(client, "good", query="?lang=xx")
    assert _html_lang(html) == ("de", "ltr") and LANG_COOKIE not in response.cookies


async def test_the_customer_is_told_when_speech_is_transcribed(
    client: TestClient[Any, Any],
) -> None:
    html, _ = await _page(client, "talk", headers={"Accept-Language": "es"})
    assert 'data-testid="captions-notice"' in html
    assert _text("es", "captions.notice") in unescape(html)
    html, _ = await _page(client, "plain")
    assert 'data-testid="captions-notice"' not in html


async def test_link_problems_are_in_the_browsers_language(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/join/c/case-42", cookies={JOIN_COOKIE: "old"}, headers={"Accept-Language": "it"}
    )
    assert response.status == 410
    html = await response.text()
    assert _html_lang(html) == ("it", "ltr")
    assert _text("it", "error.join_expired_title") in unescape(html)

    refused = await client.post(
        "/join/session", json={"token": "nope"}, headers={"Accept-Language": "ko"}
    )
    assert refused.status == 404
    error = (await refused.json())["error"]
    assert error == {
        "code": "invalid",
        "message": _text("ko", "error.join_invalid_title"),
        "help": _text("ko", "error.join_invalid_text"),
    }

    link = await client.get("/join", headers={"Accept-Language": "tr"})
    html = await link.text()
    assert _html_lang(html) == ("tr", "ltr")
    assert _text("tr", "link.opening") in unescape(html)


async def test_staff_pages_stay_in_english(client: TestClient[Any, Any]) -> None:
    response = await client.get("/login", headers={"Accept-Language": "de"})
    html = await response.text()
    assert _html_lang(html) == ("en", "ltr")
    assert _catalogue_block(html)["locale"] == "en"


async def _camera_page(
    client: TestClient[Any, Any], token: str, *, status: int = 200, headers: Any = None
) -> str:
    response = await client.get(
        "/camera/c/cam_1",
        cookies={CAMERA_COOKIE: token},
        headers=headers or {},
        allow_redirects=False,
    )
    assert response.status == status
    return unescape(await response.text())


@pytest.mark.parametrize(("language", "locale", "written"), [
    ("de-DE,de;q=0.9", "de", "ltr"),
    ("ar-EG,ar;q=0.9", "ar", "rtl"),
    ("ja-JP", "ja", "ltr"),
])  # fmt: skip
async def test_the_warehouse_camera_page_speaks_the_browsers_language(
    client: TestClient[Any, Any], language: str, locale: str, written: str
) -> None:
    html = await _camera_page(client, "cam_good", headers={"Accept-Language": language})
    assert _html_lang(html) == (locale, written)
    for key in ("cam.starting", "cam.start", "cam.fineprint", "cam.nobody", "media.retry"):
        assert _text(locale, key) in html, key
    # The lead names the site inside the sentence, in the language's own word order.
    lead = re.search(r'<p class="lead">(.*?)</p>', html, re.S)
    assert lead is not None
    site = '<strong data-testid="site-name">Madrid DC</strong>'
    assert lead.group(1) == _text(locale, "cam.lead", site=site)
    # The script's words (viewer counts, states) come in the same language.
    block = _catalogue_block(html)
    assert block["locale"] == locale and block["dir"] == written
    assert block["messages"]["cam.live"] == _text(locale, "cam.live")
    assert '<script type="module" src="/static/js/camera.js">' in html


async def test_the_camera_page_keeps_the_switchers_pick(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/camera/c/cam_1?lang=ar",
        cookies={CAMERA_COOKIE: "cam_good"},
        headers={"Accept-Language": "ja"},
        allow_redirects=False,
    )
    assert response.status == 200
    assert _html_lang(await response.text()) == ("ar", "rtl")
    assert response.cookies[LANG_COOKIE].value == "ar"


async def test_camera_link_problems_are_in_the_browsers_language(
    client: TestClient[Any, Any],
) -> None:
    html = await _camera_page(client, "cam_revoked", status=410, headers={"Accept-Language": "pl"})
    assert _html_lang(html) == ("pl", "ltr")
    assert _text("pl", "error.camera_revoked_title") in html
    assert _text("pl", "error.camera_revoked_text") in html
    html = await _camera_page(client, "cam_disabled", status=403, headers={"Accept-Language": "ar"})
    assert _html_lang(html) == ("ar", "rtl")
    assert _text("ar", "error.camera_disabled_title") in html

    link = await client.get("/camera", headers={"Accept-Language": "ja"})
    html = unescape(await link.text())
    assert _html_lang(html) == ("ja", "ltr")
    assert _text("ja", "page.camera_title") in html
    refused = await client.post(
        "/camera/session", json={"token": "cam_expired"}, headers={"Accept-Language": "de"}
    )
    assert refused.status == 410
    assert (await refused.json())["error"]["message"] == _text("de", "error.camera_expired_title")
