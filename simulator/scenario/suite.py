"""Many scenario runs at once: ``overheard run PATH... [--jobs N] [-k PATTERN]``.

Paths are scenario files, folders (every ``*.toml`` scenario below them, in name order) or
names of bundled scenarios. Each run is its own process (``overheard run FILE --out
OUT/<scenario> --progress none``), at most ``--jobs`` at once, so one run cannot disturb
another and a crash costs one scenario, not the suite. Each run folder also keeps the run's
output in ``overheard.log``. ``OUT/junit.xml`` combines the runs' junit files (one testsuite
per scenario, one testcase per expectation); ``OUT/summary.json`` and the table printed at the
end say how each run went. Exit 0: every run passed; 1: one failed; 2: one could not run
(a bad file, a crash, a run that could not decide).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator.scenario.model import ScenarioError, bundled_scenario, load_scenario

EXIT_PASS, EXIT_FAIL, EXIT_UNKNOWN = 0, 1, 2
JOBS_HELP = "scenario runs at once, each in its own process"
NOT_SCENARIOS = frozenset({"pyproject.toml", "ruff.toml", ".ruff.toml", "pytest.toml",
                           ".pytest.toml", "setup.toml"})
"""TOML files in a folder that are configuration, not scenarios."""
SCENARIO_KEYS = frozenset({"step", "expect", "household", "world"})


class SuiteError(Exception):
    """The paths name nothing to run: a missing file or folder, or no scenario matched."""


@dataclass(frozen=True)
class Job:
    """One run: which file, with which seed, into which folder."""

    name: str
    path: Path
    out: Path
    seed: int | None = None
    problem: str = ""
    """Why it cannot run (the file is not a valid scenario); empty when it can."""


@dataclass(frozen=True)
class ReportDigest:
    """What a suite needs of a run's report.json (the run is a separate process)."""

    verdict: str
    held: int
    """Expectations that held."""
    expectations: int
    leaks: int

    @classmethod
    def read(cls, path: Path) -> ReportDigest | None:
        """The digest of the report.json at ``path``; None when there is none."""
        if not path.is_file():
            return None
        report = json.loads(path.read_text(encoding="utf-8"))
        ex = report.get("expectations", [])
        return cls(str(report.get("verdict", "unknown")), sum(1 for e in ex if e.get("passed")),
                   len(ex), len(report.get("leaks", [])))


@dataclass(frozen=True)
class Outcome:
    """How one job went."""

    job: Job
    exit_code: int
    seconds: float
    report: ReportDigest | None
    message: str = ""
    """What the run said on stderr when it could not decide."""

    @property
    def verdict(self) -> str:
        if self.report is not None and self.exit_code in (EXIT_PASS, EXIT_FAIL, EXIT_UNKNOWN):
            return self.report.verdict
        return {EXIT_PASS: "pass", EXIT_FAIL: "fail"}.get(self.exit_code, "unknown")

    @property
    def held(self) -> tuple[int, int]:
        """Expectations held, out of how many."""
        if self.report is None:
            return 0, 0
        return self.report.held, self.report.expectations


def is_scenario_file(path: Path) -> bool:
    """A ``*.toml`` that is not a known config file and reads like a scenario (has steps,
    expectations, households or a world), or that does not parse but says ``[[step]]``
    (a broken scenario must be reported, not skipped)."""
    if path.suffix != ".toml" or path.name in NOT_SCENARIOS or not path.is_file():
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return bool(SCENARIO_KEYS & set(tomllib.loads(text)))
    except tomllib.TOMLDecodeError:
        return "[[step]]" in text or "[[expect]]" in text


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    """The scenario files the paths name, folders expanded, each file once, in order."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.toml") if is_scenario_file(f))
        elif p.is_file():
            found.append(p)
        else:
            bundled = bundled_scenario(str(p))
            if bundled is None:
                raise SuiteError(f"{p}: no such file or folder, and no bundled scenario "
                                 f"of that name (overheard scenarios lists them)")
            found.append(bundled)
    seen: set[Path] = set()
    unique = []
    for f in found:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def matches(pattern: str | None, *names: str) -> bool:
    """``-k``: a case-insensitive substring of the scenario's name or file stem, or a glob
    (``*``, ``?``, ``[...]``); several alternatives separated by commas."""
    if not pattern:
        return True
    for alt in (a.strip().lower() for a in pattern.split(",") if a.strip()):
        glob = any(c in alt for c in "*?[")
        for name in (n.lower() for n in names):
            if (fnmatch.fnmatchcase(name, alt) if glob else alt in name):
                return True
    return False


def plan(paths: Sequence[Path], out: Path, *, seed: int | None = None,
         pattern: str | None = None) -> list[Job]:
    """One job per scenario file that ``pattern`` selects; each into ``out/<name>``.

    A file that is not a valid scenario still becomes a job (it is reported as could not
    run, with the loader's message). Two files with the same scenario name are refused.
    """
    jobs: list[Job] = []
    by_name: dict[str, Path] = {}
    for f in scenario_files(paths):
        try:
            name, problem = load_scenario(f).name, ""
        except ScenarioError as exc:
            name, problem = f.stem, str(exc)
        if not matches(pattern, name, f.stem):
            continue
        if name in by_name:
            raise SuiteError(f"two scenarios are called {name!r}: {by_name[name]} and {f}; "
                             f"their run folders would collide")
        by_name[name] = f
        jobs.append(Job(name, f, out / name, seed, problem))
    if not jobs:
        shown = ", ".join(str(p) for p in paths)
        raise SuiteError(f"no scenario in {shown}" + (f" matches -k {pattern!r}" if pattern else ""))
    return jobs


def child_command(job: Job, extra: Sequence[str] = ()) -> list[str]:
    """The ``overheard run`` that plays one job, quietly."""
    cmd = [sys.executable, "-m", "simulator.cli", "run", str(job.path), "--out", str(job.out),
           "--progress", "none"]
    if job.seed is not None:
        cmd += ["--seed", str(job.seed)]
    return cmd + list(extra)


async def _run_one(job: Job, extra: Sequence[str]) -> Outcome:
    if job.problem:
        return Outcome(job, EXIT_UNKNOWN, 0.0, None, job.problem)
    job.out.mkdir(parents=True, exist_ok=True)
    log_path = job.out / "overheard.log"
    report_path = job.out / "report.json"
    report_path.unlink(missing_ok=True)  # a stale report must not pass for this run's
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *child_command(job, extra), stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT)
        code = await proc.wait()
    seconds = time.perf_counter() - t0
    report = ReportDigest.read(report_path)
    message = ""
    if code not in (EXIT_PASS, EXIT_FAIL) or report is None:
        message = _tail(log_path.read_text(encoding="utf-8", errors="replace"))
    return Outcome(job, code, seconds, report, message)


def _tail(text: str, lines: int = 6) -> str:
    """The last lines a run printed (where its error is)."""
    return "\n".join(text.strip().splitlines()[-lines:])


async def run_jobs(jobs: Sequence[Job], n_jobs: int, *, extra: Sequence[str] = (),
                   on_done: Callable[[Outcome, int], None] | None = None) -> list[Outcome]:
    """Run ``jobs``, at most ``n_jobs`` at once; outcomes in the jobs' order.

    ``on_done(outcome, finished_so_far)`` is called as each one ends. ``extra`` arguments go
    to every child ``overheard run`` (e.g. ``--backend URL``)."""
    gate = asyncio.Semaphore(max(1, n_jobs))
    done = 0

    async def one(job: Job) -> Outcome:
        nonlocal done
        async with gate:
            outcome = await _run_one(job, extra)
        done += 1
        if on_done is not None:
            on_done(outcome, done)
        return outcome

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def exit_code(outcomes: Iterable[Outcome]) -> int:
    """2 if any run could not decide, else 1 if any failed, else 0."""
    codes = [o.exit_code for o in outcomes]
    if any(c not in (EXIT_PASS, EXIT_FAIL) for c in codes):
        return EXIT_UNKNOWN
    return EXIT_FAIL if EXIT_FAIL in codes else EXIT_PASS


def combined_junit(outcomes: Sequence[Outcome]) -> bytes:
    """One ``testsuites``: each run's own testsuite (one testcase per expectation); a run
    that wrote no junit gets a testsuite with one ``error`` testcase saying why."""
    root = ET.Element("testsuites", name="overheard")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for o in outcomes:
        suites = _suites_of(o)
        for suite in suites:
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{sum(o.seconds for o in outcomes):.1f}")
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def _suites_of(o: Outcome) -> list[ET.Element]:
    path = o.job.out / "junit.xml"
    if o.report is not None and path.is_file():
        try:
            parsed = ET.parse(path).getroot()
        except ET.ParseError:
            parsed = None
        if parsed is not None:
            suites = [parsed] if parsed.tag == "testsuite" else list(parsed.iter("testsuite"))
            for s in suites:
                s.set("time", f"{o.seconds:.1f}")
                s.set("file", str(o.job.path))
            return suites
    name = f"overheard.{o.job.name}"
    suite = ET.Element("testsuite", name=name, tests="1", failures="0", errors="1",
                       skipped="0", time=f"{o.seconds:.1f}", file=str(o.job.path))
    case = ET.SubElement(suite, "testcase", classname=name, name="run", time=f"{o.seconds:.1f}")
    message = o.message or f"exit status {o.exit_code}"
    ET.SubElement(case, "error", message=message.splitlines()[-1] if message else "",
                  type="CouldNotRun").text = message
    return [suite]


def outcome_line(o: Outcome, done: int, total: int) -> str:
    """The line printed as a run ends."""
    held, of = o.held
    width = len(str(total))
    return (f"[{done:>{width}}/{total}] {o.verdict.upper():<7} {o.job.name}  "
            f"{held}/{of} expectations  {o.seconds:.1f} s")


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """A fixed-width table, one row per run, then the totals."""
    header = ("scenario", "verdict", "held", "leaks", "seconds", "run folder")
    rows = []
    for o in outcomes:
        held, of = o.held
        leaks = o.report.leaks if o.report is not None else "-"
        rows.append((o.job.name, o.verdict.upper(), f"{held}/{of}", str(leaks),
                     f"{o.seconds:.1f}", str(o.job.out)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    counts = {v: sum(1 for o in outcomes if o.verdict == v) for v in ("pass", "fail", "unknown")}
    lines.append(f"{len(outcomes)} scenarios: {counts['pass']} passed, {counts['fail']} failed, "
                 f"{counts['unknown']} could not run or decide")
    return "\n".join(lines)


def summary_json(outcomes: Sequence[Outcome]) -> str:
    rows = []
    for o in outcomes:
        held, of = o.held
        rows.append({"scenario": o.job.name, "file": str(o.job.path), "seed": o.job.seed,
                     "verdict": o.verdict, "exit_code": o.exit_code, "expectations_held": held,
                     "expectations": of, "seconds": round(o.seconds, 1), "out": str(o.job.out),
                     "message": o.message})
    return json.dumps({"runs": rows, "exit_code": exit_code(outcomes)}, indent=2,
                      ensure_ascii=False) + "\n"


def write_suite_reports(outcomes: Sequence[Outcome], out: Path) -> Path:
    """``out/junit.xml`` and ``out/summary.json``; the junit's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "junit.xml").write_bytes(combined_junit(outcomes))
    (out / "summary.json").write_text(summary_json(outcomes), encoding="utf-8")
    return out / "junit.xml"
