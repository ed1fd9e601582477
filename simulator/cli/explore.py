"""``overheard explore`` and ``overheard explore merge``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from backend import logsafe
from backend.faults import FAULTS, GUARDS
from simulator.cli.options import progress_option
from simulator.explore.campaign import Options, Summary, explore, merge, names, parse_shard
from simulator.explore.errors import ExploreError
from simulator.fleet.progress import resolve_mode

RUNS_PER_MINUTE_GUESS = 600
"""How many runs ``--minutes`` budgets per minute (the campaign's size must be known
up front, so that shards and jobs split the same indices)."""


@click.group("explore", invoke_without_command=True)
@click.option("--runs", type=click.IntRange(1), default=None, help="runs in the whole campaign")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None,
              help=f"budget instead of --runs ({RUNS_PER_MINUTE_GUESS} runs a minute)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--faults", "faults", default="none", show_default=True,
              help="none, all, or fault names separated by commas")
@click.option("--guards", "guards", default="none", show_default=True,
              help="none, all, or guard names separated by commas")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes")
@click.option("--shard", default="1/1", show_default=True, metavar="I/N",
              help="play only shard I of N of the campaign's runs")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="output folder")
@progress_option
@click.pass_context
def explore_cmd(ctx: click.Context, runs: int | None, minutes: float | None, seed: int,
                faults: str, guards: str, jobs: int, shard: str, out: Path | None,
                progress: str | None) -> None:
    """Generate scenarios, check the invariants after every run, shrink what fails.

    Writes OUT/summary.json, OUT/junit.xml and OUT/found/<invariant>-<seed>.toml. Exit 0:
    nothing violated; 1: something was; 2: an error.
    """
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logsafe.install()
    try:
        if out is None:
            raise ExploreError("--out is required")
        if (runs is None) == (minutes is None):
            raise ExploreError("give exactly one of --runs and --minutes")
        total = runs if runs is not None else max(1, round((minutes or 0) * RUNS_PER_MINUTE_GUESS))
        opts = Options(seed, total, names(faults, FAULTS, "faults"), names(guards, GUARDS, "guards"))
        summary = explore(opts, out, jobs=jobs, shard=parse_shard(shard),
                          mode=resolve_mode(progress))
    except ExploreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _report(summary, out)


def _report(summary: Summary, out: Path) -> None:
    violations = summary.violations
    click.echo(f"{summary.runs} runs, {len(violations)} violation(s), "
               f"{summary.scenarios_per_minute} scenarios/min → {out}/summary.json")
    for v in violations:
        click.echo(f"  {v.invariant} seed {v.seed}: {v.message} ({v.file})")
    sys.exit(1 if violations else 0)


@explore_cmd.command("merge")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
def merge_cmd(dirs: tuple[Path, ...], out: Path) -> None:
    """Merge shard folders into one summary.json, junit.xml and found/."""
    try:
        summary = merge(list(dirs), out)
    except ExploreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _report(summary, out)


@click.command("explore")
@click.option("--runs", type=click.IntRange(2), default=120, show_default=True)
@click.option("--floor-runs", type=click.IntRange(1), default=12, show_default=True,
              help="of those, how many also run one `overheard run` process each (the floor)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--faults", "faults", default="none", show_default=True,
              help="none, all, or fault names separated by commas")
@click.option("--guards", "guards", default="none", show_default=True,
              help="none, all, or guard names separated by commas")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=2, show_default=True)
def bench_explore(runs: int, floor_runs: int, seed: int, faults: str, guards: str,
                  jobs: int) -> None:
    """Generated scenarios per minute in-process, next to the floor: the same scenarios run
    one ``overheard run`` process each (--jobs at a time), and the ratio."""
    from simulator.explore.bench import bench_explore as measure

    logsafe.install()
    try:
        opts = Options(seed, runs, names(faults, FAULTS, "faults"), names(guards, GUARDS, "guards"))
        result = measure(opts, floor_runs, jobs)
    except ExploreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line in result.lines():
        click.echo(line)
