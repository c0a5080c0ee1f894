"""deploy/compose.yaml as Debian's docker-compose reads it (`config` parses, interpolates and
validates against the compose schema without a Docker engine), and what must agree with the
service: settings, commands, ports, health checks, the TURN secret, the database URL and its
password, the GPU reservation."""

from __future__ import annotations

import functools
import re
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ._deploy import (
    COMPOSE_FILE,
    CONTAINER_DEPLOY,
    DEPLOY,
    ENV_EXAMPLE,
    PLACEHOLDER,
    REFUSED,
    TURN_CONF,
    caddy_config,
    check_settings,
    env_example,
    fake_turnserver,
    parse_command,
    port_range,
    run_compose,
    run_script,
    settings_of,
    turn_conf,
    walk,
)


@functools.cache
def _resolved(env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    """The compose file after interpolation with ``env_file`` (deploy/env.example unless
    told), every profile included."""
    result = run_compose("--profile", "gpu", "config", env_file=env_file)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def _service(name: str, env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    service: dict[str, Any] = _resolved(env_file)["services"][name]
    return service


def _raw_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"][
        name
    ]
    return service


def test_docker_compose_validates_the_file_offline() -> None:
    for profile in ([], ["--profile", "gpu"]):
        result = run_compose(*profile, "config", "-q")
        assert result.returncode == 0, f"docker-compose config -q {profile}:\n{result.stderr}"


def test_required_secrets_are_refused_when_missing() -> None:
    result = run_compose("config", "-q", env_file=None)
    assert result.returncode != 0
    assert "deploy/.env" in result.stderr


def test_the_stack_has_its_services_and_data_volumes() -> None:
    services = _resolved()["services"]
    assert {"inspectd", "postgres", "redis", "coturn", "proxy", "worker"} <= set(services)
    assert services["worker"]["profiles"] == ["gpu"], "the GPU worker is optional"
    volumes = {"inspectd-data", "postgres-data", "redis-data", "caddy-data"}
    assert volumes <= set(_resolved()["volumes"])
    settings = settings_of(_service("inspectd")["environment"], "compose inspectd")
    mounts = {volume.split(":")[1] for volume in _service("inspectd")["volumes"]}
    assert str(settings.data_dir) in mounts, "the data directory must be on a volume"


@pytest.mark.parametrize("name", ["inspectd", "worker"])
def test_inspectd_services_use_only_settings_the_service_accepts(name: str) -> None:
    check_settings(_service(name)["environment"], f"compose service {name}")


def test_inspectd_commands_are_accepted_by_the_command_line() -> None:
    images = {
        name
        for name, service in _resolved()["services"].items()
        if str(service.get("image", "")).startswith("inspectd:")
    }
    assert images == {"inspectd", "worker"}
    serve = parse_command(_service("inspectd")["command"], "compose inspectd")
    assert serve.command == "serve"
    assert int(serve.workers) >= 1
    worker = parse_command(_service("worker")["command"], "compose worker")
    assert worker.command == "worker"


def test_media_turn_and_proxy_use_host_networking() -> None:
    # WebRTC media and TURN relays are UDP port ranges that must be reachable at the address
    # ICE advertises: see the comment at the top of deploy/compose.yaml.
    for name in ("inspectd", "coturn", "proxy"):
        assert _service(name).get("network_mode") == "host", name
        assert "ports" not in _service(name), f"{name}: ports mean nothing with host networking"
    settings = settings_of(_service("inspectd")["environment"], "compose inspectd")
    assert settings.host == "127.0.0.1", "with host networking inspectd's HTTP stays on loopback"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name in ("inspectd", "postgres", "redis", "coturn", "proxy"):
        test = _service(name)["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    assert _service("inspectd")["healthcheck"]["test"][1:] == [
        "python",
        "/opt/inspectd/healthcheck.py",
    ]
    # inspectd migrates the schema as it starts: PostgreSQL must accept connections by then.
    for name in ("postgres", "redis"):
        assert _service("inspectd")["depends_on"][name]["condition"] == "service_healthy", name


def test_the_proxy_reaches_inspectd_where_it_listens() -> None:
    settings = settings_of(_service("inspectd")["environment"], "compose inspectd")
    upstreams = {
        upstream["dial"]
        for node in walk(caddy_config())
        if isinstance(node, dict) and node.get("handler") == "reverse_proxy"
        for upstream in node["upstreams"]
    }
    assert upstreams == {f"{settings.host}:{settings.port}"}, upstreams
    assert settings.public_url == f"https://{env_example()['PUBLIC_HOST']}"
    mounts = {volume.split(":")[1] for volume in _service("proxy")["volumes"]}
    assert "/etc/caddy/Caddyfile" in mounts


def test_redis_url_points_at_the_published_redis_port() -> None:
    # docker-compose 1.29 prints short syntax: HOST_IP:PUBLISHED:TARGET/PROTOCOL
    published = {str(port).rsplit("/", 1)[0] for port in _service("redis")["ports"]}
    assert published == {"127.0.0.1:6379:6379"}, "Redis is published on loopback only"
    for name in ("inspectd", "worker"):
        url = _service(name)["environment"]["INSPECT_REDIS_URL"]
        assert url.startswith("redis://127.0.0.1:6379/"), url


def _published(name: str) -> set[str]:
    """HOST_IP:PUBLISHED:TARGET of each port of service ``name`` (docker-compose 1.29 prints
    short syntax, with /PROTOCOL)."""
    return {str(port).rsplit("/", 1)[0] for port in _service(name).get("ports", [])}


def _option(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in ``argv``."""
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_postgres_keeps_its_data_on_a_volume_and_reports_when_it_is_ready() -> None:
    postgres = _service("postgres")
    assert re.fullmatch(r"postgres:1[67](\.\d+)*-alpine", postgres["image"]), postgres["image"]
    environment = postgres["environment"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in postgres["volumes"]}
    pgdata = environment["PGDATA"]
    (target,) = [t for t in mounts if pgdata == t or pgdata.startswith(t + "/")]
    assert mounts[target] == "postgres-data", "the database lives on the named volume"
    assert "postgres-data" in _resolved()["volumes"]
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"], test
    # Over TCP: the temporary server of the first start listens on the Unix socket only.
    assert _option(test, "-h") == "127.0.0.1"
    assert _option(test, "-U") == environment["POSTGRES_USER"]
    assert _option(test, "-d") == environment["POSTGRES_DB"]
    assert postgres["shm_size"], "Docker's 64 MB /dev/shm is too small for parallel queries"
    # Overriding the entrypoint clears the image's command: the server must be named again.
    assert postgres["entrypoint"][-1] == "docker-entrypoint.sh"
    assert postgres["command"][0] == "postgres"
    assert "network_mode" not in postgres
    assert _published("postgres") == {"127.0.0.1:5432:5432"}, "PostgreSQL: loopback only"


def test_inspectd_reaches_postgres_where_it_is_published_with_its_password(
    tmp_path: Path,
) -> None:
    env_file = _strong_env_file(tmp_path)
    postgres = _service("postgres", env_file)["environment"]
    inspectd = _service("inspectd", env_file)["environment"]
    settings = settings_of(inspectd, "compose inspectd")
    url = urlsplit(settings.database_url)
    assert url.scheme == "postgresql"
    ((host, published, target),) = [port.split(":") for port in _published("postgres")]
    assert (url.hostname, url.port) == (host, int(published)), settings.database_url
    assert int(target) == 5432
    assert url.username == postgres["POSTGRES_USER"]
    assert url.path == "/" + postgres["POSTGRES_DB"]
    # A generated (hex) password passes through the URL as it is.
    assert url.password == postgres["POSTGRES_PASSWORD"] == inspectd["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"[0-9a-f]{64}", url.password or "")
    # One source for all three: the same variable of deploy/.env.
    source = _raw_service("postgres")["environment"]["POSTGRES_PASSWORD"]
    assert source.startswith("${POSTGRES_PASSWORD")
    assert _raw_service("inspectd")["environment"]["POSTGRES_PASSWORD"] == source
    raw_url = _raw_service("inspectd")["environment"]["INSPECT_DATABASE_URL"]
    assert re.findall(r"\$\{(\w+)", raw_url) == ["POSTGRES_PASSWORD"], raw_url
    assert settings_of(_service("worker")["environment"], "worker").database_url == "", (
        "the GPU worker never touches the database: it gets no password"
    )


def test_coturn_and_inspectd_share_the_turn_secret_and_port() -> None:
    coturn, inspectd = _service("coturn")["environment"], _service("inspectd")["environment"]
    assert coturn["TURN_SECRET"] == inspectd["INSPECT_TURN_SECRET"]
    # One source for both: the same variable of deploy/.env.
    source = _raw_service("coturn")["environment"]["TURN_SECRET"]
    assert source.startswith("${TURN_SECRET")
    assert _raw_service("inspectd")["environment"]["INSPECT_TURN_SECRET"] == source
    assert _service("coturn")["entrypoint"] == ["/bin/sh", f"{CONTAINER_DEPLOY}/coturn/start.sh"]

    settings = settings_of(inspectd, "compose inspectd")
    assert settings.turn_secret, "TURN credentials need INSPECT_TURN_SECRET"
    assert any(url.startswith("turn:") for url in settings.ice_servers)
    listening = dict(turn_conf(TURN_CONF.read_text(encoding="utf-8")))["listening-port"]
    for url in settings.ice_servers:
        address = url.split(":", 1)[1].split("?")[0]
        assert address == f"{env_example()['PUBLIC_HOST']}:{listening}", url


def test_media_ports_do_not_overlap_the_turn_relay_range() -> None:
    media = port_range(_service("inspectd")["environment"]["INSPECT_MEDIA_PORTS"])
    options = dict(turn_conf(TURN_CONF.read_text(encoding="utf-8")))
    relay = range(int(options["min-port"]), int(options["max-port"]) + 1)
    assert not set(media) & set(relay)


def test_gpu_worker_reserves_an_nvidia_device() -> None:
    worker = _service("worker")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["build"]["target"] == "gpu"
    assert settings_of(worker["environment"], "compose worker").inference_provider == "cuda"


def test_env_example_holds_placeholders_not_secrets() -> None:
    values = env_example()
    for name in ("SECRET_KEY", "TURN_SECRET", "POSTGRES_PASSWORD"):
        assert PLACEHOLDER in values[name], f"{ENV_EXAMPLE}: {name} must be a placeholder"
    assert (Path(ENV_EXAMPLE).parent / ".gitignore").read_text(encoding="utf-8").count(".env")


def _secret_variables(name: str) -> dict[str, set[str]]:
    """Variable -> the secrets of deploy/.env (those whose env.example value is a placeholder)
    in its value, for each variable of service ``name`` that holds one."""
    sources = {source for source, value in env_example().items() if PLACEHOLDER in value}
    raw = _raw_service(name).get("environment", {})
    held = {
        variable: set(re.findall(r"\$\{(\w+)", str(value))) & sources
        for variable, value in raw.items()
    }
    return {variable: names for variable, names in held.items() if names}


def _carriers(name: str) -> dict[str, str]:
    """Variable -> secret, for each variable of service ``name`` whose whole value is one
    secret of deploy/.env (``${NAME:?...}``), not a value built around it (a URL)."""
    raw = _raw_service(name).get("environment", {})
    carriers: dict[str, str] = {}
    for variable, held in _secret_variables(name).items():
        if re.fullmatch(r"\$\{\w+(:?[-?][^}]*)?\}", str(raw[variable])):
            (carriers[variable],) = held
    return carriers


def _mounts(name: str) -> dict[str, Path]:
    """Container path -> host path of the bind mounts of service ``name``."""
    mounts: dict[str, Path] = {}
    for volume in _service(name).get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("/"):
            mounts[target] = Path(source)
    return mounts


def _local(name: str, argv: list[str]) -> list[str]:
    """``argv`` of service ``name`` with each path inside a bind mount at its host path."""
    local = []
    for arg in argv:
        for target, source in _mounts(name).items():
            if arg == target or arg.startswith(target + "/"):
                arg = str(source) + arg[len(target) :]
                break
        local.append(arg)
    return local


def _checked(name: str) -> list[str]:
    """The variables the entrypoint of service ``name`` hands to require-secrets.sh."""
    entrypoint: list[str] = _service(name)["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", f"{CONTAINER_DEPLOY}/require-secrets.sh"], entrypoint
    return entrypoint[2 : entrypoint.index("--")]


def _strong_env_file(tmp_path: Path) -> Path:
    """deploy/env.example with every placeholder replaced by `openssl rand -hex 32`."""
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        lines.append(f"{name}={secrets.token_hex(32)}" if PLACEHOLDER in value else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _start_checked(name: str, environ: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Service ``name``'s entrypoint (inspectd's or postgres's) with ``environ``, up to the
    check of its secrets; what follows `--` (the program itself) is replaced by a command that
    says it ran."""
    entrypoint: list[str] = _service(name)["entrypoint"]
    argv = [*entrypoint[: entrypoint.index("--") + 1], "sh", "-c", "echo started"]
    return run_script(_local(name, argv), environ)


def _start_coturn(environ: Mapping[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The coturn service's entrypoint with ``environ`` and a stand-in turnserver, so that no
    relay starts (the deployed config listens on every interface)."""
    fake = fake_turnserver(tmp_path / "bin")
    argv = [*_service("coturn")["entrypoint"], *_service("coturn").get("command", [])]
    environ = {**environ, "TMPDIR": str(tmp_path)}
    return run_script(_local("coturn", argv), environ, path=f"{fake}:/usr/bin:/bin")


def test_every_service_that_reads_a_secret_checks_it_before_it_starts() -> None:
    readers = {name for name in _resolved()["services"] if _secret_variables(name)}
    assert readers == {"inspectd", "postgres", "coturn"}
    for name in ("inspectd", "postgres"):
        carriers = _carriers(name)
        assert set(_checked(name)) == set(carriers), name
        # A value built around a secret (the database URL) is checked through a variable that
        # holds that secret alone: require-secrets.sh judges whole values, and a URL is long
        # and varied whatever password it holds.
        for variable, held in _secret_variables(name).items():
            assert held <= set(carriers.values()), f"{name}: {variable} holds an unchecked secret"
    assert _service("inspectd")["entrypoint"][-1] == "inspectd", "then the image's entrypoint"
    parse_command(_service("inspectd")["command"], "compose inspectd")
    assert _service("postgres")["entrypoint"][-1] == "docker-entrypoint.sh"
    # coturn: start.sh runs require-secrets.sh on TURN_SECRET (shown by running it below).
    assert _secret_variables("coturn") == {"TURN_SECRET": {"TURN_SECRET"}}


def test_the_scripts_are_mounted_from_deploy_in_its_layout() -> None:
    for name in ("inspectd", "postgres", "coturn"):
        scripts = {t: s for t, s in _mounts(name).items() if t.startswith(CONTAINER_DEPLOY)}
        assert f"{CONTAINER_DEPLOY}/require-secrets.sh" in scripts, name
        for target, source in scripts.items():
            assert source == DEPLOY / target[len(CONTAINER_DEPLOY) + 1 :], (name, target)
    assert f"{CONTAINER_DEPLOY}/coturn" in _mounts("coturn")


def test_the_env_example_placeholders_stop_inspectd_postgres_and_coturn(tmp_path: Path) -> None:
    inspectd = _start_checked("inspectd", _service("inspectd")["environment"])
    assert inspectd.returncode == REFUSED, inspectd
    assert "started" not in inspectd.stdout
    for variable in ("INSPECT_SECRET_KEY", "INSPECT_TURN_SECRET", "POSTGRES_PASSWORD"):
        assert f"refusing to start: {variable} still holds a placeholder" in inspectd.stderr

    postgres = _start_checked("postgres", _service("postgres")["environment"])
    assert postgres.returncode == REFUSED, postgres
    assert "started" not in postgres.stdout
    assert "refusing to start: POSTGRES_PASSWORD still holds a placeholder" in postgres.stderr

    coturn = _start_coturn(_service("coturn")["environment"], tmp_path)
    assert coturn.returncode == REFUSED, coturn
    assert "refusing to start: TURN_SECRET still holds a placeholder" in coturn.stderr
    assert not (tmp_path / "bin" / "argv").exists(), "turnserver must not run"
    assert not (tmp_path / "turnserver.conf").exists(), "nothing is written before the check"


@pytest.mark.parametrize("weak", ["", "short", "a" * 64], ids=["empty", "short", "one character"])
def test_a_short_or_guessable_secret_stops_them_too(weak: str, tmp_path: Path) -> None:
    good = secrets.token_hex(32)
    inspectd = {
        **_service("inspectd")["environment"],
        "INSPECT_TURN_SECRET": good,
        "POSTGRES_PASSWORD": good,
    }
    result = _start_checked("inspectd", {**inspectd, "INSPECT_SECRET_KEY": weak})
    assert result.returncode == REFUSED and "INSPECT_SECRET_KEY" in result.stderr, result
    assert "INSPECT_TURN_SECRET" not in result.stderr
    assert "POSTGRES_PASSWORD" not in result.stderr
    result = _start_checked(
        "inspectd", {**inspectd, "INSPECT_SECRET_KEY": good, "POSTGRES_PASSWORD": weak}
    )
    assert result.returncode == REFUSED and "POSTGRES_PASSWORD" in result.stderr, result
    postgres = {**_service("postgres")["environment"], "POSTGRES_PASSWORD": weak}
    result = _start_checked("postgres", postgres)
    assert result.returncode == REFUSED and "POSTGRES_PASSWORD" in result.stderr, result
    assert "started" not in result.stdout
    result = _start_coturn({**_service("coturn")["environment"], "TURN_SECRET": weak}, tmp_path)
    assert result.returncode == REFUSED and "TURN_SECRET" in result.stderr, result
    assert not (tmp_path / "bin" / "argv").exists()


def test_generated_secrets_start_inspectd_postgres_and_coturn(tmp_path: Path) -> None:
    env_file = _strong_env_file(tmp_path)
    for name in ("inspectd", "postgres"):
        started = _start_checked(name, _service(name, env_file)["environment"])
        assert (started.returncode, started.stdout, started.stderr) == (0, "started\n", ""), name

    environ = _service("coturn", env_file)["environment"]
    coturn = _start_coturn(environ, tmp_path)
    assert coturn.returncode == 0, coturn
    argv = (tmp_path / "bin" / "argv").read_text(encoding="utf-8").splitlines()
    assert argv == ["-c", str(tmp_path / "turnserver.conf")]
    written = (tmp_path / "bin" / "written.conf").read_text(encoding="utf-8")
    assert f"static-auth-secret={environ['TURN_SECRET']}\n" in written
    assert "allowed-peer-ip" not in dict(turn_conf(written)), "env.example allows no peer"
