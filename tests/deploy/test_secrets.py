"""deploy/require-secrets.sh, which compose and Kubernetes run in front of inspectd, Redis and
coturn: a missing, placeholder, short or guessable secret stops the start with exit status 78
and a line naming the variable (never its value); a value from `openssl rand -hex 32` passes
and the command runs in the script's place. Run with each awk the images have."""

from __future__ import annotations

import base64
import secrets
import string
from pathlib import Path

import pytest

from ._deploy import AWKS, REFUSED, REQUIRE_SECRETS, awk_path, env_example, run_script

NAME = "INSPECT_SECRET_KEY"
STARTED = ["sh", "-c", "echo started"]

WEAK = {
    "env.example placeholder": env_example()["SECRET_KEY"],
    "placeholder in lower case": "replace-me-" + secrets.token_hex(16),
    "changeme": secrets.token_hex(16) + "ChangeMe",
    "empty": "",
    "31 characters": secrets.token_hex(16)[:31],
    "one character": "a" * 64,
    "four characters": "badcabdcadbcbdacdbcabadcbadcbacdbacdbadc",
    "repeated block": "0123456789abcdef" * 2,
    "repeated word": "correcthorse" * 4,
    "alphabet run": string.ascii_letters[:40],
    "pairs": "".join(letter * 2 for letter in string.ascii_lowercase[:20]),
    "white space": secrets.token_hex(16) + " " + secrets.token_hex(16),
    "newline (config injection)": secrets.token_hex(32) + "\nrealm=evil.example",
    "non-ASCII": secrets.token_hex(32) + "é",
}

STRONG = {
    "openssl rand -hex 32": secrets.token_hex(32),
    "openssl rand -hex 16 (32 characters)": secrets.token_hex(16),
    "openssl rand -base64 32": base64.b64encode(secrets.token_bytes(32)).decode(),
    "url-safe": secrets.token_urlsafe(32),
}


def _shell(awk: str) -> list[str]:
    # The Redis image is Alpine: busybox's sh as well as its awk.
    return ["busybox", "sh"] if awk == "busybox" else ["sh"]


@pytest.mark.parametrize("awk", AWKS)
@pytest.mark.parametrize("value", WEAK.values(), ids=WEAK.keys())
def test_a_weak_secret_is_refused_naming_the_variable(value: str, awk: str, tmp_path: Path) -> None:
    result = run_script(
        [*_shell(awk), str(REQUIRE_SECRETS), NAME, "--", *STARTED],
        {NAME: value},
        path=awk_path(awk, tmp_path),
    )
    assert result.returncode == REFUSED, result
    assert "started" not in result.stdout
    assert f"refusing to start: {NAME} " in result.stderr
    assert "openssl rand -hex 32" in result.stderr
    if len(value) >= 8:
        assert value.strip() not in result.stderr, "the refusal must not print the secret"


@pytest.mark.parametrize("awk", AWKS)
@pytest.mark.parametrize("value", STRONG.values(), ids=STRONG.keys())
def test_a_random_secret_passes_and_the_command_runs(value: str, awk: str, tmp_path: Path) -> None:
    result = run_script(
        [*_shell(awk), str(REQUIRE_SECRETS), NAME, "--", *STARTED],
        {NAME: value},
        path=awk_path(awk, tmp_path),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "started\n", "")


def test_an_unset_variable_is_refused() -> None:
    result = run_script(["sh", str(REQUIRE_SECRETS), NAME, "--", *STARTED], {})
    assert result.returncode == REFUSED
    assert f"{NAME} is not set or empty" in result.stderr


def test_every_refused_variable_is_named_and_a_good_one_is_not() -> None:
    environ = {"A_SECRET": "REPLACE_ME", "B_SECRET": secrets.token_hex(32), "C_SECRET": "x" * 40}
    result = run_script(
        ["sh", str(REQUIRE_SECRETS), "A_SECRET", "B_SECRET", "C_SECRET", "--", *STARTED], environ
    )
    assert result.returncode == REFUSED
    lines = result.stderr.splitlines()
    assert [line.split()[3] for line in lines] == ["A_SECRET", "C_SECRET"], lines


def test_without_a_command_it_only_checks() -> None:
    good = run_script(["sh", str(REQUIRE_SECRETS), NAME], {NAME: secrets.token_hex(32)})
    assert (good.returncode, good.stdout, good.stderr) == (0, "", "")
    bad = run_script(["sh", str(REQUIRE_SECRETS), NAME], {NAME: "short"})
    assert bad.returncode == REFUSED


@pytest.mark.parametrize("argv", [[], ["not a name"], ["9LIVES"]], ids=["none", "space", "digit"])
def test_a_usage_error_is_not_a_pass(argv: list[str]) -> None:
    result = run_script(["sh", str(REQUIRE_SECRETS), *argv, "--", *STARTED], {})
    assert result.returncode == 64 and "usage:" in result.stderr
    assert "started" not in result.stdout


def test_random_hex_secrets_of_the_minimum_length_pass() -> None:
    # The entropy rules must not refuse real random values: 300 32-character hex secrets (the
    # shortest accepted) and 300 from the recommended `openssl rand -hex 32`, in one run.
    environ = {f"S{index}": secrets.token_hex(16) for index in range(300)}
    environ |= {f"T{index}": secrets.token_hex(32) for index in range(300)}
    result = run_script(["sh", str(REQUIRE_SECRETS), *environ], environ)
    assert (result.returncode, result.stderr) == (0, "")
