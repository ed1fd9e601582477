"""The import rules between and inside the packages, read from the sources with :mod:`ast`.

- no two modules import each other, directly or around a longer circle (imports under
  ``if TYPE_CHECKING:`` do not count: they never run);
- ``contract`` imports neither ``backend`` nor ``simulator``; ``backend`` never imports
  ``simulator``.

Imports inside functions count: deferring an import hides a circle, it does not remove it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "backend", "simulator")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (its ``else`` still runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``name`` imports at run time."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule when there is one.
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    known = all_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports() -> None:
    """The parser finds real edges (so an empty result below means something)."""
    graph = import_graph()
    assert "contract.audio" in graph["backend.voice"]
    assert "backend.privacy.jobs" in graph["backend.privacy.export"]
    assert "contract.stream" in graph["simulator.fleet.device"]
    assert len(graph) > 70 and sum(map(len, graph.values())) > 300


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


CIRCLE_FREE = PACKAGES
"""The packages held to the rule; the simulator joins once its benchmarks' circle (bench,
bench_export, soak) is gone."""


@pytest.mark.parametrize("package", CIRCLE_FREE)
def test_no_two_modules_import_each_other(package: str) -> None:
    graph = import_graph()
    mine = [c for c in circles(graph) if any(m.split(".")[0] == package for m in c)]
    assert not mine, f"import circles: {mine}"


@pytest.mark.parametrize(("package", "forbidden"), [
    ("contract", ("backend", "simulator")),
    ("backend", ("simulator",)),
])
def test_the_direction_of_imports(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(f"{name} imports {dep}" for name, deps in import_graph().items()
                   if name.split(".")[0] == package
                   for dep in deps if dep.split(".")[0] in forbidden)
    assert not wrong, wrong
