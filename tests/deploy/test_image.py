"""deploy/Dockerfile and its health check: the image installs what pyproject.toml declares,
runs the console script as a non-root user, and checks the same /healthz the service serves."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

from server.app import free_port
from tests.conftest import LiveService

from ._deploy import (
    DEPLOY,
    DOCKERFILE,
    HEALTH_PATH,
    REPO,
    check_settings,
    console_scripts,
    packages,
    parse_command,
    port_range,
    settings_of,
)

HEALTHCHECK = DEPLOY / "healthcheck.py"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions():
        if word == "FROM":
            name = rest.split()[-1] if " AS " in rest.upper() else str(len(stages))
            current = stages.setdefault(name, [])
        current.append((word, rest))
    return stages


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _stages()["runtime-base"]:
        if word == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = value
    return env


def test_the_image_is_multi_stage_on_python_311_slim() -> None:
    stages = _stages()
    assert {"build", "runtime-base", "runtime", "gpu"} <= set(stages)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text(encoding="utf-8")
    assert list(stages)[-1] == "runtime", "a plain `docker build` must give the CPU image"
    runs = " ".join(rest for word, rest in stages["build"] if word == "RUN")
    assert "pip install ." in runs


def test_the_image_copies_every_installed_package() -> None:
    copies = {rest.split()[0] for word, rest in _stages()["build"] if word == "COPY"}
    missing = [name for name in packages() if name not in copies]
    assert not missing, f"deploy/Dockerfile does not COPY {missing} (pyproject.toml installs it)"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for name in [*packages(), "pyproject.toml", "README.md", "deploy/healthcheck.py"]:
        assert any(line.strip().rstrip("/") == f"!{name}" for line in ignore), (
            f"deploy/Dockerfile.dockerignore excludes {name} from the build context"
        )


def test_entrypoint_is_the_console_script_and_cmd_a_real_subcommand() -> None:
    instructions = dict(_stages()["runtime-base"])
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint[0] in console_scripts(), (
        f"ENTRYPOINT {entrypoint} is not a console script of pyproject.toml"
    )
    for stage in ("runtime-base", "gpu"):
        cmd = json.loads(dict(_stages()[stage])["CMD"])
        parse_command([*entrypoint[1:], *cmd], f"deploy/Dockerfile ({stage} CMD)")


def test_the_service_runs_as_a_non_root_user() -> None:
    for stage in ("runtime-base", "gpu"):
        users = [rest for word, rest in _stages()[stage] if word == "USER"]
        assert users and users[-1] not in ("root", "0"), f"stage {stage} ends as root"


def test_image_environment_uses_only_settings_the_service_accepts() -> None:
    check_settings(_image_env(), "deploy/Dockerfile ENV")


def test_image_settings_exposed_ports_and_health_check_agree_with_the_service() -> None:
    env = _image_env()
    settings = settings_of(env, "deploy/Dockerfile ENV")
    exposed = [rest for word, rest in _stages()["runtime-base"] if word == "EXPOSE"]
    assert f"{settings.port}/tcp" in exposed
    media = env["INSPECT_MEDIA_PORTS"]
    assert f"{media}/udp" in exposed, f"EXPOSE does not name the media range {media}/udp"
    port_range(media)
    health = dict(_stages()["runtime-base"])["HEALTHCHECK"]
    assert "/opt/inspectd/healthcheck.py" in health
    build_copies = [rest for word, rest in _stages()["build"] if word == "COPY"]
    assert "deploy/healthcheck.py /opt/inspectd/healthcheck.py" in build_copies
    gpu = dict(_stages()["gpu"])
    assert gpu["HEALTHCHECK"] == "NONE", "`inspectd worker` serves no /healthz"


def test_the_health_check_asks_the_route_the_probes_use() -> None:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PATH == HEALTH_PATH


async def _healthcheck(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _env(data_dir: Path, port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    return {
        **clean,
        "PYTHONPATH": str(REPO),
        "INSPECT_HOST": "0.0.0.0",
        "INSPECT_PORT": str(port),
        "INSPECT_DATA_DIR": str(data_dir),
    }


async def test_health_check_passes_on_a_running_service_and_fails_without_one(
    live_service: LiveService, tmp_path: Path
) -> None:
    port = int(live_service.base_url.rsplit(":", 1)[1])
    status, output = await _healthcheck(_env(tmp_path, port))
    assert status == 0, output
    status, output = await _healthcheck(_env(tmp_path, free_port()))
    assert status == 1
    assert HEALTH_PATH in output
    status, output = await _healthcheck({**_env(tmp_path, port), "INSPECT_PORT": "none"})
    assert status == 1 and "INSPECT_PORT" in output
