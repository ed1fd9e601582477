"""The fault catalogue: every fault reproduces under its bundled scenario, its guard stops it.

Each fault in :data:`backend.faults.FAULTS` has ``fixtures/scenarios/<fault>.toml`` (the
auditor finds the leak, or for ``erasure.partial`` the data left behind) and
``<fault>-guarded.toml`` (the same world with the counterpart guard on: no leak, and the
guard's alert). The scenarios run in-process through :func:`simulator.scenario.runner.run_scenario`
against an embedded backend; the alerts are read back from the run's own data dir.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest

from backend.faults import FAULTS, GUARDS
from simulator.judge.audit import Leak
from simulator.judge.report import RunResult
from simulator.scenario.model import Scenario, bundled_dir, load_scenario
from simulator.scenario.runner import run_scenario

SCENARIOS = bundled_dir()


def pair(fault: str) -> tuple[Path, Path]:
    return SCENARIOS / f"{fault}.toml", SCENARIOS / f"{fault}-guarded.toml"


def leaks(result: RunResult) -> list[Leak]:
    return [lk for p in result.packages for lk in p.leaks]


def failed(result: RunResult) -> list[str]:
    return [f"{e.name}: {e.detail}" for e in result.expectations if not e.passed]


def alerts(out: Path) -> list[dict[str, Any]]:
    """The guard alerts the run's embedded backend recorded (read-only, after the run)."""
    db = sqlite3.connect(f"file:{out / 'backend-data' / 'overheard.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT guard, summary, detail FROM alerts ORDER BY at, alert_id")
        return [{"guard": g, "summary": s, "detail": json.loads(d)} for g, s, d in rows]
    finally:
        db.close()


def kinds(s: Scenario) -> set[str]:
    return {e.kind for e in s.expect}


async def play(path: Path, out: Path) -> RunResult:
    return await run_scenario(load_scenario(path), out, progress=False)


# -- the registry and the bundled files ----------------------------------------------------

def test_every_fault_has_a_doc_a_guard_and_a_scenario_pair() -> None:
    assert len(FAULTS) >= 11
    for name, spec in FAULTS.items():
        assert len(spec.doc) > 80, f"{name}: the docstring says too little"
        assert spec.where and spec.summary, name
        assert spec.counterpart and set(spec.counterpart) <= set(GUARDS), name
        plain, guarded = pair(name)
        assert plain.exists() and guarded.exists(), f"{name}: no scenario pair in {SCENARIOS}"
        s, g = load_scenario(plain), load_scenario(guarded)
        assert name in s.faults and not s.guards, f"{plain.name} must switch on only the fault"
        assert name in g.faults, f"{guarded.name} must switch on the fault too"
        assert set(g.guards) & set(spec.counterpart), f"{guarded.name} needs {spec.counterpart}"
        # The reproducing run states what the auditor finds; the guarded run what stopped it.
        assert kinds(s) & {"leak", "remains"}, plain.name
        assert kinds(g) & {"no_leak", "erased"}, guarded.name
        assert {e.alert.guard for e in g.expect if e.alert} & set(spec.counterpart), guarded.name


def test_every_guard_is_documented_stops_a_fault_and_is_exercised() -> None:
    exercised = {e.alert.guard for f in FAULTS for e in load_scenario(pair(f)[1]).expect
                 if e.alert}
    for name, spec in GUARDS.items():
        assert len(spec.doc) > 80, f"{name}: the docstring says too little"
        assert spec.counterpart, f"{name} stops no fault"
        assert name in exercised, f"no guarded scenario expects an alert from {name}"


# -- every pair, played ----------------------------------------------------------------------

@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_fault_reproduces(fault: str, tmp_path: Path) -> None:
    result = await play(pair(fault)[0], tmp_path)
    assert result.verdict == "pass", failed(result)
    if fault == "erasure.partial":
        # No one else's data moves; the observable is what the erasure left behind.
        remains = next(e for e in result.expectations if e.name.startswith("remains("))
        assert remains.passed and "packages/" in remains.detail
        return
    found = leaks(result)
    assert found and all(lk.recordings > 0 for lk in found)
    assert all(lk.from_household != lk.to_household for lk in found)
    assert not [a for a in alerts(tmp_path) if a["guard"] in FAULTS[fault].counterpart]


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_guard_stops_fault(fault: str, tmp_path: Path) -> None:
    result = await play(pair(fault)[1], tmp_path)
    assert result.verdict == "pass", failed(result)
    assert leaks(result) == []
    raised = [a for a in alerts(tmp_path) if a["guard"] in FAULTS[fault].counterpart]
    assert raised, f"no alert from {FAULTS[fault].counterpart}"
    for a in raised:  # enough to act on: what happened, and ids to find it by
        assert a["summary"] and a["detail"], a


# -- the race, reproduced by construction -----------------------------------------------------

def wav_names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as z:
        return sorted(n for n in z.namelist() if n.endswith(".wav"))


async def test_shared_staging_mixes_the_same_way_every_run(tmp_path: Path) -> None:
    plain = pair("export.shared_staging")[0]
    first = await play(plain, tmp_path / "a")
    second = await play(plain, tmp_path / "b")
    for run in (first, second):
        assert {(lk.from_household, lk.to_household, lk.recordings)
                for lk in leaks(run)} == {("bernd", "anna", 30), ("anna", "bernd", 24)}
    for name in ("anna-1.zip", "bernd-1.zip"):
        a = wav_names(tmp_path / "a" / "packages" / name)
        assert len(a) == 54
        assert a == wav_names(tmp_path / "b" / "packages" / name)
    # The staged files are cleaned up once every job of the batch has zipped.
    staging = tmp_path / "a" / "backend-data" / "staging"
    assert [p for p in staging.rglob("*") if p.is_file()] == []


# -- the clean baseline at scale ----------------------------------------------------------------

async def test_clean_baseline_at_scale(tmp_path: Path) -> None:
    """No faults: 50 requests open at once over 200 households; every package is complete.

    The runner files the 50 requests one after the other, but they all wait in review
    together and one operator pass releases them back to back into 4 export workers.
    """
    s = load_scenario(SCENARIOS / "baseline-scale.toml")
    assert not s.faults and not s.guards
    assert s.world.background_households + len(s.household) == 200
    result = await run_scenario(s, tmp_path, progress=False)
    assert result.verdict == "pass", failed(result)
    assert len(result.packages) == 50
    for p in result.packages:
        assert p.foreign == {} and p.missing == 0 and p.corrupt == 0, p
        assert 3 <= p.own <= 6
    assert leaks(result) == []
    assert alerts(tmp_path) == []
