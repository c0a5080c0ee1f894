"""The import graph of the packages, read from their source (``TYPE_CHECKING`` and
function-local imports included), held against the layering of DESIGN.md:

- no import cycles among the project's modules;
- ``signaling``, ``media``, ``inference``, ``evidence`` and ``web`` import nothing of the
  project's own but ``aioutil`` (the one leaf every package may use), and ``aioutil`` nothing;
- the domain homes (``server/cases``, ``sites``, ``capture``, ``accounts``) import no
  ``aiohttp.web`` (webhook delivery uses its client), no engine, hub, bus or batcher, no storage
  backend, and none of the edge, the wiring or the cluster code;
- the REST route modules of ``server/http`` do not import one another, only the edge's shared
  modules; only the entry points import ``server.app``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "signaling", "media", "inference", "evidence", "web", "aioutil")
LEAVES = ("signaling", "media", "inference", "evidence", "web")
DOMAINS = ("server.cases", "server.sites", "server.capture", "server.accounts")
#: What a domain never imports: the request edge, live machinery, concrete storage.
DOMAIN_FORBIDDEN_MODULES = (
    "aiohttp.web",
    "sqlite3",
    "server.http",
    "server.wiring",
    "server.cluster",
    "server.app",
    "server.storage.sqlite",
)
DOMAIN_FORBIDDEN_NAMES = {
    "MediaEngine",
    "Hub",
    "RedisBus",
    "MemoryBus",
    "DynamicBatcher",
    "RemoteBatcher",
    "FrameBatcher",
    "RtspPull",
}
#: The edge modules every route module may import (the rest are route modules).
HTTP_SHARED = {
    "server.http._request",
    "server.http.auth",
    "server.http.authz",
    "server.http.errors",
    "server.http.keys",
    "server.http.openapi",
    "server.http.ports",
    "server.http.ratelimit",
    "server.http.replies",
    "server.http.wire",
}
#: The edge's assembly and the WHIP protocol endpoint are not REST route modules.
HTTP_NOT_ROUTES = {"server.http", "server.http.whip"}
#: The entry points, and ``server`` itself (it re-exports ``create_app``).
APP_IMPORTERS = {"server", "server.cli", "server.demo"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> Iterator[tuple[str, set[str], int]]:
    """(imported module, names taken from it, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, set(), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = {alias.name for alias in node.names}
            # ``from pkg import submodule`` imports the submodule, not what pkg exports.
            submodules = {name for name in names if f"{target}.{name}" in MODULES}
            if names - submodules:
                yield target, names - submodules, node.lineno
            for name in sorted(submodules):
                yield f"{target}.{name}", set(), node.lineno


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "server.app" in graph and "media.engine" in graph
    assert "server.http" in graph["server.app"], "from-imports of a package are edges"


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_packages_import_nothing_of_ours(leaf: str) -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        if _within(module, leaf)
        for target, _, line in _imports(module)
        if target.split(".")[0] in PACKAGES and target.split(".")[0] not in (leaf, "aioutil")
    ]
    assert not wrong, "\n".join(wrong)


def test_aioutil_imports_nothing_of_ours() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        if _within(module, "aioutil")
        for target, _, line in _imports(module)
        if target.split(".")[0] in PACKAGES and target.split(".")[0] != "aioutil"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("domain", DOMAINS)
def test_domains_see_no_request_engine_bus_or_backend(domain: str) -> None:
    wrong: list[str] = []
    for module in MODULES:
        if not _within(module, domain):
            continue
        for target, names, line in _imports(module):
            if any(_within(target, forbidden) for forbidden in DOMAIN_FORBIDDEN_MODULES):
                wrong.append(f"{module}:{line} imports {target}")
            if target == "aiohttp" and "web" in names:
                wrong.append(f"{module}:{line} imports aiohttp.web")
            if names & DOMAIN_FORBIDDEN_NAMES:
                wrong.append(f"{module}:{line} imports {sorted(names & DOMAIN_FORBIDDEN_NAMES)}")
    assert not wrong, "\n".join(wrong)


def test_route_modules_do_not_import_each_other() -> None:
    routes = {
        module
        for module in MODULES
        if _within(module, "server.http")
        and module not in HTTP_SHARED
        and module not in HTTP_NOT_ROUTES
    }
    assert {"server.http.cases", "server.http.capture", "server.http.sites"} <= routes
    wrong = [
        f"{module}:{line} imports {target}"
        for module in routes
        for target, _, line in _imports(module)
        if target in routes and target != module
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_entry_points_import_the_app() -> None:
    wrong = [
        f"{module}:{line} imports server.app"
        for module in MODULES
        if module not in APP_IMPORTERS and module != "server.app"
        for target, _, line in _imports(module)
        if target == "server.app"
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_declares_its_public_names() -> None:
    missing = [
        module
        for module in MODULES
        if _is_package(module)
        and "__all__" not in MODULES[module].read_text(encoding="utf-8")
        and MODULES[module].read_text(encoding="utf-8").strip()
    ]
    assert not missing, f"packages without __all__: {missing}"
