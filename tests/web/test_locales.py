"""The customer's language: every catalogue has every message with its placeholders and its
language's plural forms, a broken catalogue is refused naming the file and the key, a request
gets the language it asks for, and no words in the customer's pages or their scripts are left
outside the catalogues."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from babel.numbers import format_decimal

from web.locales import (
    CATALOGUE_DIR,
    SUPPORTED_LOCALES,
    CatalogueError,
    Catalogues,
    catalogues,
    direction,
    invitation_text,
    negotiate,
    plural_categories,
    supported_locale,
    translate,
)
from web.pages import STATIC_DIR, TEMPLATES_DIR

ENGLISH = json.loads((CATALOGUE_DIR / "en.json").read_text(encoding="utf-8"))


def test_every_supported_language_has_a_complete_checked_catalogue() -> None:
    books = catalogues()
    assert set(books.messages) == set(SUPPORTED_LOCALES)
    assert sorted(p.stem for p in CATALOGUE_DIR.glob("*.json")) == sorted(SUPPORTED_LOCALES)
    for code in SUPPORTED_LOCALES:
        messages = books.messages[code]
        assert list(messages) == list(ENGLISH), f"{code}: keys differ from en.json's"
        name = books.message(code, "language.name")
        assert isinstance(name, str) and name
        if code != "en":
            # Translated, not copied: most messages differ from the English.
            same = [k for k, v in messages.items() if v == ENGLISH[k]]
            assert len(same) < len(ENGLISH) // 4, f"{code}: {same}"


@pytest.mark.parametrize(
    ("code", "forms"),
    [
        ("en", {"one", "other"}),
        ("pl", {"one", "few", "many", "other"}),
        ("ar", {"zero", "one", "two", "few", "many", "other"}),
        ("ja", {"other"}),
        ("zh-Hant", {"other"}),
    ],
)
def test_plural_messages_have_their_languages_forms(code: str, forms: set[str]) -> None:
    assert plural_categories(code) == forms
    message = catalogues().message(code, "invitation.valid_days")
    assert isinstance(message, dict) and set(message) == forms


def test_plurals_pick_the_form_of_the_number() -> None:
    assert translate("en", "invitation.valid_days", count=1) == "The link is valid for 1 day."
    assert translate("en", "invitation.valid_days", count=3) == "The link is valid for 3 days."
    pl = catalogues().message("pl", "invitation.valid_days")
    assert isinstance(pl, dict)
    # Polish: 1 one, 2-4 few, 5-21 many, 22-24 few again.
    for count, form in ((1, "one"), (3, "few"), (5, "many"), (22, "few"), (25, "many")):
        assert translate("pl", "invitation.valid_days", count=count) == pl[form].replace(
            "{count}", str(count)
        )
    ar = catalogues().message("ar", "cam.watching")
    assert isinstance(ar, dict)
    for count, form in ((0, "zero"), (1, "one"), (2, "two"), (3, "few"), (11, "many"),
                        (100, "other")):  # fmt: skip
        digits = format_decimal(count, locale="ar", group_separator=False)
        assert translate("ar", "cam.watching", count=count) == ar[form].replace("{count}", digits)
    with pytest.raises(TypeError, match="count"):
        translate("en", "invitation.valid_days")


def test_numbers_fill_placeholders_in_the_languages_digits() -> None:
    # Arabic writes Arabic-Indic digits in Babel's CLDR data for "ar"; no grouping.
    text = translate("ar", "photo.sent", width=1280, height=720)
    assert "1280" in text or "١٢٨٠" in text
    assert "1,280" not in text and "1.280" not in text


def test_placeholders_are_escaped_by_the_caller_and_kept_by_name() -> None:
    books = catalogues()
    escaped = books.render("en", "join.lead_named", {"name": "<b>Mia</b>"}, quote=_escape)
    assert "&lt;b&gt;Mia&lt;/b&gt;" in escaped
    with pytest.raises(KeyError, match="name"):
        books.render("en", "join.lead_named", {})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "i18n"
    shutil.copytree(CATALOGUE_DIR, target)
    return target


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_a_broken_catalogue_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    de = json.loads((directory / "de.json").read_text(encoding="utf-8"))

    missing = {k: v for k, v in de.items() if k != "join.start_camera"}
    _write(directory / "de.json", missing)
    with pytest.raises(CatalogueError, match=r"de\.json: join\.start_camera: missing"):
        Catalogues.load(directory)

    _write(directory / "de.json", {**de, "join.lead_named": "Hallo {nom}!"})
    with pytest.raises(CatalogueError, match=r"join\.lead_named: placeholders \['nom'\]"):
        Catalogues.load(directory)

    _write(directory / "de.json", {**de, "cam.watching": {"other": "{count} sehen zu"}})
    with pytest.raises(CatalogueError, match=r"cam\.watching: de needs exactly the plural"):
        Catalogues.load(directory)

    (directory / "de.json").write_text('{"language.name": "Deutsch",', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"de\.json: not valid UTF-8 JSON"):
        Catalogues.load(directory)

    (directory / "de.json").unlink()
    with pytest.raises(CatalogueError, match=r"de\.json: missing"):
        Catalogues.load(directory)


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("de", "de"),
        ("DE-at", "de"),
        ("pt-BR", "pt"),
        ("zh", "zh-Hans"),
        ("zh-CN", "zh-Hans"),
        ("zh-TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("zh-hant", "zh-Hant"),
        ("ar-EG", "ar"),
        ("xx", None),
        ("", None),
        ("not a tag", None),
    ],
)
def test_tags_map_to_the_catalogue_they_ask_for(tag: str, code: str | None) -> None:
    assert supported_locale(tag) == code


def test_the_case_then_the_browser_choose_the_language() -> None:
    header = "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"
    assert negotiate(header, None) == "fr"
    assert negotiate(header, "ja") == "ja"
    assert negotiate(header, "xx") == "fr"
    assert negotiate("xx, de;q=0.2, sv;q=0.4", None) == "sv"
    assert negotiate("de;q=0, it", None) == "it"
    assert negotiate(None, None) == "en"
    assert direction("ar") == "rtl" and direction("ja") == "ltr"


def test_the_invitation_is_in_the_customers_language_with_its_validity() -> None:
    url = "https://inspect.example/join#t=abc"
    text = invitation_text("de", kind="return", name="Mia", url=url, valid_s=24 * 3600)
    assert url in text and "Mia" in text
    assert text.endswith(translate("de", "invitation.valid_hours", count=24))
    short = invitation_text("en", kind="support", name="Mia", url=url, valid_s=30)
    assert short.endswith("The link is valid for 1 minute.")
    week = invitation_text("ja", kind="return", name="Mia", url=url, valid_s=7 * 86400)
    assert week.endswith(translate("ja", "invitation.valid_days", count=7))


# -- no words outside the catalogues --------------------------------------------------------------

#: The pages a customer or a site's camera phone sees.
CUSTOMER_TEMPLATES = (
    "join.html", "join_error.html", "link.html", "camera.html", "camera_error.html",
    "_language_switch.html",
)  # fmt: skip
#: Words a page may show as they are: the brand, symbols.
ALLOWED_TEXT = {"Inspect", "!", "✓", "…", "⟲"}
#: Attributes whose values people read.
READ_ATTRIBUTES = ("alt", "title", "placeholder", "aria-label", "data-empty", "label")


def _imports(module: str, seen: set[str]) -> None:
    if module in seen:
        return
    seen.add(module)
    source = (STATIC_DIR / "js" / module).read_text(encoding="utf-8")
    for name in re.findall(r"^import .* from '\./([a-z0-9]+\.js)';", source, re.M):
        _imports(name, seen)


def customer_scripts() -> list[str]:
    """The modules the customer's and the camera's pages load, and everything they import."""
    seen: set[str] = set()
    for template in CUSTOMER_TEMPLATES:
        source = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
        for module in re.findall(r'src="/static/js/([a-z0-9]+\.js)"', source):
            _imports(module, seen)
    return sorted(seen)


def _template_words(source: str) -> list[str]:
    """Text that would reach the page as written: text between tags and readable attribute
    values, once the Jinja expressions, statements and comments are taken out."""
    bare = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
    bare = re.sub(r"\{%.*?%\}", "", bare, flags=re.S)
    bare = re.sub(r"\{\{.*?\}\}", "", bare, flags=re.S)
    bare = re.sub(r"<(script|style)\b.*?</\1>", "", bare, flags=re.S)
    found = []
    for attr in READ_ATTRIBUTES:
        found += re.findall(rf'\b{attr}="([^"]*)"', bare)
    found += re.findall(r">([^<>]+)<", bare)
    return [w.strip() for w in found if re.search(r"[^\W\d_]", w) and w.strip() not in ALLOWED_TEXT]


#: A string literal in a script: quoted, or a template literal (with its ${...} parts).
_LITERAL = re.compile(r"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"|`((?:[^`\\]|\\.)*)`")


def _script_words(source: str) -> list[str]:
    """Literals that read as words for people: two or more words, the first capitalised (the
    scripts' own identifiers, selectors, codes and lower-case log text do not). Comments,
    ``console`` lines and lines marked ``// staff pages only`` are not shown to customers."""
    found = []
    for line in source.splitlines():
        code = line.strip()
        if code.startswith(("//", "*", "/*")) or "console." in code or "staff pages only" in code:
            continue
        for match in _LITERAL.finditer(code):
            text = next(g for g in match.groups() if g is not None)
            words = re.sub(r"\$\{[^}]*\}", "", text)
            if re.match(r"^[A-Z][a-z]+[ ,][^\s]", words) and " " in words:
                found.append(text)
    return found


def test_the_scanner_finds_words_left_in_markup_and_scripts() -> None:
    assert _template_words('<p class="x">Hello there</p><img alt="A box">') == [
        "A box", "Hello there",
    ]  # fmt: skip
    assert _template_words("<p>{{ t('x') }}</p>{% if a %}<b>✓</b>{% endif %}") == []
    assert _script_words("el.textContent = 'Call ended';\nconst x = 'camera-error';") == [
        "Call ended"
    ]
    assert _script_words("  ui.s.textContent = `Connected with ${name}`;") == [
        "Connected with ${name}"
    ]
    assert _script_words("// A comment that reads\nconsole.warn('Could not do it');") == []


@pytest.mark.parametrize("template", CUSTOMER_TEMPLATES)
def test_no_words_outside_the_catalogue_in_customer_templates(template: str) -> None:
    source = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
    assert _template_words(source) == []


def test_no_words_outside_the_catalogue_in_customer_scripts() -> None:
    modules = customer_scripts()
    assert {"join.js", "camera.js", "link.js", "chat.js", "call.js", "i18n.js"} <= set(modules)
    left = {
        module: words
        for module in modules
        if (words := _script_words((STATIC_DIR / "js" / module).read_text(encoding="utf-8")))
    }
    assert left == {}


def test_every_key_the_customer_pages_name_is_in_the_catalogue() -> None:
    named: set[str] = set()
    for template in CUSTOMER_TEMPLATES:
        source = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
        named |= set(re.findall(r"\bt\('([a-z0-9_.]+)'\s*[,)]", source))
    for module in customer_scripts():
        source = (STATIC_DIR / "js" / module).read_text(encoding="utf-8")
        named |= set(re.findall(r"\bt\('([a-z0-9_.]+)'\s*[,)]", source))
        # Keys built from a kind (`media.${kind}_title`) are listed where they are built.
        named |= set(re.findall(r"'((?:prompt|photo)\.[a-z0-9_]+)'", source))
    assert named, "the scanner found no t('...') calls"
    assert sorted(named - set(ENGLISH)) == []
