"""``overheard bench explore``: generated scenarios per minute, next to the floor.

The rate is a real campaign's (:func:`simulator.explore.campaign.explore`, its playing
time; nothing is shrunk). The floor plays the first of the same scenarios the simplest way: each written to a
file and run by its own ``overheard run`` process (a fresh interpreter, fresh imports, a
fresh world and backend, with the same fast voice), ``jobs`` processes at a time. Each
floor run's exit code must agree with the campaign's verdict on that run (0 held, 1
violated, 2 undecided): the two did the same work. The machine's load average is part of
the result: on a shared machine both figures are upper bounds of the time it takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from simulator.explore.campaign import Options, Summary, explore
from simulator.explore.play import scratch_root
from simulator.explore.runs import scenario_for


@dataclass(frozen=True)
class ExploreBench:
    """What ``bench explore`` measured."""

    runs: int
    jobs: int
    rate: float
    """Generated scenarios per minute, in-process."""
    floor_runs: int
    floor: float
    """Scenarios per minute, one ``overheard run`` process each."""
    agree: int
    """Floor runs whose exit code matches the campaign's verdict on that run."""
    load: tuple[float, float]
    """1-minute load average before and after."""

    @property
    def ratio(self) -> float:
        return self.rate / self.floor

    def lines(self) -> list[str]:
        return [
            f"explore: {self.runs} generated scenarios, --jobs {self.jobs}: "
            f"{self.rate:,.0f} scenarios/min",
            f"floor:   {self.floor_runs} of them, one `overheard run --voice fast` process "
            f"each, {self.jobs} at a time: {self.floor:,.0f} scenarios/min "
            f"(exit codes agree with explore's verdicts: {self.agree}/{self.floor_runs})",
            f"ratio:   {self.ratio:.1f}× the floor",
            f"load:    {self.load[0]:.2f} before, {self.load[1]:.2f} after (1-minute load "
            f"average, {os.cpu_count()} cores; figures under load are upper bounds)",
        ]


def _expected_exit(summary: Summary, index: int) -> int:
    if any(v.index == index for v in summary.violations):
        return 1
    return 2 if any(u.index == index for u in summary.undecided) else 0


def _run_process(path: Path) -> int:
    return subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(path), "--out",
                           str(path.with_suffix("")), "--voice", "fast", "-q"],
                          capture_output=True).returncode


def bench_explore(opts: Options, floor_runs: int, jobs: int) -> ExploreBench:
    """Play ``opts`` as a campaign, then its first ``floor_runs`` runs one process each."""
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-explore-", dir=scratch_root()) as tmp:
        summary = explore(opts, Path(tmp) / "explore", jobs=jobs, mode="none", shrinking=False)
        files = []
        for i in range(min(floor_runs, opts.runs)):
            f = Path(tmp) / f"run-{i}.toml"
            f.write_text(tomli_w.dumps(scenario_for(opts, i)), encoding="utf-8")
            files.append(f)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            codes = list(pool.map(_run_process, files))
        floor = 60 * len(files) / (time.perf_counter() - t0)
    agree = sum(1 for i, code in enumerate(codes) if code == _expected_exit(summary, i))
    rate = summary.scenarios_per_minute or 0.0
    return ExploreBench(opts.runs, jobs, rate, len(files), floor, agree,
                        (load0, os.getloadavg()[0]))
