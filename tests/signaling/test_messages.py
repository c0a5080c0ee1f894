from __future__ import annotations

import json

import pytest

from signaling import ProtocolError, SignalingErrorCode, parse_client_message
from signaling.messages import ChatMessage, JoinMessage, OfferMessage

LIMIT = 64 * 1024


def parse(document: object) -> object:
    return parse_client_message(json.dumps(document), max_bytes=LIMIT)


def test_valid_messages_parse_to_their_models() -> None:
    assert isinstance(parse({"type": "join", "token": "abc", "resume_from": 3}), JoinMessage)
    assert isinstance(parse({"type": "offer", "sdp": "v=0\r\n"}), OfferMessage)
    chat = parse({"type": "chat", "client_id": "c-1", "text": "hello"})
    assert isinstance(chat, ChatMessage) and chat.text == "hello"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", SignalingErrorCode.MALFORMED),
        ("[1, 2]", SignalingErrorCode.MALFORMED),
        ('{"no_type": 1}', SignalingErrorCode.MALFORMED),
        ('{"type": "teleport"}', SignalingErrorCode.UNKNOWN_TYPE),
        ('{"type": "chat", "client_id": "x"}', SignalingErrorCode.INVALID),
        ('{"type": "chat", "client_id": "bad id!", "text": "hi"}', SignalingErrorCode.INVALID),
        ('{"type": "join", "resume_from": -1}', SignalingErrorCode.INVALID),
        ('{"type": "ping", "extra": true}', SignalingErrorCode.INVALID),
        (b"\xff\xfe", SignalingErrorCode.MALFORMED),
    ],
)
def test_bad_messages_are_refused_with_a_code(raw: str | bytes, code: SignalingErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, max_bytes=LIMIT)
    assert caught.value.code is code
    assert caught.value.message


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = json.dumps({"type": "chat", "client_id": "c", "text": "x" * LIMIT})
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, max_bytes=LIMIT)
    assert caught.value.code is SignalingErrorCode.TOO_LARGE


def test_invalid_field_is_named_in_the_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse({"type": "chat", "client_id": "c", "text": ""})
    assert "text" in caught.value.message
    assert caught.value.ref == "chat"
