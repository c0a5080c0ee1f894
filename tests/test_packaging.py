"""What the service imports at run time is installed by ``pip install .`` (no extras).

``make test`` installs the dev and train extras too, so a run-time import that only an extra
provides would pass every other test and crash the container image at start.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Packages of the service; inference/training is the train extra's.
RUNTIME = ("server", "signaling", "media", "inference", "evidence", "web", "aioutil")
FIRST_PARTY = {*RUNTIME, "tests", "bench"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _base_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normalise(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_are_base_dependencies() -> None:
    base = _base_dependencies()
    distributions = packages_distributions()
    missing: dict[str, list[str]] = {}
    for package in RUNTIME:
        for path in (ROOT / package).rglob("*.py"):
            if "training" in path.relative_to(ROOT).parts:
                continue
            for name in _imports(path):
                if name in sys.stdlib_module_names or name in FIRST_PARTY or name == "__future__":
                    continue
                dists = {_normalise(d) for d in distributions.get(name, [name])}
                if not dists & base:
                    missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported at run time but not in [project] dependencies: {missing}"
