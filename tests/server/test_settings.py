from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Settings, SettingsError, load_settings


def test_embedded_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("var")
    assert settings.ice_servers == ()
    assert settings.base_url == "http://127.0.0.1:8080"


def test_environment_values_are_cast() -> None:
    settings = load_settings(
        {
            "INSPECT_PORT": "9000",
            "INSPECT_ICE_SERVERS": "stun:stun.example.net:3478, turn:turn.example.net:3478",
            "INSPECT_TLS_SELF_SIGNED": "yes",
            "INSPECT_PUBLIC_URL": "https://inspect.example.com/",
        }
    )
    assert settings.port == 9000
    assert settings.ice_servers == ("stun:stun.example.net:3478", "turn:turn.example.net:3478")
    assert settings.tls_self_signed is True
    assert settings.base_url == "https://inspect.example.com"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"INSPECT_PORT": "eighty"}, "INSPECT_PORT"),
        ({"INSPECT_PORT": "70000"}, "INSPECT_PORT"),
        ({"INSPECT_LOG_LEVEL": "chatty"}, "INSPECT_LOG_LEVEL"),
        ({"INSPECT_ICE_SERVERS": "http://nope"}, "INSPECT_ICE_SERVERS"),
        ({"INSPECT_TLS_CERT": "/nonexistent.pem"}, "INSPECT_TLS_KEY"),
        ({"INSPECT_PUBLIC_URL": "inspect.example.com"}, "INSPECT_PUBLIC_URL"),
        ({"INSPECT_PROT": "8080"}, "INSPECT_PROT"),
        ({"INSPECT_TLS_SELF_SIGNED": "maybe"}, "INSPECT_TLS_SELF_SIGNED"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)


def test_toml_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "inspect.toml"
    config.write_text('port = 9100\nice_servers = ["stun:a.example:3478"]\nhost = "0.0.0.0"\n')
    settings = load_settings({"INSPECT_CONFIG": str(config), "INSPECT_PORT": "9200"})
    assert settings.port == 9200
    assert settings.ice_servers == ("stun:a.example:3478",)
    assert settings.base_url == "http://127.0.0.1:9200"


def test_overrides_are_validated() -> None:
    with pytest.raises(SettingsError):
        Settings().with_overrides(port=0)
