"""The name a customer may give themselves on ``join``.

Staff see it beside the chat and in the participant list, so it must not pass for someone
else: no control, format or bidi-override characters (which reorder or hide what is shown), a
bounded length, and nothing that reads as a staff title ("Agent Smith", "Ada (staff)",
"adm1n"), judged on a folded skeleton that maps common look-alike letters and digits."""

from __future__ import annotations

import re
import unicodedata

from .errors import SignalingError, SignalingErrorCode

__all__ = ["MAX_NAME_CHARS", "customer_name"]

MAX_NAME_CHARS = 60

#: Categories refused anywhere in a name: controls, format characters (bidi overrides and
#: isolates, zero-width characters), surrogates, private use, unassigned, line separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: Words that would make a customer look like staff, and the end of a run-together name.
_STAFF_WORDS = frozenset(
    {
        "admin",
        "administrator",
        "agent",
        "moderator",
        "operator",
        "reviewer",
        "staff",
        "support",
        "system",
    }
)

#: Look-alikes folded onto the Latin letter they pass for (after NFKC and casefold).
_LOOKALIKES = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "i",
        "l": "i",
        "а": "a",  # Cyrillic
        "в": "b",
        "е": "e",
        "ё": "e",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "х": "x",
        "α": "a",  # Greek
        "β": "b",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
    }
)
_NOT_LETTER = re.compile(r"[^a-z]+")


def _skeleton(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_LOOKALIKES))
    stripped = "".join(c for c in folded if not unicodedata.combining(c))
    return stripped.translate(_LOOKALIKES)


_STAFF_SKELETONS = frozenset(_skeleton(word) for word in _STAFF_WORDS)


def _looks_like_staff(name: str) -> bool:
    words = [word for word in _NOT_LETTER.split(_skeleton(name)) if word]
    if any(word in _STAFF_SKELETONS for word in words):
        return True
    joined = "".join(words)
    return any(joined.endswith(word) for word in _STAFF_SKELETONS)


def customer_name(raw: str) -> str:
    """``raw`` as a customer's shown name (NFKC, spaces collapsed), or ``SignalingError``
    ``invalid`` saying why it cannot be one."""
    name = " ".join(unicodedata.normalize("NFKC", raw).split())

    def refuse(why: str) -> SignalingError:
        return SignalingError(SignalingErrorCode.INVALID, f"name: {why}", ref="join")

    if not name:
        raise refuse("it is empty")
    if len(name) > MAX_NAME_CHARS:
        raise refuse(f"at most {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in name):
        raise refuse("control, formatting and text-direction characters are not allowed")
    if _looks_like_staff(name):
        raise refuse("a customer's name cannot name a staff role (agent, staff, admin...)")
    return name
