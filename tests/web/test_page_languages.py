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

from web import JOIN_COOKIE, LANG_COOKIE, setup_pages
from web.locales import SUPPORTED_LOCALES, catalogues, translate

from .test_pages import CASE_VIEW, ClientFactory, FakeBackend


class Backend(FakeBackend):
    """``good`` is a case in German; ``plain`` one without a language; ``talk`` one whose speech
    is transcribed."""

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
