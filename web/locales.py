"""The customer's language: the message catalogues under ``web/i18n/``, choosing a language for
a request, and putting a message into words.

One JSON catalogue per language (``web/i18n/<code>.json``, BCP 47 codes): flat keys
(``"join.start_camera"``) whose values are a message with ``{name}`` placeholders, or, for a
message that depends on a number, an object of the CLDR plural categories the language uses
(``{"one": "{count} day", "other": "{count} days"}``; Arabic has six, Japanese one). English is
the reference: every catalogue has exactly its keys and placeholders, and every plural message
exactly the categories Babel's CLDR rules give for its language. The catalogues are read and
checked once; a broken one stops the service naming the file and the key.

Numbers that fill a placeholder are written with the language's digits and without grouping
(a picture's ``1280×720`` stays readable); the pages' script does the same through ``Intl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal

__all__ = [
    "CATALOGUE_DIR",
    "DEFAULT_LOCALE",
    "SUPPORTED_LOCALES",
    "Catalogues",
    "CatalogueError",
    "catalogue_subset",
    "catalogues",
    "direction",
    "invitation_text",
    "language_names",
    "negotiate",
    "plural_categories",
    "supported_locale",
    "translate",
]

CATALOGUE_DIR: Final = Path(__file__).resolve().parent / "i18n"
DEFAULT_LOCALE: Final = "en"
#: Every language a customer's page is offered in, in the order the switcher lists them.
SUPPORTED_LOCALES: Final = (
    "en", "es", "fr", "de", "it", "pt", "nl", "pl", "sv", "tr", "ar", "ja", "ko", "zh-Hans",
    "zh-Hant",
)  # fmt: skip

#: A message key: dotted lower-case words (``photo.error_type``).
_KEY: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CATEGORIES: Final = frozenset({"zero", "one", "two", "few", "many", "other"})
#: Chinese without a script subtag is most often written in simplified characters.
_DEFAULT_CHINESE_SCRIPT: Final = "Hans"

Message = str | Mapping[str, str]


class CatalogueError(ValueError):
    """A catalogue that cannot be used: ``path`` names the file, ``key`` the message (``None``
    when the file as a whole is at fault)."""

    def __init__(self, path: Path, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path.name}: {key}" if key is not None else path.name
        super().__init__(f"{where}: {problem}")


@cache
def _babel(code: str) -> Locale:
    return Locale.parse(code, sep="-")


def plural_categories(code: str) -> frozenset[str]:
    """The CLDR plural categories of ``code`` (``other`` always among them)."""
    return frozenset(_babel(code).plural_form.tags) | {"other"}


def _placeholders(message: Message) -> frozenset[str]:
    texts = [message] if isinstance(message, str) else list(message.values())
    return frozenset(name for text in texts for name in _PLACEHOLDER.findall(text))


def _read(path: Path) -> dict[str, Message]:
    """One catalogue file, its shape checked (not yet against English)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(path, None, "missing: every supported language needs one") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogueError(path, None, f"not valid UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CatalogueError(path, None, "must be a JSON object of messages")
    messages: dict[str, Message] = {}
    for key, value in data.items():
        if not _KEY.match(key):
            raise CatalogueError(path, key, "a key is dotted lower-case words (join.start_camera)")
        if isinstance(value, str):
            if not value.strip():
                raise CatalogueError(path, key, "the message is empty")
            messages[key] = value
        elif isinstance(value, dict):
            if not value or not all(
                isinstance(form, str) and form.strip() for form in value.values()
            ):
                raise CatalogueError(path, key, "a plural message needs a non-empty text per form")
            unknown = set(value) - _CATEGORIES
            if unknown:
                raise CatalogueError(path, key, f"not CLDR plural categories: {sorted(unknown)}")
            messages[key] = dict(value)
        else:
            raise CatalogueError(path, key, "a message is a string or an object of plural forms")
    return messages


def _check_against(
    path: Path, code: str, messages: Mapping[str, Message], reference: Mapping[str, Message]
) -> None:
    """``messages`` has exactly English's keys, placeholders and kinds of message, and each
    plural message exactly its language's categories."""
    for key in reference:
        if key not in messages:
            raise CatalogueError(path, key, "missing (it is in en.json)")
    for key in messages:
        if key not in reference:
            raise CatalogueError(path, key, "not in en.json")
    categories = plural_categories(code)
    for key, message in messages.items():
        english = reference[key]
        if isinstance(english, str) != isinstance(message, str):
            kind = "a plain message" if isinstance(english, str) else "a plural message"
            raise CatalogueError(path, key, f"must be {kind}, as in en.json")
        if not isinstance(message, str) and set(message) != categories:
            raise CatalogueError(
                path, key, f"{code} needs exactly the plural forms {sorted(categories)}"
            )
        if _placeholders(message) != _placeholders(english):
            raise CatalogueError(
                path,
                key,
                f"placeholders {sorted(_placeholders(message))} differ from en.json's "
                f"{sorted(_placeholders(english))}",
            )


@dataclass(frozen=True, slots=True)
class Catalogues:
    """Every supported language's messages, checked against English."""

    messages: Mapping[str, Mapping[str, Message]]

    @classmethod
    def load(
        cls, directory: Path = CATALOGUE_DIR, locales: Iterable[str] = SUPPORTED_LOCALES
    ) -> Catalogues:
        """Read and check ``<directory>/<code>.json`` for each of ``locales``; raises
        :class:`CatalogueError` naming the file and the key at fault."""
        codes = tuple(locales)
        reference = _read(directory / f"{DEFAULT_LOCALE}.json")
        _check_against(directory / "en.json", DEFAULT_LOCALE, reference, reference)
        loaded: dict[str, Mapping[str, Message]] = {DEFAULT_LOCALE: reference}
        for code in codes:
            if code == DEFAULT_LOCALE:
                continue
            path = directory / f"{code}.json"
            messages = _read(path)
            _check_against(path, code, messages, reference)
            loaded[code] = messages
        return cls(loaded)

    def message(self, locale: str, key: str) -> Message:
        """The message of ``key`` in ``locale`` (``KeyError`` for a key no catalogue has)."""
        messages = self.messages.get(locale) or self.messages[DEFAULT_LOCALE]
        return messages[key]

    def render(
        self,
        locale: str,
        key: str,
        values: Mapping[str, Any],
        quote: Callable[[str], str] = str,
    ) -> str:
        """The message of ``key`` with its placeholders filled from ``values``; a plural
        message takes its form from ``values["count"]``. Every filled value and the message's
        own text pass through ``quote`` (HTML escaping for templates)."""
        locale = locale if locale in self.messages else DEFAULT_LOCALE
        message = self.message(locale, key)
        if isinstance(message, str):
            text = message
        else:
            count = values.get("count")
            if not isinstance(count, int | float):
                raise TypeError(f"{key} is a plural message: pass count=<number>")
            category = _babel(locale).plural_form(count)
            text = message.get(category) or message["other"]

        out: list[str] = []
        end = 0
        for match in _PLACEHOLDER.finditer(text):
            name = match.group(1)
            if name not in values:
                raise KeyError(f"{key} needs a value for {{{name}}}")
            out.append(quote(text[end : match.start()]))
            out.append(quote(_value_text(values[name], locale)))
            end = match.end()
        out.append(quote(text[end:]))
        return "".join(out)

    def subset(self, locale: str, prefixes: Iterable[str]) -> dict[str, Message]:
        """The messages of ``locale`` whose keys start with one of ``prefixes``: what a page
        hands its script."""
        wanted = tuple(prefixes)
        messages = self.messages.get(locale) or self.messages[DEFAULT_LOCALE]
        return {
            key: (value if isinstance(value, str) else dict(value))
            for key, value in messages.items()
            if key.startswith(wanted)
        }


def _value_text(value: Any, locale: str) -> str:
    if isinstance(value, str):
        return value  # as given: a template's Markup stays Markup
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return format_decimal(value, locale=_babel(locale), group_separator=False)
    return str(value)


@cache
def catalogues() -> Catalogues:
    """The shipped catalogues, read and checked on first use (``setup_pages`` calls this at
    start, so a broken catalogue stops the service rather than a page)."""
    return Catalogues.load()


def supported_locale(tag: str | None) -> str | None:
    """The supported language a BCP 47 tag asks for, or ``None``: an exact code (in any case),
    else the language with Chinese's script taken from the tag or its region (``zh-TW`` ->
    ``zh-Hant``, ``zh-CN`` -> ``zh-Hans``) and other regions dropped (``pt-BR`` -> ``pt``)."""
    if not tag:
        return None
    tag = tag.strip()
    for code in SUPPORTED_LOCALES:
        if tag.lower() == code.lower():
            return code
    try:
        # Babel fills in the likely script of a region from CLDR (zh-HK is Hant, zh-SG Hans).
        parsed = Locale.parse(tag.replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None
    if parsed.language == "zh":
        code = f"zh-{parsed.script or _DEFAULT_CHINESE_SCRIPT}"
        return code if code in SUPPORTED_LOCALES else None
    return parsed.language if parsed.language in SUPPORTED_LOCALES else None


def _accept_language(header: str) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (q=0 dropped; equal
    weights keep their order)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, preferred: str | None) -> str:
    """The language to show: ``preferred`` (the case's language, or the customer's own
    choice) when it is supported, else the first supported one of the browser's
    ``Accept-Language`` (with q-values and region fallbacks), else English."""
    chosen = supported_locale(preferred)
    if chosen is not None:
        return chosen
    for tag in _accept_language(accept_language or ""):
        chosen = supported_locale(tag)
        if chosen is not None:
            return chosen
    return DEFAULT_LOCALE


def translate(locale: str, key: str, **values: Any) -> str:
    """The message of ``key`` in ``locale`` with its placeholders filled; a plural message
    takes ``count=``."""
    return catalogues().render(locale, key, values)


def direction(locale: str) -> str:
    """``"rtl"`` for a language written right to left (Arabic), else ``"ltr"``."""
    return "rtl" if _babel(locale).text_direction == "rtl" else "ltr"


def language_names() -> tuple[tuple[str, str], ...]:
    """(code, the language's name in itself) for the switcher, in :data:`SUPPORTED_LOCALES`
    order."""
    books = catalogues()
    return tuple((code, str(books.message(code, "language.name"))) for code in SUPPORTED_LOCALES)


def catalogue_subset(locale: str, prefixes: Iterable[str]) -> dict[str, Any]:
    """What a page hands its script in its ``<script type="application/json" id="i18n">``
    block: the locale, its direction and the messages under ``prefixes``."""
    return {
        "locale": locale,
        "dir": direction(locale),
        "messages": catalogues().subset(locale, prefixes),
    }


def invitation_text(locale: str, *, kind: str, name: str, url: str, valid_s: float) -> str:
    """The message that invites a customer to their call (a text or an email), in ``locale``:
    the greeting with the link, then how long the link works, in whole days, hours or minutes
    (rounded down, at least one minute)."""
    key = "invitation.return" if kind == "return" else "invitation.support"
    text = translate(locale, key, name=name, url=url)
    minutes = max(1, round(valid_s / 60))
    if minutes >= 2 * 24 * 60:
        validity = translate(locale, "invitation.valid_days", count=minutes // (24 * 60))
    elif minutes >= 2 * 60:
        validity = translate(locale, "invitation.valid_hours", count=minutes // 60)
    else:
        validity = translate(locale, "invitation.valid_minutes", count=minutes)
    return f"{text} {validity}"
