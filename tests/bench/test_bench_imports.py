"""Every benchmark starts, run by path or as a module, without running it: ``--help`` loads all
of a script's imports and exits. The benchmarks themselves take minutes and belong to
``make bench``, not to the tests."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_"))
HELPERS = sorted(p.stem for p in BENCH.glob("_*.py") if p.name != "__init__.py")
#: Importing aiortc, PyAV, OpenCV and onnxruntime on a busy machine takes a few seconds.
START_S = 90


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # stdin is an empty pipe: a process that reads its orders from it sees the bench gone.
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=START_S,
        input="",
        check=False,
    )


def test_there_are_benchmarks() -> None:
    assert {"connect", "forwarding", "grading", "recording", "sockets"} <= set(SCRIPTS)


def test_no_bench_module_is_named_like_a_package_of_the_project() -> None:
    # Run by path, a script has bench/ first on sys.path: a bench/media.py would be imported
    # for the media package.
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"bench"}
    assert not packages & {p.stem for p in BENCH.glob("*.py")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_starts_by_path(script: str) -> None:
    done = _run(f"bench/{script}.py", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_starts_as_a_module(script: str) -> None:
    done = _run("-m", f"bench.{script}", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout


@pytest.mark.parametrize("helper", HELPERS)
def test_a_helper_module_imports(helper: str) -> None:
    importlib.import_module(f"bench.{helper}")


def test_the_forwarding_server_process_starts_by_path() -> None:
    # As ServerProcess starts it; with no mode it says how to call it once its imports loaded.
    done = _run("bench/_forwarding_server.py")
    assert done.returncode == 1
    assert "usage: _forwarding_server.py engine|grading|relay" in done.stderr


def test_the_socket_clients_process_starts_by_path() -> None:
    # As bench/sockets.py starts it: it says hello, then ends when the bench goes away.
    done = _run("bench/_sockets_clients.py")
    assert done.stdout.splitlines() == ['{"hello": true}']
    assert done.returncode == 1 and "the bench went away" in done.stderr
