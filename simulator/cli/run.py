"""``overheard run`` and ``overheard scenarios``: play scenarios, one, a suite or a seed sweep."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from backend import logsafe
from simulator.cli.options import progress_option
from simulator.fleet.client import ClientError
from simulator.fleet.progress import resolve_mode
from simulator.judge.report import summary_text
from simulator.scenario.errors import ScenarioError, SeedsError
from simulator.scenario.interactive import print_handoff
from simulator.scenario.model import Scenario, bundled_dir, bundled_scenario, load_scenario
from simulator.scenario.runner import (
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_UNKNOWN,
    RunAborted,
    parse_seeds,
    run_scenario,
    sweep,
    sweep_exit,
    sweep_summary,
)
from simulator.scenario.suite import (
    JOBS_HELP,
    Outcome,
    SuiteError,
    exit_code,
    outcome_line,
    plan,
    run_jobs,
    summary_table,
    write_suite_reports,
)


@click.command("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="run folder (default: runs/<scenario name>); with several scenarios the "
                   "folder that holds one run folder each, junit.xml and summary.json "
                   "(default: runs)")
@click.option("--backend", "backend_url", default=None, help="target a running backend instead")
@click.option("--admin-token", envvar="OVERHEARD_ADMIN_TOKEN", default=None,
              help="admin token for --backend (default: $OVERHEARD_ADMIN_TOKEN)")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="override the scenario's seed")
@click.option("--seeds", "seed_range", default=None, metavar="A-B",
              help="run one scenario once per seed from A to B: one line per seed, then how "
                   "many passed and the first failing seed (run folders in OUT/seed-N; a seed "
                   "that passed keeps only its reports and ledger)")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help=JOBS_HELP + "; with --seeds, seeds at a time")
@click.option("-k", "pattern", default=None, metavar="PATTERN",
              help="only scenarios whose name or file name contains PATTERN (or matches it "
                   "as a glob); alternatives separated by commas")
@progress_option
@click.option("-q", "--quiet", is_flag=True, help="no progress lines, only the summary")
@click.option("--demo", is_flag=True, hidden=True, help="print the demo's closing lines")
@click.option("--interactive", is_flag=True,
              help="at the operator step, wait for a person to work the queue in the console")
@click.option("--voice", type=click.Choice(["speech", "fast"]), default="speech",
              show_default=True,
              help="fast: the letter splice instead of eSpeak NG (same transcripts, same "
                   "verdicts; for runs nobody listens to); one scenario file only")
def run(paths: tuple[Path, ...], out: Path | None, backend_url: str | None,
        admin_token: str | None, seed: int | None, seed_range: str | None, jobs: int,
        pattern: str | None, progress: str | None, quiet: bool, demo: bool,
        interactive: bool, voice: str) -> None:
    """Play scenarios and judge them: exit 0 all passed, 1 one failed, 2 one could not decide.

    PATHS are scenario files, folders of them or names of bundled scenarios
    (``overheard scenarios``). One file runs here, with its progress; several (or a folder,
    or -k) run as a suite, --jobs at a time, with one run folder per scenario and one
    combined junit.xml in --out. With --seeds A-B one file runs once per seed: exit 0 if
    every seed passed, 1 if one failed, 2 if one could not decide (and none failed).
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logsafe.install()  # the embedded backend logs here too
    mode = resolve_mode(progress, quiet=quiet)
    several = len(paths) > 1 or pattern is not None or any(p.is_dir() for p in paths)
    if voice != "speech" and (several or seed_range is not None):
        click.echo(f"error: --voice {voice} plays one scenario file once (not a suite, "
                   f"not --seeds)", err=True)
        sys.exit(EXIT_UNKNOWN)
    if several:
        _run_several(paths, out, backend_url, admin_token, seed, seed_range, jobs, pattern,
                     quiet=mode == "none", interactive=interactive)
    path = _find(paths[0])
    try:
        scenario = load_scenario(path, seed=seed)
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN)
    if interactive and backend_url:
        click.echo("error: --interactive needs the embedded backend (without --backend)", err=True)
        sys.exit(EXIT_UNKNOWN)
    out = out or Path("runs") / scenario.name
    if seed_range is not None:
        if interactive:
            click.echo("error: --interactive runs one seed, not --seeds", err=True)
            sys.exit(EXIT_UNKNOWN)
        _run_seeds(path, scenario, seed_range, seed, backend_url, out, jobs)
    if mode != "none":
        click.echo(f"running {scenario.name} (seed {scenario.seed}) → {out}/", err=True)
    t0 = time.perf_counter()
    try:
        result = asyncio.run(run_scenario(scenario, out, backend_url=backend_url,
                                          admin_token=admin_token, progress=mode,
                                          interactive=print_handoff if interactive else None,
                                          voice="fast" if voice == "fast" else "speech"))
    except (RunAborted, ClientError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    click.echo(summary_text(result))
    click.echo(f"wall time {time.perf_counter() - t0:.1f} s")
    click.echo(f"report: {(out / 'report.html').resolve()}")
    if demo:
        click.echo(f"open it in a browser: file://{(out / 'report.html').resolve()}")
    sys.exit({"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(result.verdict, EXIT_UNKNOWN))


def _run_several(paths: tuple[Path, ...], out: Path | None, backend_url: str | None,
                 admin_token: str | None, seed: int | None, seed_range: str | None, jobs: int,
                 pattern: str | None, *, quiet: bool, interactive: bool) -> None:
    """``run`` with several files, a folder or -k: a suite; exits with its code."""
    if seed_range is not None:
        click.echo("error: --seeds plays one scenario file, not several", err=True)
        sys.exit(EXIT_UNKNOWN)
    if interactive:
        click.echo("error: --interactive plays one scenario file, not several", err=True)
        sys.exit(EXIT_UNKNOWN)
    extra = ["--backend", backend_url] if backend_url else []
    if admin_token and backend_url:
        extra += ["--admin-token", admin_token]
    sys.exit(run_suite(list(paths), out or Path("runs"), seed=seed, jobs=jobs,
                       pattern=pattern, extra=extra, quiet=quiet))


def _run_seeds(path: Path, scenario: Scenario, seed_range: str, seed: int | None,
               backend_url: str | None, out: Path, jobs: int) -> None:
    """``run --seeds``: one line per seed as it finishes, a summary, the exit code."""
    try:
        seeds = parse_seeds(seed_range)
        if seed is not None:
            raise SeedsError("give --seed or --seeds, not both")
        if backend_url:
            raise SeedsError("--seeds runs embedded backends (each seed needs a "
                                     "fresh one); leave out --backend")
    except SeedsError as exc:
        click.echo(f"error: --seeds: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN)
    click.echo(f"{scenario.name}: seeds {seeds.start}-{seeds.stop - 1}, {jobs} at a time → "
               f"{out}/seed-N/", err=True)
    t0 = time.perf_counter()
    try:
        results = sweep(path, seeds, out, jobs, on_result=lambda r: click.echo(r.line()))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    click.echo(sweep_summary(results))
    click.echo(f"wall time {time.perf_counter() - t0:.1f} s")
    sys.exit(sweep_exit(results))


def _find(file: Path) -> Path:
    """A path as given, or the name of a bundled scenario."""
    if file.exists():
        return file
    return bundled_scenario(str(file)) or file


@click.command("scenarios")
@click.option("--schema", is_flag=True, help="print the JSON Schema of the scenario format")
def scenarios(schema: bool) -> None:
    """List the bundled scenarios with one line each."""
    if schema:
        from simulator.scenario.model import json_schema

        click.echo(json.dumps(json_schema(), indent=2))
        return
    files = sorted(bundled_dir().glob("*.toml"))
    width = max((len(f.stem) for f in files), default=10)
    for f in files:
        try:
            s = load_scenario(f)
            click.echo(f"{s.name:<{width}}  {s.description}")
        except ScenarioError as exc:
            click.echo(f"{f.stem:<{width}}  (invalid: {exc})")


def run_suite(paths: Sequence[Path], out: Path, *, seed: int | None = None, jobs: int = 1,
              pattern: str | None = None, extra: Sequence[str] = (), quiet: bool = False) -> int:
    """The CLI's many-scenario run: plan, run, print a line per run and the table, write
    ``out/junit.xml`` and ``out/summary.json``; the exit code."""
    try:
        planned = plan(paths, out, seed=seed, pattern=pattern)
    except SuiteError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_UNKNOWN
    if not quiet:
        click.echo(f"running {len(planned)} scenarios, {jobs} at a time → {out}/", err=True)

    def report(outcome: Outcome, done: int) -> None:
        if not quiet:
            click.echo(outcome_line(outcome, done, len(planned)), err=True)

    try:
        outcomes = asyncio.run(run_jobs(planned, jobs, extra=extra, on_done=report))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    junit = write_suite_reports(outcomes, out)
    click.echo(summary_table(outcomes))
    for o in outcomes:
        if o.message:
            click.echo(f"{o.job.name}: {o.message}")
    click.echo(f"junit: {junit}")
    return exit_code(outcomes)
