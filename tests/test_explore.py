"""overheard explore: invariants hold on the bare backend, faults are found and shrunk, guards
leave no escape, and the summary does not depend on jobs or shards."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backend.faults import FAULTS, GUARDS
from simulator.explore.campaign import TIMINGS, Options, explore, merge

pytestmark = pytest.mark.filterwarnings("ignore")


def _same(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMINGS}


def test_bare_backend_holds_every_invariant(tmp_path: Path) -> None:
    s = explore(Options(11, 200, (), ()), tmp_path, jobs=2, mode="none")
    assert s["runs"] == 200
    assert s["violations"] == []


def test_all_faults_all_guards_no_escape(tmp_path: Path) -> None:
    s = explore(Options(12, 300, tuple(FAULTS), tuple(GUARDS)), tmp_path, jobs=2, mode="none")
    assert s["runs"] == 300
    # Every escape found so far is fixed and kept in tests/regressions/.
    assert s["violations"] == []


@pytest.mark.parametrize(("fault", "invariant", "budget"), [
    ("export.operator_swap", "no_foreign_data", 8),
    ("export.shared_staging", "no_foreign_data", 8),
    ("erasure.partial", "erasure_total", 8),
    ("delivery.unbound_link", "no_foreign_data", 8),
])
def test_fault_alone_is_found_and_shrunk(tmp_path: Path, fault: str, invariant: str,
                                         budget: int) -> None:
    s = explore(Options(2, budget, (fault,), ()), tmp_path, jobs=1, mode="none")
    first = s["runs_to_first_find"][fault]
    assert first is not None and first <= budget
    hit = next(v for v in s["violations"] if v["invariant"] == invariant)
    raw = tomllib.loads((tmp_path / hit["file"]).read_text())
    assert len(raw["household"]) <= 3
    assert len(raw["step"]) <= 8
    assert raw["expect"] == [{"invariant": invariant}]


def test_shrunk_file_replays_with_the_same_failure(tmp_path: Path) -> None:
    s = explore(Options(2, 2, ("erasure.partial",), ()), tmp_path / "x", jobs=1, mode="none")
    hit = next(v for v in s["violations"] if v["invariant"] == "erasure_total")
    found = tmp_path / "x" / hit["file"]
    message = tomllib.loads(found.read_text())["description"].split(": ", 1)[1]
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(found), "--out",
                           str(tmp_path / "replay"), "-q"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stdout


def test_same_summary_whatever_jobs(tmp_path: Path) -> None:
    opts = Options(5, 12, ("export.cache_key_collision",), ())
    one = explore(opts, tmp_path / "j1", jobs=1, mode="none")
    two = explore(opts, tmp_path / "j2", jobs=2, mode="none")
    assert _same(one) == _same(two)
    assert one["violations"]


def test_shards_merged_equal_the_unsharded_run(tmp_path: Path) -> None:
    opts = Options(6, 10, ("ingest.stale_binding",), ())
    whole = explore(opts, tmp_path / "whole", jobs=1, mode="none")
    explore(opts, tmp_path / "s1", jobs=1, shard=(1, 2), mode="none")
    explore(opts, tmp_path / "s2", jobs=1, shard=(2, 2), mode="none")
    merged = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    assert _same(merged) == _same(whole)
    assert (tmp_path / "merged" / "junit.xml").read_bytes() != b""
    assert json.loads((tmp_path / "merged" / "summary.json").read_text())["runs"] == 10
