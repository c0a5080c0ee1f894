from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from server.accounts.secret_key import SecretKeyConfig, load_secret_key
from server.settings import Settings, SettingsError, load_settings, secret_weakness


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
        ({"INSPECT_DATABASE_URL": "mysql://u:pw@db/inspect"}, "INSPECT_DATABASE_URL"),
        ({"INSPECT_DATABASE_SCHEMA": "Inspect; DROP"}, "INSPECT_DATABASE_SCHEMA"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)


def test_a_refused_database_url_is_not_repeated_with_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"INSPECT_DATABASE_URL": "mysql://inspect:hunter2-secret@db/inspect"})
    assert "hunter2" not in str(caught.value) and "mysql:" in str(caught.value)
    url = "postgresql://inspect:pw@db.internal:5432/inspect"
    settings = load_settings({"INSPECT_DATABASE_URL": url, "INSPECT_DATABASE_SCHEMA": "eu"})
    assert (settings.database_url, settings.database_schema) == (url, "eu")


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


STRONG = "9f2c4e7a1b8d3f60c5e2a9174b6d8e3f0a2c5b7d9e1f3a6c8b0d2e4f6a8c1e3b"
REQUIRE_SECRETS = Path(__file__).resolve().parents[2] / "deploy" / "require-secrets.sh"
WEAK_SECRETS = [
    "REPLACE_ME_with_the_output_of_openssl_rand",  # the shipped placeholder
    "please-change-me-0123456789abcdefghijklmnop",  # CHANGEME, with hyphens
    "s" * 20,  # short
    "3f9a1c7e5b2d8046",  # random but 16 characters
    "k" * 32,  # one character
    "q1w2e3r4t5" * 4,  # a repeated block
    "abcdefghijklmnopqrstuvwxyz0123456789",  # a run
    "0123456789abcdef0123456789abcdefx",
    "9f2c4e7a1b8d3f60 c5e2a9174b6d8e3f0a2c",  # white space
]


@pytest.mark.parametrize("name", ["INSPECT_SECRET_KEY", "INSPECT_TURN_SECRET"])
@pytest.mark.parametrize("value", WEAK_SECRETS)
def test_weak_secrets_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    assert caught.value.variable == name
    assert "openssl rand -hex 32" in str(caught.value)
    assert value not in str(caught.value)


def test_strong_secrets_are_taken_and_no_secret_means_the_generated_key() -> None:
    settings = load_settings({"INSPECT_SECRET_KEY": STRONG, "INSPECT_TURN_SECRET": STRONG[::-1]})
    assert (settings.secret_key, settings.turn_secret) == (STRONG, STRONG[::-1])
    assert load_settings({}).secret_key == ""
    with pytest.raises(SettingsError, match="INSPECT_SECRET_KEY"):
        Settings().with_overrides(secret_key="REPLACE_ME_0123456789abcdefghijklmnop")


@pytest.mark.skipif(shutil.which("awk") is None, reason="needs awk")
@pytest.mark.parametrize("value", [*WEAK_SECRETS[:-1], STRONG, "test-secret-key-0123456789abcdef"])
def test_the_rules_are_those_of_the_container_entrypoint(value: str) -> None:
    done = subprocess.run(
        ["sh", str(REQUIRE_SECRETS), "CANDIDATE"],
        env={"CANDIDATE": value, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=False,
    )
    weakness = secret_weakness(value)
    assert (done.returncode == 0) == (weakness is None), done.stderr
    if weakness is not None:
        assert weakness in done.stderr


def test_trusted_proxies_and_the_outbound_allowlist_are_lists() -> None:
    settings = load_settings(
        {
            "INSPECT_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,fd00::/8",
            "INSPECT_OUTBOUND_ALLOW": "192.168.1.0/24, cam-gw.lan, 127.0.0.1, ::1",
        }
    )
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "fd00::/8")
    assert settings.outbound_allow == ("192.168.1.0/24", "cam-gw.lan", "127.0.0.1", "::1")
    assert load_settings({}).trusted_proxies == load_settings({}).outbound_allow == ()


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"INSPECT_TRUSTED_PROXIES": "proxy.lan"}, "INSPECT_TRUSTED_PROXIES"),
        ({"INSPECT_TRUSTED_PROXIES": "10.0.0.1/8"}, "INSPECT_TRUSTED_PROXIES"),
        ({"INSPECT_TRUSTED_PROXIES": "300.1.1.1"}, "INSPECT_TRUSTED_PROXIES"),
        ({"INSPECT_OUTBOUND_ALLOW": "http://cam.lan/"}, "INSPECT_OUTBOUND_ALLOW"),
        ({"INSPECT_OUTBOUND_ALLOW": "10.0.0.0/33"}, "INSPECT_OUTBOUND_ALLOW"),
        ({"INSPECT_OUTBOUND_ALLOW": "cam_gw.lan"}, "INSPECT_OUTBOUND_ALLOW"),
        ({"INSPECT_OUTBOUND_ALLOW": "10.0.0.300"}, "INSPECT_OUTBOUND_ALLOW"),
    ],
)
def test_bad_address_lists_fail_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert caught.value.variable == variable


def test_the_secret_key_loader_refuses_weak_keys_whoever_built_the_config(tmp_path: Path) -> None:
    for weak in ("s" * 20, "k" * 32, "REPLACE_ME_0123456789abcdefghijklmnopq"):
        with pytest.raises(SettingsError) as caught:
            load_secret_key(SecretKeyConfig(data_dir=tmp_path, secret_key=weak))
        assert caught.value.variable == "INSPECT_SECRET_KEY"
        assert "openssl rand -hex 32" in str(caught.value)
    assert load_secret_key(SecretKeyConfig(tmp_path, STRONG)) == STRONG.encode()
    assert not (tmp_path / "secret_key").exists()


def test_the_key_file_is_made_private_and_a_guessable_one_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    key = load_secret_key(SecretKeyConfig(data))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    path = data / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="server.accounts.secret_key"):
        assert load_secret_key(SecretKeyConfig(data)) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "made it 0600" in caplog.text
    path.write_text("00" * 32 + "\n")
    with pytest.raises(ValueError, match="guessable"):
        load_secret_key(SecretKeyConfig(data))
