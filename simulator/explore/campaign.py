"""A campaign: many generated runs, sharded and spread over worker processes, then the
violations shrunk and written out.

Which runs a campaign has is decided in :mod:`simulator.explore.runs`; where they are
played, in :mod:`simulator.explore.pool`: in this process, or in ``jobs`` worker processes
that take runs as they have room, :data:`CONCURRENCY` in flight in each, against fresh
embedded backends. Results are keyed by index, and the first violating run of each
(invariant, faults) pair is shrunk, the pairs side by side on the same pool, each shrink
the one-at-a-time search's answer; so the summary is the same whatever ``jobs`` is, and
merging the shards gives the unsharded summary.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from simulator.explore.errors import ExploreError
from simulator.explore.pool import CONCURRENCY, Pool, ProcessPool
from simulator.explore.runs import Options, draw_faults, run_seed, scenario_for, shard_indices
from simulator.explore.shrinker import shrink
from simulator.fleet.progress import Counter, ProgressMode
from simulator.scenario.invariants import NAMES

__all__ = ["CONCURRENCY", "TIMINGS", "Options", "Summary", "Violation", "explore", "merge",
           "names", "parse_shard", "scenario_for"]

TIMINGS = ("scenarios_per_minute", "elapsed_seconds")
"""Summary keys that depend on the machine, not on the seed and options."""


@dataclass(frozen=True)
class RunRecord:
    """What one generated run showed."""

    index: int
    violated: dict[str, str]
    """invariant -> what broke it."""
    error: str | None


@dataclass
class Violation:
    """One invariant one run broke, and the shrunk file that replays it."""

    index: int
    invariant: str
    seed: int
    faults: list[str]
    message: str
    file: str | None = None
    """``found/<invariant>-<seed>.toml``: this run's shrunk file, or the first of its
    (invariant, faults) pair's."""

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.invariant, tuple(self.faults)


@dataclass(frozen=True)
class Undecided:
    """A run that could not decide (the backend or the run failed, not an invariant)."""

    index: int
    seed: int
    error: str


@dataclass
class Summary:
    """What a campaign (or one shard) found; ``summary.json`` is :meth:`to_dict`."""

    campaign: Options
    shard: str
    runs: int
    violations: list[Violation]
    per_invariant: dict[str, int]
    runs_to_first_find: dict[str, int | None]
    """fault -> the 1-based run that first broke an invariant with it on (None: none did)."""
    scenarios_per_minute: float | None
    elapsed_seconds: float
    undecided: list[Undecided] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["campaign"] = self.campaign.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        """A summary.json read back (a shard's, for :func:`merge`)."""
        c = d["campaign"]
        return cls(
            campaign=Options(c["seed"], c["runs"], tuple(c["faults"]), tuple(c["guards"])),
            shard=d["shard"], runs=d["runs"],
            violations=[Violation(**v) for v in d["violations"]],
            per_invariant=d["per_invariant"], runs_to_first_find=d["runs_to_first_find"],
            scenarios_per_minute=d["scenarios_per_minute"],
            elapsed_seconds=d["elapsed_seconds"],
            undecided=[Undecided(**u) for u in d.get("undecided", [])])


def names(value: str, table: dict[str, Any], what: str) -> tuple[str, ...]:
    """``none``, ``all`` or comma-separated names of ``table``."""
    if value == "none":
        return ()
    if value == "all":
        return tuple(table)
    got = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in got if v not in table]
    if unknown or not got:
        raise ExploreError(f"--{what}: unknown {what[:-1]} {', '.join(unknown) or value!r} "
                           f"(known: none, all, {', '.join(table)})")
    return got


def parse_shard(value: str) -> tuple[int, int]:
    """``I/N`` → (I, N), 1 ≤ I ≤ N."""
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise ExploreError(f"--shard: expected I/N (e.g. 1/4), got {value!r}") from None
    if not 1 <= i <= n:
        raise ExploreError(f"--shard: need 1 ≤ I ≤ N, got {value!r}")
    return i, n


def make_pool(jobs: int) -> Pool:
    """This process for one job, worker processes for more."""
    return Pool() if jobs == 1 else ProcessPool(jobs)


async def play_runs(opts: Options, indices: list[int], pool: Pool,
                    counter: Counter) -> dict[int, RunRecord]:
    """Play ``indices`` on ``pool``; results by index."""
    results: dict[int, RunRecord] = {}
    todo = iter(indices)
    violations = 0

    async def feed() -> None:
        # A few feeders per slot keep every worker busy without queueing the whole campaign.
        nonlocal violations
        for index in todo:
            outcome = await pool.play((opts, index))
            results[index] = RunRecord(index, outcome.violated, outcome.error)
            violations += len(outcome.violated)
            counter.update()
            counter.set_postfix(violations=violations)

    await asyncio.gather(*(feed() for _ in range(pool.slots + 1)))
    return results


def _violations(opts: Options, results: dict[int, RunRecord]) -> list[Violation]:
    out = []
    for index in sorted(results):
        r = results[index]
        for invariant in NAMES:
            if invariant in r.violated:
                out.append(Violation(index, invariant, run_seed(opts.seed, index),
                                     draw_faults(opts, index), r.violated[invariant]))
    return out


async def _shrink_all(opts: Options, violations: list[Violation], out: Path,
                      pool: Pool, counter: Counter) -> None:
    """Shrink the first violation of each (invariant, faults), all side by side on ``pool``;
    the later violations of a pair point at its file."""
    firsts: dict[tuple[str, tuple[str, ...]], Violation] = {}
    for v in violations:
        firsts.setdefault(v.key, v)
    shrunk = await asyncio.gather(*(
        shrink(scenario_for(opts, v.index), v.invariant, player=pool.play,
               window=pool.slots)
        for v in firsts.values()))
    files: dict[tuple[str, tuple[str, ...]], str] = {}
    for (k, v), (raw, message) in zip(firsts.items(), shrunk, strict=True):
        name = f"{v.invariant}-{v.seed}.toml"
        raw["description"] = (f"found by overheard explore --seed {opts.seed} (run "
                              f"{v.index}), shrunk; fails {v.invariant}: {message}")
        (out / "found").mkdir(parents=True, exist_ok=True)
        (out / "found" / name).write_text(tomli_w.dumps(raw), encoding="utf-8")
        files[k] = f"found/{name}"
        counter.write(f"  {v.invariant} (faults: {', '.join(v.faults) or 'none'}): "
                      f"{files[k]}")
    for v in violations:
        v.file = files[v.key]


def summarise(opts: Options, runs: int, violations: list[Violation], elapsed: float,
              shard: str) -> Summary:
    """The summary of ``runs`` played (timings in :data:`TIMINGS`)."""
    first: dict[str, int | None] = {f: None for f in opts.faults}
    for v in violations:
        for f in v.faults:
            if first.get(f) is None:
                first[f] = v.index + 1
    return Summary(
        campaign=opts, shard=shard, runs=runs,
        violations=sorted(violations, key=lambda v: (v.index, NAMES.index(v.invariant))),
        per_invariant={n: sum(1 for v in violations if v.invariant == n) for n in NAMES},
        runs_to_first_find=first,
        scenarios_per_minute=round(60 * runs / elapsed, 1) if elapsed > 0 else None,
        elapsed_seconds=round(elapsed, 2),
    )


def junit(summary: Summary) -> bytes:
    """One test case per invariant; a failure lists its violations."""
    suite = ET.Element("testsuite", name="overheard-explore", tests=str(len(NAMES)),
                       failures=str(sum(1 for n in NAMES if summary.per_invariant[n])))
    for name in NAMES:
        case = ET.SubElement(suite, "testcase", classname="explore", name=name)
        hits = [v for v in summary.violations if v.invariant == name]
        if hits:
            fail = ET.SubElement(case, "failure", message=f"{len(hits)} of {summary.runs} "
                                                          f"runs violate {name}")
            fail.text = "\n".join(f"run {v.index} seed {v.seed} faults "
                                  f"{','.join(v.faults) or 'none'}: {v.message} "
                                  f"({v.file})" for v in hits)
    ET.indent(suite)
    xml: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def write_summary(summary: Summary, out: Path) -> None:
    """summary.json and junit.xml: the only place the summary becomes JSON."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n",
                                      encoding="utf-8")
    (out / "junit.xml").write_bytes(junit(summary))


def explore(opts: Options, out: Path, *, jobs: int = 1, shard: tuple[int, int] = (1, 1),
            mode: ProgressMode = "plain", shrinking: bool = True) -> Summary:
    """Play a campaign (or one shard of it), shrink what it found (unless ``shrinking`` is
    off: then no violation has a file), write ``out``."""
    if (out / "found").exists():
        shutil.rmtree(out / "found")
    indices = shard_indices(opts.runs, shard)
    counter = Counter(len(indices), mode, desc="explore", unit="runs")
    try:
        results, violations, elapsed = asyncio.run(
            _campaign(opts, indices, jobs, out, counter, shrinking))
    finally:
        counter.close()
    summary = summarise(opts, len(indices), violations, elapsed, f"{shard[0]}/{shard[1]}")
    summary.undecided = [Undecided(i, run_seed(opts.seed, i), r.error)
                         for i, r in sorted(results.items()) if r.error]
    write_summary(summary, out)
    return summary


async def _campaign(opts: Options, indices: list[int], jobs: int, out: Path, counter: Counter,
                    shrinking: bool
                    ) -> tuple[dict[int, RunRecord], list[Violation], float]:
    """Play, then shrink, on one pool: (results by index, violations, seconds of playing)."""
    t0 = time.perf_counter()
    async with make_pool(jobs) as pool:
        results = await play_runs(opts, indices, pool, counter)
        elapsed = time.perf_counter() - t0
        missing = set(indices) - set(results)
        if missing:
            raise ExploreError(f"worker processes lost {len(missing)} run(s)")
        violations = _violations(opts, results)
        if shrinking:
            await _shrink_all(opts, violations, out, pool, counter)
    return results, violations, elapsed


def _read_shard(d: Path) -> Summary:
    try:
        return Summary.from_dict(json.loads((d / "summary.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExploreError(f"{d}/summary.json: cannot read a shard summary ({exc})") from None


def merge(dirs: list[Path], out: Path) -> Summary:
    """One summary, junit and found/ from shards of one campaign."""
    parts = [_read_shard(d) for d in dirs]
    if len({p.campaign for p in parts}) != 1:
        raise ExploreError("the shards come from different campaigns (seed, runs, faults or "
                           "guards differ)")
    opts = parts[0].campaign
    violations = sorted((v for p in parts for v in p.violations), key=lambda v: v.index)
    # Each (invariant, faults) keeps the file of its first violation over all shards.
    files: dict[tuple[str, tuple[str, ...]], str | None] = {}
    for v in violations:
        files.setdefault(v.key, v.file)
        v.file = files[v.key]
    keep = set(files.values())
    (out / "found").mkdir(parents=True, exist_ok=True)
    for d in dirs:
        for f in sorted((d / "found").glob("*.toml")):
            if f"found/{f.name}" in keep:
                shutil.copyfile(f, out / "found" / f.name)
    elapsed = max(p.elapsed_seconds for p in parts)
    summary = summarise(opts, sum(p.runs for p in parts), violations, elapsed, "1/1")
    summary.undecided = sorted((u for p in parts for u in p.undecided), key=lambda u: u.index)
    runs = summary.runs
    summary.scenarios_per_minute = round(sum(p.scenarios_per_minute or 0 for p in parts), 1)
    if runs != opts.runs:
        raise ExploreError(f"the shards hold {runs} runs, the campaign has {opts.runs}")
    write_summary(summary, out)
    return summary
