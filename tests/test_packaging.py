"""The package as pip installs it: the wheel holds the scenarios, the templates and the entry
points; the scenarios are found through importlib.resources from an installed wheel and from
the editable install alike, from any working directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p.name for p in (REPO / "fixtures" / "scenarios").glob("*.toml"))


def python(*args: str, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the checkout stays clean)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("backend", "contract", "simulator"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    shutil.copytree(REPO / "fixtures" / "scenarios", src / "fixtures" / "scenarios",
                    ignore=ignore)
    proc = python("-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                  "--wheel-dir", str(base / "dist"), str(src), cwd=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (base / "dist").glob("overheard-*.whl")
    return built


def test_every_package_directory_is_listed_in_pyproject() -> None:
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for top in ("backend", "contract", "simulator")
               for p in (REPO / top).rglob("__init__.py")}
    assert set(listed) == on_disk | {"simulator.scenarios"}


def test_the_wheel_holds_scenarios_templates_and_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(z.read(n).decode() for n in names if n.endswith("METADATA"))
    assert {f"simulator/scenarios/{n}" for n in SCENARIOS} <= names
    assert "simulator/judge/templates/report.html" in names
    data = [p for d in ("backend/privacy/templates", "backend/web/templates", "backend/web/static",
                        "simulator/world/phrases")
            for p in (REPO / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert data and {p.relative_to(REPO).as_posix() for p in data} <= names
    assert not any(n.startswith(("tests/", "fixtures/")) for n in names)
    assert "overheard = simulator.cli:main" in entry_points
    assert "[pytest11]\noverheard = simulator.pytest_plugin" in entry_points
    assert "Requires-Dist: audioop-lts>=0.2.1; python_version >= \"3.13\"" in metadata


def test_the_installed_wheel_finds_its_scenarios_from_any_folder(wheel: Path,
                                                                 tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = python("-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                  "--target", str(target), str(wheel), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("from simulator.scenario.model import bundled_dir, bundled_scenario; "
            "print(bundled_dir()); print(bundled_scenario('alexa-2018-misdelivery'))")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    found = python("-c", code, cwd=elsewhere, env=env)
    assert found.returncode == 0, found.stderr
    where, alexa = found.stdout.splitlines()
    assert where == str(target / "simulator" / "scenarios")
    assert alexa == str(target / "simulator" / "scenarios" / "alexa-2018-misdelivery.toml")
    listed = python("-m", "simulator.cli", "scenarios", cwd=elsewhere, env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(
        n.removesuffix(".toml") for n in SCENARIOS)


def test_the_editable_install_finds_the_checkouts_scenarios(tmp_path: Path) -> None:
    code = ("import importlib.resources as r; "
            "print(sorted(p.name for p in r.files('simulator.scenarios').iterdir() "
            "if p.name.endswith('.toml')))")
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(SCENARIOS)
    run = python("-m", "simulator.cli", "run", "ingest.stale_binding", "--out", "o",
                 "--progress", "none", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "o" / "report.html").is_file()


def _make(tmp_path: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    return subprocess.run(["make", "--no-print-directory", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": path, "HOME": str(tmp_path)})


def test_the_makefile_picks_the_newest_python_that_runs(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a version manager's shim for a version it does not provide: found, but fails
    (bin_dir / "python3.13").write_text("#!/bin/sh\necho 'python3.13: command not found' >&2\n"
                                        "exit 127\n")
    (bin_dir / "python3.12").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    proc = _make(tmp_path, "-n", "-p", "demo", path=f"{bin_dir}:/usr/bin:/bin")
    assert f"PYTHON := {bin_dir}/python3.12" in proc.stdout.splitlines()


def test_the_makefile_names_the_versions_it_needs(tmp_path: Path) -> None:
    proc = _make(tmp_path, "demo", "SUPPORTED=python3.99 python3.98", path="/usr/bin:/bin")
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "need Python 3.11, 3.12 or 3.13: none of python3.99 python3.98 on the PATH is one "
        "(or run: make PYTHON=/path/to/python3.x ...)")
    old = _make(tmp_path, "demo", f"PYTHON={sys.executable}-missing", path="/usr/bin:/bin")
    assert old.returncode == 2 and "need Python 3.11, 3.12 or 3.13;" in old.stdout
    assert not (tmp_path / ".venv").exists()
