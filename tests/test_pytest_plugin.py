"""The pytest plugin, run as a user runs it: pytest in a subprocess, on scenario folders and
on hand-written test files, with and without pytest-xdist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from simulator.scenario.model import bundled_dir, load_scenario

REPO = Path(__file__).resolve().parent.parent


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """pytest in a child process; ``-p no:cacheprovider`` keeps the folders clean."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def failing_scenario(folder: Path) -> Path:
    """The stale-binding fault with an expectation that it leaks nothing: fails."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (bundled_dir() / "ingest.stale_binding.toml").read_text(encoding="utf-8")
    text = text.replace('name = "ingest.stale_binding"', 'name = "resale-leaks"')
    text = text.split("[[expect]]")[0] + "[[expect]]\nno_leak = true\n[[expect]]\nart34 = true\n"
    path = folder / "resale-leaks.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_acceptance_pair_collects_and_passes() -> None:
    proc = pytest_run("fixtures/scenarios", "-k", "stale_binding", "-v", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ingest.stale_binding.toml::ingest.stale_binding PASSED" in proc.stdout
    assert "ingest.stale_binding-guarded.toml::ingest.stale_binding-guarded PASSED" in proc.stdout
    assert "2 passed, 24 deselected" in proc.stdout or "2 passed" in proc.stdout


def test_the_same_under_xdist_with_kept_run_folders(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = pytest_run(str(REPO / "fixtures" / "scenarios"), "-k", "stale_binding", "-n", "2",
                      "--overheard-out", str(out), "--overheard-seed", "9", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    for name in ("ingest.stale_binding", "ingest.stale_binding-guarded"):
        report = json.loads((out / name / "report.json").read_text())
        assert report["seed"] == 9 and report["verdict"] == "pass"


def test_every_scenario_file_is_collected_once_and_nothing_else(tmp_path: Path) -> None:
    proc = pytest_run("--collect-only", "-q", "fixtures", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    items = [line for line in proc.stdout.splitlines() if "::" in line]
    files = sorted(bundled_dir().glob("*.toml"))
    assert sorted(items) == sorted(f"fixtures/scenarios/{f.name}::{load_scenario(f).name}"
                                   for f in files)
    # the project's own run (testpaths = tests) collects no scenario file
    own = pytest_run("--collect-only", "-q", "tests/test_scenario.py", cwd=REPO)
    assert ".toml" not in own.stdout


def test_a_failing_item_names_the_expectation_and_the_report(tmp_path: Path) -> None:
    failing_scenario(tmp_path / "scenarios")
    out = tmp_path / "runs"
    proc = pytest_run("scenarios", "--overheard-out", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "scenario resale-leaks (seed 501) failed:" in proc.stdout
    assert "FAILED no_leak(True): " in proc.stdout
    assert "from buyer to seller" in proc.stdout
    assert "art34" not in proc.stdout.split("scenario resale-leaks")[1].split("report:")[0]
    report = out / "resale-leaks" / "report.html"
    assert f"report: {report.resolve()}" in proc.stdout and report.is_file()


def test_an_invalid_scenario_item_says_why(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('name = "bad"\n[[step]]\ndo = "teleport"\n')
    proc = pytest_run("bad.toml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "invalid scenario:" in proc.stdout and "unknown step kind 'teleport'" in proc.stdout


HAND_WRITTEN = '''
import pytest

from simulator.judge.report import RunResult
from simulator.scenario.model import Scenario, load_scenario


def test_admin_client_and_backend(overheard_backend, overheard_admin):
    acct = overheard_admin.create_account("Erika Muster", "erika@example.org", "de-DE")
    dev = overheard_admin.register_device(acct["account_id"], "G0TEST0001", "Echo Dot", "kitchen")
    assert dev["device_token"].startswith("dvt_")
    assert overheard_admin.url == overheard_backend.url
    assert (overheard_backend.data_dir / "overheard.db").is_file()


@pytest.mark.asyncio
async def test_admin_client_from_an_async_test(overheard_admin):
    assert (await_free := overheard_admin.healthz())["status"] == "ok", await_free


def test_world_builder(overheard_world):
    world = overheard_world([{"key": "family", "members": 3, "devices": 2}], seed=5,
                            background=2)
    assert [h.key for h in world.households][:1] == ["family"]
    assert len(world.households) == 3
    assert len(world.households[0].devices) == 2
    again = overheard_world([{"key": "family", "members": 3, "devices": 2}], seed=5,
                            background=2)
    assert world.households[0].holder == again.households[0].holder


def test_run_scenario_by_name_path_model_and_dict(run_scenario, tmp_path):
    by_name = run_scenario("ingest.stale_binding")
    assert isinstance(by_name, RunResult) and by_name.verdict == "pass"
    assert by_name.leaks and by_name.leaks[0].from_household == "buyer"
    model = load_scenario(FILE)
    assert run_scenario(model, seed=31).seed == 31
    raw = model.model_dump(by_alias=True)
    raw["expect"] = [{"no_leak": True}]
    failed = run_scenario(raw)
    assert failed.verdict == "fail"
    assert failed.expectations[0].passed is False


@pytest.fixture
def overheard_config(overheard_config):
    import dataclasses
    return dataclasses.replace(overheard_config, manual_review=("access",))


def test_overridden_config(overheard_admin):
    acct = overheard_admin.create_account("Max Muster", "max@example.org", "de-DE")
    req = overheard_admin.privacy_request("access", user_token=acct["user_token"])
    assert req.status == "pending"
'''


def test_fixtures_for_hand_written_tests_under_xdist(tmp_path: Path) -> None:
    """Under ``-n 2`` (the harder case: each worker its own backends and loops)."""
    source = HAND_WRITTEN.replace(
        "FILE", repr(str(bundled_dir() / "ingest.stale_binding.toml")))
    (tmp_path / "test_mine.py").write_text(source, encoding="utf-8")
    proc = pytest_run("-q", "-n", "2", "test_mine.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout
