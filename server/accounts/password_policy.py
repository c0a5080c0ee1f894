"""Which new staff passwords are refused: too short, too few distinct characters, or one of the
passwords that guessing tools try first.

The length and the blocklist follow NIST SP 800-63B (section 5.1.1.2: check new passwords
against values known to be commonly used or compromised, and no composition rules). Nothing can
be downloaded where this service runs, so the blocklist is the short list below: the base words
that head every published list of leaked passwords, each refused also with digits and symbols
around it (``Password123!``), plus keyboard and digit runs. It catches what an attacker tries in
the first thousand guesses; the sign-in throttle (``INSPECT_LOGIN_FAILURES_PER_MIN``) keeps them
from trying many more.
"""

from __future__ import annotations

import re

__all__ = ["MIN_PASSWORD_CHARS", "password_problem"]

MIN_PASSWORD_CHARS = 12
_MIN_DISTINCT = 5

_COMMON_WORDS = frozenset(
    """
    password passw0rd pass letmein welcome admin administrator root login qwerty qwertyuiop
    asdfgh asdfghjkl zxcvbn zxcvbnm abc abcdef iloveyou monkey dragon football baseball master
    sunshine princess shadow superman batman trustno1 freedom whatever secret changeme default
    hello charlie michael jordan starwars computer internet summer winter spring autumn
    inspectd inspect agent reviewer support warehouse returns
    """.split()
)
#: Runs, each repeated: "123456789012" and "qwertyqwerty" are walks along one of them.
_RUNS = tuple(
    run * 3
    for run in ("0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")
)
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def _is_run(text: str) -> bool:
    """Whether ``text`` walks along a keyboard row, the alphabet or the digits, either way."""
    if len(text) < 4:
        return False
    return any(text in run or text in run[::-1] for run in _RUNS)


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be set, in words for the person choosing it; ``None`` if it may."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"at least {MIN_PASSWORD_CHARS} characters (a few words make a good one)"
    if len(set(password)) < _MIN_DISTINCT:
        return f"at least {_MIN_DISTINCT} different characters"
    lowered = password.lower()
    core = _EDGES.sub("", lowered)
    words = set(re.split(r"[\W\d_]+", core))
    repeated = re.fullmatch(r"(.{1,6}?)\1+", core)
    if (
        core in _COMMON_WORDS
        or (len(words) == 1 and words <= _COMMON_WORDS)  # "admin-admin-admin"
        or repeated is not None  # "qwertyqwerty", "abcabcabcabc"
        or _is_run(core)
        or _is_run(lowered)
    ):
        return "one of the passwords that are guessed first: choose another"
    return None
