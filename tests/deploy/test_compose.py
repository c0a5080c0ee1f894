"""deploy/compose.yaml as Debian's docker-compose reads it (`config` parses, interpolates and
validates against the compose schema without a Docker engine), and what must agree with the
service: settings, commands, ports, health checks, the TURN secret, the GPU reservation."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._deploy import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    PLACEHOLDER,
    TURN_CONF,
    caddy_config,
    check_settings,
    env_example,
    parse_command,
    port_range,
    run_compose,
    settings_of,
    turn_conf,
    walk,
)


@functools.cache
def _resolved() -> dict[str, Any]:
    """The compose file after interpolation with deploy/env.example, every profile included."""
    result = run_compose("--profile", "gpu", "config")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _resolved()["services"][name]
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
    assert {"inspectd", "redis", "coturn", "proxy", "worker"} <= set(services)
    assert services["worker"]["profiles"] == ["gpu"], "the GPU worker is optional"
    assert {"inspectd-data", "redis-data", "caddy-data"} <= set(_resolved()["volumes"])
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
    for name in ("inspectd", "redis", "coturn", "proxy"):
        test = _service(name)["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    assert _service("inspectd")["healthcheck"]["test"][1:] == [
        "python",
        "/opt/inspectd/healthcheck.py",
    ]
    assert _service("inspectd")["depends_on"]["redis"]["condition"] == "service_healthy"


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


def test_coturn_and_inspectd_share_the_turn_secret_and_port() -> None:
    coturn, inspectd = _service("coturn")["environment"], _service("inspectd")["environment"]
    assert coturn["TURN_SECRET"] == inspectd["INSPECT_TURN_SECRET"]
    # One source for both: the same variable of deploy/.env.
    source = _raw_service("coturn")["environment"]["TURN_SECRET"]
    assert source.startswith("${TURN_SECRET")
    assert _raw_service("inspectd")["environment"]["INSPECT_TURN_SECRET"] == source
    assert _service("coturn")["entrypoint"][-1] == "/etc/inspectd-coturn/start.sh"

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
    for name in ("SECRET_KEY", "TURN_SECRET"):
        assert PLACEHOLDER in values[name], f"{ENV_EXAMPLE}: {name} must be a placeholder"
    assert (Path(ENV_EXAMPLE).parent / ".gitignore").read_text(encoding="utf-8").count(".env")
