"""What the deploy tests share: the files under ``deploy/``, the settings the service knows,
the ``inspectd`` command line, and the Debian tools that validate files without an engine."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.cli import _parser
from server.settings import Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
CADDYFILE = DEPLOY / "Caddyfile"
TURN_CONF = DEPLOY / "coturn" / "turnserver.conf"
TURN_START = DEPLOY / "coturn" / "start.sh"
REQUIRE_SECRETS = DEPLOY / "require-secrets.sh"
#: Where compose and Kubernetes mount the scripts of deploy/ (the same layout: coturn/start.sh
#: finds require-secrets.sh in the folder above its own).
CONTAINER_DEPLOY = "/etc/inspectd-deploy"
#: require-secrets.sh's exit status for a refused secret (EX_CONFIG).
REFUSED = 78
K8S = DEPLOY / "k8s"
HEALTH_PATH = "/healthz"
PLACEHOLDER = "REPLACE_ME"

#: Debian package of each tool the tests run (`make test` installs them; see the Makefile).
DEBIAN_PACKAGES = {"docker-compose": "docker-compose", "caddy": "caddy", "turnserver": "coturn"}

#: The awk implementations the images run require-secrets.sh with: mawk (Debian: the python
#: and coturn images), busybox (Alpine: the Redis image), and gawk for good measure.
AWKS = ("mawk", "gawk", "busybox")


def require_tool(name: str) -> str:
    """The path of a Debian tool; fails (never skips) naming the package when it is missing."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES[name]
        pytest.fail(
            f"`{name}` is not installed: install the Debian package `{package}`"
            f" (`make test` does: apt-get install {package})"
        )
    return path


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file (empty documents dropped)."""
    with path.open(encoding="utf-8") as handle:
        return [document for document in yaml.safe_load_all(handle) if document is not None]


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml(path)]


def setting_variables() -> set[str]:
    """Every ``INSPECT_*`` variable server/settings.py reads."""
    names = {f"INSPECT_{field.name.upper()}" for field in dataclasses.fields(Settings)}
    return names | {"INSPECT_CONFIG"}


#: What an operator puts where the files hold a placeholder (`openssl rand -hex 32`), made once.
FILLED_SECRET = secrets.token_hex(32)


def inspect_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``INSPECT_*`` variables, each placeholder secret filled in as the operator would
    (the placeholders themselves are refused: ``test_the_env_example_placeholders_stop...``)."""
    return {
        name: re.sub(PLACEHOLDER + r"\w*", FILLED_SECRET, value)
        for name, value in environ.items()
        if name.startswith("INSPECT_")
    }


def check_settings(environ: Mapping[str, str], where: str) -> Settings:
    """The ``INSPECT_*`` part of ``environ`` loaded as the service loads it at start."""
    unknown = sorted(set(inspect_variables(environ)) - setting_variables())
    assert not unknown, (
        f"{where} sets {', '.join(unknown)}, which server/settings.py does not define"
        " (the service refuses to start on an unknown INSPECT_* variable)"
    )
    try:
        return load_settings(inspect_variables(environ))
    except SettingsError as exc:
        raise AssertionError(f"{where}: the service would refuse this setting: {exc}") from exc


def settings_of(environ: Mapping[str, str], where: str) -> Settings:
    """The settings the known ``INSPECT_*`` variables of ``environ`` give (unknown ones are left
    to ``check_settings``, so that one missing setting fails one test, not every comparison)."""
    known = {k: v for k, v in inspect_variables(environ).items() if k in setting_variables()}
    try:
        return load_settings(known)
    except SettingsError as exc:
        raise AssertionError(f"{where}: the service would refuse this setting: {exc}") from exc


def parse_command(argv: Sequence[str], where: str) -> argparse.Namespace:
    """``inspectd ARGV`` parsed by the real command line; fails naming what it refused."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return _parser().parse_args(list(argv))
    except SystemExit:
        raise AssertionError(
            f"{where}: `inspectd {' '.join(argv)}` is refused by server/cli.py:\n"
            f"{errors.getvalue()}"
        ) from None


def console_scripts() -> dict[str, str]:
    document = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = document["project"]["scripts"]
    return scripts


def packages() -> list[str]:
    """The top-level packages pyproject.toml installs."""
    document = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    includes = document["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in includes]


def port_range(text: str) -> range:
    """``"40000-40999"`` as a range of ports (both ends included)."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    assert match, f"expected a port range MIN-MAX, got {text!r}"
    low, high = int(match[1]), int(match[2])
    assert 1024 <= low <= high <= 65535, f"bad port range {text!r}"
    return range(low, high + 1)


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def turn_conf(text: str) -> list[tuple[str, str]]:
    """coturn config lines as (option, value); a bare flag has value ""."""
    options: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options.append((name.strip(), value.strip()))
    return options


def run_compose(
    *args: str, env_file: Path | None = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    """``docker-compose [--env-file FILE] -f deploy/compose.yaml ARGS`` with a clean
    environment (a variable exported in the caller's shell would win over the env file)."""
    binary = require_tool("docker-compose")
    command = [binary]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    command += ["-f", str(COMPOSE_FILE), *args]
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    return subprocess.run(
        command, capture_output=True, text=True, env=environ, cwd=REPO, timeout=60, check=False
    )


def walk(node: Any) -> Iterator[Any]:
    """Every mapping and list inside a parsed YAML document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def caddy_config() -> dict[str, Any]:
    """deploy/Caddyfile adapted to Caddy's JSON and validated by Caddy itself (offline)."""
    caddy = require_tool("caddy")
    values = env_example()
    result = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--validate"],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tempfile.gettempdir(),
            "PUBLIC_HOST": values["PUBLIC_HOST"],
            "ACME_EMAIL": values["ACME_EMAIL"],
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"caddy adapt --validate {CADDYFILE}:\n{result.stderr}"
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def fake_turnserver(directory: Path) -> Path:
    """A folder holding a ``turnserver`` that records its arguments and config and exits 0,
    to put first on PATH: start.sh then never starts a real relay (on every interface, as
    deployed) when a test only checks what it refuses or writes."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "turnserver"
    script.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$(dirname "$0")/argv"\n'
        'cp "$2" "$(dirname "$0")/written.conf"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return directory


def awk_path(awk: str, directory: Path) -> str:
    """A PATH whose ``awk`` is ``awk`` (mawk, gawk or busybox), the system's tools after it;
    skips when that implementation is not installed here."""
    found = shutil.which(awk)
    if found is None:
        pytest.skip(f"{awk} is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "awk"
    if awk == "busybox":
        link.write_text(f'#!/bin/sh\nexec {found} awk "$@"\n', encoding="utf-8")
        link.chmod(0o755)
    else:
        link.symlink_to(found)
    return f"{directory}:/usr/bin:/bin"


def local_command(argv: Sequence[str]) -> list[str]:
    """A container command with the mounted deploy/ scripts at their place in this checkout."""
    return [
        str(DEPLOY) + arg[len(CONTAINER_DEPLOY) :]
        if arg.startswith(CONTAINER_DEPLOY + "/")
        else arg
        for arg in argv
    ]


def run_script(
    argv: Sequence[str], environ: Mapping[str, str], *, path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    """``argv`` (container paths mapped to this checkout) with exactly ``environ``."""
    return subprocess.run(
        local_command(argv),
        capture_output=True,
        text=True,
        env={"PATH": path, **environ},
        cwd=REPO,
        timeout=30,
        check=False,
    )
