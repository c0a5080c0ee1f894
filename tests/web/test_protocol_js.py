"""The pages' copy of the /ws codes (web/static/js/protocol.js) is the server's."""

from __future__ import annotations

import re

import pytest

from signaling import CloseCode, SignalingErrorCode
from web import STATIC_DIR

JS_DIR = STATIC_DIR / "js"
PROTOCOL = (JS_DIR / "protocol.js").read_text()


def _frozen_object(name: str) -> dict[str, str]:
    """``NAME: value`` entries of ``export const <name> = Object.freeze({...});``."""
    found = re.search(rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);", PROTOCOL, re.S)
    assert found, f"protocol.js has no frozen object {name}"
    body = re.sub(r"/\*.*?\*/|//[^\n]*", "", found[1], flags=re.S)
    return dict(re.findall(r"([A-Z_]+):\s*('[^']*'|\d+)", body))


def test_every_close_code_is_the_servers() -> None:
    js = {name: int(value) for name, value in _frozen_object("CloseCode").items()}
    server = {code.name: int(code) for code in CloseCode}
    assert js == server


def test_the_error_codes_the_pages_handle_exist_on_the_server() -> None:
    js = {name: value.strip("'") for name, value in _frozen_object("SignalingErrorCode").items()}
    assert js, "protocol.js names no error code"
    for name, value in js.items():
        assert SignalingErrorCode[name].value == value


def test_only_unauthorized_and_replaced_stop_the_reconnects() -> None:
    found = re.search(r"FATAL_CLOSE_CODES = .*?new Set\(\[(.*?)\]\)", PROTOCOL)
    assert found
    names = {part.strip().removeprefix("CloseCode.") for part in found[1].split(",")}
    assert names == {CloseCode.UNAUTHORIZED.name, CloseCode.REPLACED.name}


def test_the_client_close_codes_are_not_the_servers() -> None:
    client = {int(value) for value in _frozen_object("ClientCloseCode").values()}
    assert client and not client & {int(code) for code in CloseCode}


@pytest.mark.parametrize(
    "module", sorted(p.name for p in JS_DIR.glob("*.js") if p.name != "protocol.js")
)
def test_pages_name_the_codes_instead_of_writing_them(module: str) -> None:
    source = (JS_DIR / module).read_text()
    assert not re.search(r"\b4\d{3}\b", source), "a 4xxx close code written as a number"
    assert not re.search(r"close\(\s*\d", source), "a close code written as a number"
    if "SignalClient" in source:
        assert not re.search(r"message\.code\s*[!=]==?\s*'", source), "an error code as a string"
