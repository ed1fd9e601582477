"""The rooms' import rules (ARCHITECTURE.md), checked by parsing every module with ``ast``.

No two modules import each other (except under ``TYPE_CHECKING``), click is imported only in
``simulator/cli/``, ``backend/`` never imports ``simulator/``, and each simulator room imports
only the rooms its rule allows.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOPS = ("backend", "contract", "simulator")

# What each simulator room may import, besides the standard library and third-party packages
# (prefixes of module names). The rules are ARCHITECTURE.md's.
ALLOWED: dict[str, tuple[str, ...]] = {
    "world": ("simulator.world", "contract"),
    "fleet": ("simulator.world", "simulator.fleet", "contract", "backend"),
    "judge": ("simulator.judge", "simulator.world", "simulator.fleet.ledger", "contract"),
    "scenario": ("simulator.world", "simulator.fleet", "simulator.judge", "simulator.scenario",
                 "contract", "backend"),
    "bench": ("simulator.world", "simulator.fleet", "simulator.judge", "simulator.bench",
              "contract", "backend"),
    "explore": ("simulator.world", "simulator.fleet", "simulator.judge", "simulator.scenario",
                "simulator.explore", "contract", "backend"),
    "cli": TOPS,
    "pytest_plugin": ("simulator.world", "simulator.fleet", "simulator.judge",
                      "simulator.scenario", "contract", "backend"),
    "__init__": (),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in TOPS if (REPO / top).is_dir()
            for p in sorted((REPO / top).rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (at any depth of the file, not under TYPE_CHECKING),
    with its line; ``from pkg import mod`` names ``pkg.mod`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    yield f"{node.module}.{alias.name}", node.lineno


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {name: {target: line for target, line in imported(path, known) if target in known}
            for name, path in known.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_checker_sees_the_rooms() -> None:
    names = modules()
    assert "simulator.cli" in names and "simulator.judge.audit" in names
    edges = graph()
    # a known edge, so that an empty graph cannot pass the tests below
    assert "simulator.fleet.ledger" in edges["simulator.judge.audit"]


def test_no_two_simulator_modules_import_each_other() -> None:
    edges = graph()
    circles = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets
                     if a < b and a in edges.get(b, {}) and a.split(".")[0] == "simulator")
    assert circles == []


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    one, two = tmp_path / "one.py", tmp_path / "two.py"
    one.write_text("from typing import TYPE_CHECKING\nimport two\n"
                   "if TYPE_CHECKING:\n    import three\n", encoding="utf-8")
    two.write_text("def f() -> None:\n    import one\n", encoding="utf-8")
    known = {"one": one, "two": two, "three": one}
    assert {t for t, _ in imported(one, known)} == {"typing", "two"}
    assert {t for t, _ in imported(two, known)} == {"one"}


def test_click_only_in_the_cli() -> None:
    known = modules()
    outside = [f"{name}:{line}" for name, path in known.items()
               if not (name == "simulator.cli" or name.startswith("simulator.cli."))
               for target, line in imported(path, known) if target.split(".")[0] == "click"]
    assert outside == []


def test_backend_never_imports_the_simulator() -> None:
    known = modules()
    bad = [f"{name}:{line} {target}" for name, path in known.items()
           if name.split(".")[0] in ("backend", "contract")
           for target, line in imported(path, known) if target.split(".")[0] == "simulator"]
    assert bad == []


def test_contract_imports_neither_side() -> None:
    known = modules()
    bad = [f"{name}:{line} {target}" for name, path in known.items()
           if name.split(".")[0] == "contract"
           for target, line in imported(path, known)
           if target.split(".")[0] in ("backend", "simulator")]
    assert bad == []


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_each_room_imports_only_what_its_rule_allows(name: str) -> None:
    known = modules()
    allowed = ALLOWED[name]
    bad = []
    for module, path in known.items():
        if module.split(".")[0] != "simulator" or room(module) != name:
            continue
        for target, line in imported(path, known):
            if target.split(".")[0] not in TOPS:
                continue  # the standard library and third-party packages
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.append(f"{module}:{line} imports {target}")
    assert bad == []


def test_every_simulator_room_has_a_rule() -> None:
    rooms = {room(m) for m in modules() if m.split(".")[0] == "simulator"}
    assert rooms <= set(ALLOWED)
