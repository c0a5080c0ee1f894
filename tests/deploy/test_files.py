"""Every file under deploy/ is well formed: YAML parses, the shell script is valid sh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ._deploy import DEPLOY, REQUIRE_SECRETS, TURN_START, load_yaml, yaml_files

SCRIPTS = [TURN_START, REQUIRE_SECRETS]


def test_deploy_has_the_expected_files() -> None:
    expected = [
        "Dockerfile",
        "Dockerfile.dockerignore",
        "healthcheck.py",
        "compose.yaml",
        "env.example",
        "Caddyfile",
        "coturn/turnserver.conf",
        "coturn/start.sh",
        "require-secrets.sh",
        "k8s/25-postgres.yaml",
    ]
    for name in expected:
        assert (DEPLOY / name).is_file(), name
    assert len(list((DEPLOY / "k8s").glob("*.yaml"))) >= 6


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_yaml_file_parses(path: Path) -> None:
    documents = load_yaml(path)
    assert documents, f"{path} holds no document"
    assert all(isinstance(document, dict) for document in documents)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_shell_script_is_valid_sh(script: Path) -> None:
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_shell_script_passes_shellcheck(script: Path) -> None:
    # shellcheck is optional here (the images run the scripts with dash and busybox sh, which
    # the other tests do); where installed, it checks POSIX sh.
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
