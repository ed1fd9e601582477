"""overheard explore: invariants hold on the bare backend, faults are found and shrunk, guards
leave no escape, and the summary does not depend on jobs or shards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backend.faults import FAULTS, GUARDS
from backend.storage import db as store_db
from simulator.explore.campaign import TIMINGS, Options, Summary, explore, merge
from simulator.explore.errors import ExploreError
from simulator.explore.play import Outcome
from simulator.explore.pool import Pool, ProcessPool
from simulator.world import audio

pytestmark = pytest.mark.filterwarnings("ignore")


def _same(summary: Summary) -> dict:
    return {k: v for k, v in summary.to_dict().items() if k not in TIMINGS}


def test_bare_backend_holds_every_invariant(tmp_path: Path) -> None:
    s = explore(Options(11, 200, (), ()), tmp_path, jobs=2, mode="none")
    assert s.runs == 200
    assert s.violations == []


def test_all_faults_all_guards_no_escape(tmp_path: Path) -> None:
    s = explore(Options(12, 300, tuple(FAULTS), tuple(GUARDS)), tmp_path, jobs=2, mode="none")
    assert s.runs == 300
    # Every escape found so far is fixed and kept in tests/regressions/.
    assert s.violations == []


@pytest.mark.parametrize(("fault", "invariant", "budget"), [
    ("export.operator_swap", "no_foreign_data", 8),
    ("export.shared_staging", "no_foreign_data", 8),
    ("erasure.partial", "erasure_total", 8),
    ("delivery.unbound_link", "no_foreign_data", 8),
])
def test_fault_alone_is_found_and_shrunk(tmp_path: Path, fault: str, invariant: str,
                                         budget: int) -> None:
    s = explore(Options(2, budget, (fault,), ()), tmp_path, jobs=1, mode="none")
    first = s.runs_to_first_find[fault]
    assert first is not None and first <= budget
    hit = next(v for v in s.violations if v.invariant == invariant)
    assert hit.file is not None
    raw = tomllib.loads((tmp_path / hit.file).read_text())
    assert len(raw["household"]) <= 3
    assert len(raw["step"]) <= 8
    assert raw["expect"] == [{"invariant": invariant}]


def test_shrunk_file_replays_with_the_same_failure(tmp_path: Path) -> None:
    s = explore(Options(2, 2, ("erasure.partial",), ()), tmp_path / "x", jobs=1, mode="none")
    hit = next(v for v in s.violations if v.invariant == "erasure_total")
    assert hit.file is not None
    found = tmp_path / "x" / hit.file
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
    assert one.violations


def test_shards_merged_equal_the_unsharded_run(tmp_path: Path) -> None:
    opts = Options(6, 10, ("ingest.stale_binding",), ())
    whole = explore(opts, tmp_path / "whole", jobs=1, mode="none")
    explore(opts, tmp_path / "s1", jobs=1, shard=(1, 2), mode="none")
    explore(opts, tmp_path / "s2", jobs=1, shard=(2, 2), mode="none")
    merged = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    assert _same(merged) == _same(whole)
    assert (tmp_path / "merged" / "junit.xml").read_bytes() != b""
    assert json.loads((tmp_path / "merged" / "summary.json").read_text())["runs"] == 10


def test_a_run_gives_the_same_result_alone_among_others_and_after_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs in one process share the loaded code, the rendered voices and the schema
    # template, nothing else: the same scenario must come out the same however it is placed.
    audio._splice_voice.cache_clear()
    monkeypatch.setattr(store_db, "_SCHEMAS", {})
    target = (Options(2, 8, ("erasure.partial",), ()), 1)
    others = [(Options(12, 300, tuple(FAULTS), tuple(GUARDS)), i) for i in range(8)]

    async def main() -> tuple[Outcome, Outcome, Outcome]:
        pool = Pool()
        alone = await pool.play(target)
        among = await asyncio.gather(*(pool.play(w) for w in [*others[:4], target, *others[4:]]))
        after = await pool.play(target)
        return alone, among[4], after

    alone, among, after = asyncio.run(main())
    # a finding whose message names packages and counts: any leak between runs would show
    assert re.fullmatch(r"after h\d's completed erasure, \d+ of its transcripts remain in "
                        r"packages/pkg_[0-9a-f]+\.zip", alone.violated["erasure_total"])
    assert alone == among == after


def test_bench_explore_prints_rate_floor_ratio_and_agreement() -> None:
    # erasure.partial with seed 2 violates in runs 0 and 1: each floor process must exit 1.
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "bench", "explore", "--runs",
                           "3", "--floor-runs", "2", "--jobs", "1", "--seed", "2", "--faults",
                           "erasure.partial"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    explore_line, floor_line, ratio_line, load_line = proc.stdout.splitlines()
    assert re.fullmatch(r"explore: 3 generated scenarios, --jobs 1: [\d,]+ scenarios/min",
                        explore_line)
    assert floor_line.startswith("floor:   2 of them, one `overheard run --voice fast` process")
    assert floor_line.endswith("(exit codes agree with explore's verdicts: 2/2)")
    m = re.fullmatch(r"ratio:   ([\d.]+)× the floor", ratio_line)
    assert m is not None and float(m.group(1)) > 0
    assert load_line.startswith("load:    ")


def test_a_dead_worker_process_is_an_error_not_a_hang() -> None:
    opts = Options(1, 2, (), ())

    async def main() -> Outcome:
        async with ProcessPool(1) as pool:
            first = await pool.play((opts, 0))
            os.kill(pool.pids[0], signal.SIGKILL)
            with pytest.raises(ExploreError, match="worker process died"):
                await asyncio.wait_for(pool.play((opts, 1)), 60)
            with pytest.raises(ExploreError, match="worker process died"):
                await pool.play((opts, 1))  # and so is any later run, at once
        return first

    assert asyncio.run(main()).error is None
