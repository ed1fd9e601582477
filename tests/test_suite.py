"""``overheard run PATH... [--jobs N] [-k PATTERN]``: folders, several files, one combined
junit.xml, a summary table, exit 0/1/2; real subprocesses, real scenario runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from simulator.scenario.model import bundled_dir, load_scenario
from simulator.scenario.suite import SuiteError, is_scenario_file, matches, plan, scenario_files

REPO = Path(__file__).resolve().parent.parent


def overheard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def suites(junit: Path) -> dict[str, ET.Element]:
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    return {s.get("name", ""): s for s in root.iter("testsuite")}


def own_scenarios(folder: Path) -> Path:
    """Three scenarios written here, not bundled ones: one passes (the stale-binding fault
    on another seed), one fails (it expects the fault to leak nothing), one is invalid."""
    folder.mkdir()
    text = (bundled_dir() / "ingest.stale_binding.toml").read_text(encoding="utf-8")
    base = load_scenario(bundled_dir() / "ingest.stale_binding.toml")
    passing = text.replace(f'name = "{base.name}"', 'name = "resale-passes"') \
                  .replace(f"seed = {base.seed}", "seed = 4242")
    assert passing != text and "resale-passes" in passing
    (folder / "resale-passes.toml").write_text(passing, encoding="utf-8")
    failing = passing.replace('name = "resale-passes"', 'name = "resale-fails"')
    failing = failing.split("[[expect]]")[0] + "[[expect]]\nno_leak = true\n"
    (folder / "resale-fails.toml").write_text(failing, encoding="utf-8")
    (folder / "broken.toml").write_text('name = "broken"\nseed = 1\nbogus = 2\n'
                                        '[[step]]\ndo = "wait"\n', encoding="utf-8")
    (folder / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    (folder / "notes.toml").write_text('title = "not a scenario"\n', encoding="utf-8")
    return folder


@pytest.mark.slow
def test_the_bundled_folder_runs_in_parallel_into_one_junit(tmp_path: Path) -> None:
    proc = overheard("run", str(REPO / "fixtures" / "scenarios"), "--jobs", "2",
                     "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(bundled_dir().glob("*.toml"))
    scenarios = [load_scenario(f) for f in files]
    by_name = suites(tmp_path / "runs" / "junit.xml")
    assert set(by_name) == {f"overheard.{s.name}" for s in scenarios}
    for s in scenarios:
        cases = by_name[f"overheard.{s.name}"].findall("testcase")
        assert [c.get("name") for c in cases] == [e.describe() for e in s.expect], s.name
        assert not any(c.find("failure") is not None or c.find("error") is not None
                       for c in cases)
        assert (tmp_path / "runs" / s.name / "report.html").is_file()
    root = ET.parse(tmp_path / "runs" / "junit.xml").getroot()
    assert int(root.get("tests", "0")) == sum(len(s.expect) for s in scenarios)
    # the summary table: one row per scenario, then the totals
    for s in scenarios:
        assert any(line.startswith(s.name + " ") and " PASS " in line
                   for line in proc.stdout.splitlines()), s.name
    assert f"{len(files)} scenarios: {len(files)} passed, 0 failed" in proc.stdout


def test_own_folder_exit_codes_junit_and_k(tmp_path: Path) -> None:
    folder = own_scenarios(tmp_path / "mine")
    everything = overheard("run", str(folder), "--jobs", "2", "--out", str(tmp_path / "all"),
                           cwd=tmp_path)
    assert everything.returncode == 2, everything.stdout + everything.stderr
    by_name = suites(tmp_path / "all" / "junit.xml")
    # pyproject.toml and a TOML file without steps are not scenarios
    assert set(by_name) == {"overheard.resale-passes", "overheard.resale-fails",
                            "overheard.broken"}
    broken = by_name["overheard.broken"].find("testcase/error")
    assert broken is not None and "bogus: unknown key" in (broken.text or "")
    failed = by_name["overheard.resale-fails"].find("testcase/failure")
    assert failed is not None and "from" in (failed.text or "")
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert {r["scenario"]: r["verdict"] for r in summary["runs"]} == {
        "broken": "unknown", "resale-fails": "fail", "resale-passes": "pass"}
    assert "resale-fails" in everything.stdout and "FAIL" in everything.stdout

    some = overheard("run", str(folder), "-k", "resale", "--out", str(tmp_path / "some"),
                     cwd=tmp_path)
    assert some.returncode == 1, some.stdout + some.stderr
    assert set(suites(tmp_path / "some" / "junit.xml")) == {"overheard.resale-passes",
                                                            "overheard.resale-fails"}
    one = overheard("run", str(folder), "-k", "*-passes", "--out", str(tmp_path / "one"),
                    cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    report = json.loads((tmp_path / "one" / "resale-passes" / "report.json").read_text())
    assert report["seed"] == 4242 and report["verdict"] == "pass"
    log = (tmp_path / "one" / "resale-passes" / "overheard.log").read_text()
    assert "PASS  resale-passes" in log


def test_several_files_and_a_bundled_name_from_another_folder(tmp_path: Path) -> None:
    folder = own_scenarios(tmp_path / "mine")
    proc = overheard("run", str(folder / "resale-passes.toml"), "ingest.stale_binding-guarded",
                     "--seed", "77", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("resale-passes", "ingest.stale_binding-guarded"):
        report = json.loads((tmp_path / "runs" / name / "report.json").read_text())
        assert report["seed"] == 77 and report["verdict"] == "pass"
    assert (tmp_path / "runs" / "junit.xml").is_file()


def test_nothing_to_run_is_exit_2(tmp_path: Path) -> None:
    missing = overheard("run", str(tmp_path / "nowhere"), str(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nowhere: no such file or folder" in missing.stderr
    unmatched = overheard("run", str(REPO / "fixtures" / "scenarios"), "-k", "zzz-none",
                          cwd=tmp_path)
    assert unmatched.returncode == 2 and "matches -k 'zzz-none'" in unmatched.stderr
    assert not (tmp_path / "runs").exists()


def test_two_files_with_one_scenario_name_are_refused(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(bundled_dir() / "baseline-clean.toml", tmp_path / sub / "clean.toml")
    with pytest.raises(SuiteError, match="two scenarios are called 'baseline-clean'"):
        plan([tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def test_the_same_file_twice_runs_once(tmp_path: Path) -> None:
    f = bundled_dir() / "baseline-clean.toml"
    assert scenario_files([f, bundled_dir(), Path("baseline-clean")]).count(f) == 1


@pytest.mark.parametrize(("pattern", "names", "hit"), [
    ("stale", ("ingest.stale_binding", "x"), True),
    ("STALE", ("ingest.stale_binding", "x"), True),
    ("guarded", ("export.operator_swap", "export.operator_swap"), False),
    ("*-guarded", ("export.operator_swap-guarded", "f"), True),
    ("export.*", ("ingest.stale_binding", "ingest.stale_binding"), False),
    ("swap, stale", ("ingest.stale_binding", "f"), True),
    (None, ("anything",), True),
])
def test_k_patterns(pattern: str | None, names: tuple[str, ...], hit: bool) -> None:
    assert matches(pattern, *names) is hit


def test_what_counts_as_a_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[[step]]\ndo = "wait"\n')
    (tmp_path / "config.toml").write_text('manual_review = ["access"]\n')
    (tmp_path / "half.toml").write_text('name = "x"\n[[step]]\ndo = \n')
    (tmp_path / "s.toml").write_text('name = "s"\n[[expect]]\nno_leak = true\n')
    found = {p.name for p in tmp_path.iterdir() if is_scenario_file(p)}
    assert found == {"half.toml", "s.toml"}
