"""The floor plan holds: dependencies between feedwatch's modules point one way.

The import graph is built from the source itself (``ast``), never from a hand-kept list: every
``import`` and ``from ... import`` anywhere in a module counts, at the top, inside a function or
under ``if TYPE_CHECKING:`` (a type-only import is still a dependency a reader has to follow).
``from package import name`` counts as an import of ``package.name`` when that is a module. A C
extension (``exporter/_fill.c``) imports nothing of feedwatch: importing it adds no edge.

Rules (docs/architecture.md draws them):

- no cycles, of any length;
- the core (config, book, clock, markets, collector, exposition, fill, plugins, resources, slices, text, throttle, version, sharding) imports only the core;
- the simulator is a program of its own: it imports only itself and the plugin registry.

The planted-cycle tests prove the checker fails when a cycle is introduced, on a synthetic tree
and on a copy of the real one.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"
CORE = {f"exporter.{name}" for name in ("config", "book", "clock", "markets", "collector", "exposition", "fill",
                                        "plugins", "resources", "slices", "text", "throttle", "version", "sharding")}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}, for modules under ``root``."""
    paths = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    extensions = {module_name(root, p) for p in root.rglob("*.c")}   # leaves: they import nothing of ours
    top = root.name
    graph: dict[str, dict[str, int]] = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in paths else base)
            for target in targets:
                if target in extensions:
                    continue
                while target and target not in paths and "." in target:
                    target = target.rsplit(".", 1)[0]  # import a.b.c where only a.b is ours
                if (target == top or target.startswith(top + ".")) and target in paths and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_path_through(graph, sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_through(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component, for the failure message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    node = start
    while True:
        nxt = next(n for n in sorted(graph[node]) if n in members and (n == start or n not in seen)
                   ) if any(n in members and (n == start or n not in seen) for n in graph[node]) else None
        if nxt is None or nxt == start:
            return path + [start]
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


# --- the rules, on the real tree --------------------------------------------------------------------

def test_the_exporter_package_has_no_import_cycles():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # the walk found the package, not an empty directory
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_core_imports_only_the_core():
    graph = import_graph(PACKAGE)
    assert CORE <= set(graph)
    upward = {f"{module} imports {target} (line {line})"
              for module in CORE for target, line in graph[module].items() if target not in CORE}
    assert not upward, "the core must not depend on the layers above it:\n" + "\n".join(sorted(upward))


def test_the_simulator_depends_only_on_itself_and_the_plugin_registry():
    graph = import_graph(PACKAGE)
    outside = {f"{module} imports {target} (line {line})"
               for module, edges in graph.items() if module.startswith("exporter.simulator")
               for target, line in edges.items()
               if not target.startswith("exporter.simulator") and target != "exporter.plugins"}
    assert not outside, "\n".join(sorted(outside))


# --- the checker itself fails on a planted cycle ----------------------------------------------------

def test_a_planted_cycle_is_found_with_its_lines(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\n\n\ndef late():\n    from .c import f\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "d.py").write_text("from pkg import a\n")  # depends on the cycle, is not part of it
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b": 1}
    assert graph["pkg.sub.b"] == {"pkg.sub.c": 5}  # a function-level, relative import counts
    found = cycles(graph)
    assert found == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
    assert describe(graph, found[0]) == "pkg.a (line 1) -> pkg.sub.b (line 5) -> pkg.sub.c (line 3) -> pkg.a"


def test_a_cycle_planted_in_a_copy_of_the_real_package_fails_the_check(tmp_path):
    copy = tmp_path / "exporter"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not cycles(import_graph(copy))
    # The kind of shortcut the layout forbids: the health model reaching up into the HTTP app.
    book = copy / "book.py"
    book.write_text(book.read_text() + "\n\ndef _shortcut():\n    from exporter.web.app import create_app\n")
    found = cycles(import_graph(copy))
    assert found and any("exporter.book" in c and "exporter.web.app" in c for c in found), found
