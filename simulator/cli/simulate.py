"""``overheard simulate``: households streaming to a backend, from the command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from simulator.fleet.client import ClientError
from simulator.fleet.device import DeviceOptions
from simulator.fleet.errors import FleetError
from simulator.fleet.streaming import SimulateResult, run_embedded, simulate_async
from simulator.world.households import World
from simulator.world.phrasebook import LOCALES


def _print_summary(s: SimulateResult) -> None:
    click.echo(f"households   {s.households}")
    click.echo(f"devices      {s.devices}")
    click.echo(f"utterances   {s.utterances}  (ok {s.ok}, fail {s.fail}, info {s.info})")
    if s.duplicates or s.reconnects or s.errors or s.gave_up:
        errs = ", ".join(f"{k} {v}" for k, v in s.errors.items()) or "none"
        click.echo(f"retries      {s.reconnects} reconnects, {s.duplicates} duplicate acks, "
                   f"errors: {errs}, devices gave up: {len(s.gave_up)}")
    click.echo(f"wall time    {s.wall_seconds:.2f} s (streaming {s.stream_seconds:.2f} s)")
    click.echo(f"rate         {s.utterances_per_second:.0f} utterances/s")
    click.echo(f"ledger       {s.ledger}")
    if s.interrupted:
        click.echo("interrupted: in-flight utterances are recorded as info")


@click.command()
@click.option("--embedded", is_flag=True, help="run the backend in this process (data in DIR/backend-data)")
@click.option("--backend", "backend_url", metavar="URL", help="a running backend")
@click.option("--admin-token", envvar="OVERHEARD_ADMIN_TOKEN", show_envvar=True,
              help="admin token for --backend (default: $OVERHEARD_ADMIN_TOKEN)")
@click.option("--households", type=click.IntRange(1, 1_000_000), default=10, show_default=True)
@click.option("--days", type=click.FloatRange(0, 3650, min_open=True), default=7.0,
              show_default=True, help="simulated days of traffic")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--locale", type=click.Choice(LOCALES), default="de_DE", show_default=True)
@click.option("--realtime", is_flag=True, help="pace audio in real time (default: as fast as possible)")
@click.option("--voice", type=click.Choice(["speech", "fast"]), default="speech",
              show_default=True,
              help="eSpeak NG speech, or the fast letter splice (unintelligible; for big runs)")
@click.option("--concurrency", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="devices connected at once")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="progress bar on stderr")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="output folder for ledger.jsonl and summary.json")
def simulate(embedded: bool, backend_url: str | None, admin_token: str | None, households: int,
             days: float, seed: int, locale: str, realtime: bool, voice: str,
             concurrency: int, progress: bool, out: Path) -> None:
    """Simulate households streaming to a backend; write OUT/ledger.jsonl and a summary.

    Exit 0 when it ran (whatever the outcomes), 2 when it could not (bad options, backend
    unreachable, admin token refused), 130 when interrupted.
    """
    if embedded == bool(backend_url):
        raise click.UsageError("give exactly one of --embedded or --backend URL")
    if backend_url and not admin_token:
        raise click.UsageError("--backend needs --admin-token or $OVERHEARD_ADMIN_TOKEN")
    out.mkdir(parents=True, exist_ok=True)
    world = World.build(seed, locale, background=households,
                        voice="fast" if voice == "fast" else "speech")
    kwargs: dict[str, Any] = {
        "options": DeviceOptions(realtime=realtime), "concurrency": concurrency,
        "progress": progress,
    }
    try:
        if embedded:
            summary = asyncio.run(run_embedded(world, days, out, **kwargs))
        else:
            assert backend_url is not None and admin_token is not None
            summary = asyncio.run(simulate_async(
                backend_url=backend_url, admin_token=admin_token, world=world, days=days,
                out=out, **kwargs))
    except FleetError as exc:
        raise click.UsageError(str(exc)) from exc
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        # a second Ctrl-C during shutdown: the ledger may be incomplete
        click.echo("interrupted", err=True)
        sys.exit(130)
    _print_summary(summary)
    sys.stdout.flush()
    if summary.interrupted:
        sys.exit(130)
