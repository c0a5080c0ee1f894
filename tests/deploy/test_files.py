"""Every file under deploy/ is well formed: YAML parses, the shell script is valid sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ._deploy import DEPLOY, TURN_START, load_yaml, yaml_files


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
    ]
    for name in expected:
        assert (DEPLOY / name).is_file(), name
    assert len(list((DEPLOY / "k8s").glob("*.yaml"))) >= 6


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_yaml_file_parses(path: Path) -> None:
    documents = load_yaml(path)
    assert documents, f"{path} holds no document"
    assert all(isinstance(document, dict) for document in documents)


def test_coturn_start_script_is_valid_sh() -> None:
    result = subprocess.run(
        ["sh", "-n", str(TURN_START)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
