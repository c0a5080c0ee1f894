"""MediaConfig validation and its aiortc configuration."""

from __future__ import annotations

import pytest

from media import MediaConfig


def test_empty_ice_servers_is_an_empty_list_never_none() -> None:
    assert MediaConfig().rtc_configuration().iceServers == []


def test_turn_servers_carry_credentials() -> None:
    config = MediaConfig(
        ice_servers=("stun:s.example:3478", "turns:t.example:5349?transport=tcp"),
        turn_username="1700000000:case-1",
        turn_credential="secret",
    )
    stun, turn = config.rtc_configuration().iceServers or []
    assert stun.urls == ["stun:s.example:3478"] and stun.username is None
    assert turn.urls == ["turns:t.example:5349?transport=tcp"]
    assert (turn.username, turn.credential) == ("1700000000:case-1", "secret")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ice_servers": ("http://example.com",)},
        {"start_bitrate_kbps": 0},
        {"start_bitrate_kbps": 3000, "max_bitrate_kbps": 2000},
        {"start_bitrate_kbps": 300, "min_bitrate_kbps": 500},
        {"close_timeout_s": 0},
    ],
)
def test_bad_config_fails_fast(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MediaConfig(**kwargs)  # type: ignore[arg-type]
