"""No import circles in the app or the sweeper, neither open nor hidden.

Read from the source with `ast`, not by importing: an import at a module's top level is an edge
of the graph that must stay acyclic; an import inside a function is allowed for what it is for
(Keras after the backend is chosen, a heavy module on first use), but not to reach a module that
imports this one, which is a circle moved out of sight.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = {
    "mnist_sweep": ROOT / "mnist_sweep",
    "hydra_plugins.optuna_mlflow_sweeper":
        ROOT / "plugins" / "optuna_mlflow_sweeper" / "hydra_plugins" / "optuna_mlflow_sweeper",
}
# Hidden circles allowed for now (none): (the importing module, the module it reaches)
TOLERATED: set[tuple[str, str]] = set()

Graph = dict[str, set[str]]


def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its __init__.py)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, path: Path, known: set[str]
             ) -> Iterator[str]:
    """The project modules an import statement runs (not their parent packages)."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                      for alias in node.names]
    for candidate in candidates:
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != name:
            yield candidate


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def graphs() -> tuple[Graph, Graph]:
    """(imports run when a module is imported, imports run inside its functions)."""
    found = modules()
    known = set(found)
    top: Graph = {name: set() for name in found}
    inner: Graph = {name: set() for name in found}

    def visit(node: ast.AST, name: str, path: Path, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # for type checkers only, never run
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top)[name].update(
                    _targets(child, name, path, known))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, name, path, in_function or nested)

    for name, path in found.items():
        visit(ast.parse(path.read_text(), str(path)), name, path, False)
    return top, inner


def reachable(graph: Graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def cycles(graph: Graph) -> list[list[str]]:
    """One path around each circle (each module on a circle starts at most one)."""
    found, reported = [], set()
    for start in sorted(graph):
        if start in reported or start not in reachable(graph, start):
            continue
        path, node = [start], start
        while True:  # follow an edge that leads back to start
            node = next(n for n in sorted(graph[node])
                        if n == start or start in reachable(graph, n))
            if node == start:
                break
            path.append(node)
        reported.update(path)
        found.append([*path, start])
    return found


def test_the_graph_sees_both_packages_and_their_imports():
    top, inner = graphs()
    assert top["mnist_sweep.reports.report"] >= {"mnist_sweep.reports.robustness",
                                                 "mnist_sweep.reports.studies"}
    assert "mnist_sweep.experiment" in inner["mnist_sweep.cli"]  # after the backend is chosen
    assert any(name.startswith("hydra_plugins.optuna_mlflow_sweeper._impl.") for name in top)


def test_cycles_finds_a_circle_and_only_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circle_at_module_level(package):
    top, _ = graphs()
    found = [c for c in cycles(top) if c[0].startswith(package)]
    assert not found, "import circles: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_circle_hidden_inside_a_function(package):
    top, inner = graphs()
    hidden = [(name, target) for name in sorted(inner) if name.startswith(package)
              for target in sorted(inner[name])
              if name in reachable(top, target) and (name, target) not in TOLERATED]
    assert not hidden, "imports inside functions that dodge a circle: " + "; ".join(
        f"{name} -> {target}" for name, target in hidden)
