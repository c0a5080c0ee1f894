"""The media package's own import graph: no cycles, ``TYPE_CHECKING`` imports included, and
nothing of ours imported but ``aioutil``."""

from __future__ import annotations

import ast
from pathlib import Path

import media

PACKAGE = Path(media.__file__).parent
#: Top-level names of the repository's own packages (what media must not reach into).
OURS = {"server", "signaling", "inference", "evidence", "web", "bench", "tests", "deploy"}


def _imports(path: Path) -> set[str]:
    """Every module of media that ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("media."):
            found.add(node.module.split(".")[1])
    return found


def _graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {name: _imports(path) & modules.keys() for name, path in modules.items()}


def test_no_module_of_media_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    assert {"engine", "forwarder", "source", "_fanout", "_rtsp_session"} <= graph.keys()
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_the_graph_sees_type_checking_imports() -> None:
    # A cycle only through ``if TYPE_CHECKING:`` is still one; the walk must see those.
    assert "engine" in _graph()["metrics"]


def test_media_imports_nothing_of_ours_but_aioutil() -> None:
    reached: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                reached.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                reached.add(node.module.split(".")[0])
    assert reached & OURS == set()
    assert "aioutil" in reached
