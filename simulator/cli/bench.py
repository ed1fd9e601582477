"""``overheard bench``: each benchmark with its floor, from the command line."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import click

from contract.audio import RATE, WIDTH
from simulator.bench import export as bench_export
from simulator.bench import synth as bench_synth
from simulator.bench.ingest import (
    emit,
    rate_ratios,
    ratio_table,
    run_ingest,
    say,
    serve_sink,
    writer_line,
)
from simulator.bench.soak import report, run_soak


@click.group()
def bench() -> None:
    """Measure the backend against floors measured in the same run."""


@bench.command("ingest")
@click.option("--devices", type=click.IntRange(1, 5000), default=50, show_default=True,
              help="concurrent device connections")
@click.option("--utterances", type=click.IntRange(1), default=1000, show_default=True,
              help="utterances in total, spread over the devices")
@click.option("--seconds", type=click.FloatRange(0.1, 60.0), default=2.0, show_default=True,
              help="audio per utterance (16 kHz mono s16le)")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the backend's data dir here (default: a temp dir, removed)")
@click.option("--floors/--no-floors", default=True, show_default=True,
              help="also measure the WebSocket and storage floors")
@click.option("--rate", type=click.FloatRange(1.0), default=None,
              help="open loop: offer this many utterances/s in all, whatever the answers do, "
                   "and time each answer from when its utterance was due (default: closed "
                   "loop, each device waits for its answer: the most the server takes)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def ingest(devices: int, utterances: int, seconds: float, data: Path | None, floors: bool,
           rate: float | None, seed: int, as_json: bool) -> None:
    """Stream utterances from many devices to a backend subprocess; compare with the floors."""
    with tempfile.TemporaryDirectory(prefix="overheard-bench-") as tmp:
        root = data or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ours, floor_results, counters = asyncio.run(
            run_ingest(devices, utterances, seconds, data=root, floors=floors, seed=seed,
                       rate=rate))
    load = (f"open loop at {rate:,g} utterances/s offered" if rate
            else "closed loop (each device waits for its answer)")
    header = (f"bench ingest: {devices} devices, {utterances} utterances of {seconds:g} s "
              f"({int(seconds * RATE * WIDTH)} B PCM each), durable acks, {load}")
    # At a fixed offered rate both sides get the same load: compare latencies, not rates.
    compared = {} if rate else rate_ratios(ours, floor_results)
    payload = {
        "bench": "ingest", "devices": devices, "utterances": utterances, "seconds": seconds,
        "offered_per_s": rate,
        "results": {m.label: m.as_dict() for m in [ours, *floor_results.values()]},
        "ratios": {f"ours/{k}": round(v, 4) for k, v in compared.items()},
        "writer": counters,
    }
    lines = [header, ratio_table(ours, floor_results, compared)]
    if rate:
        lines.append(f"latency from each utterance's due time; client fell behind its schedule "
                     f"by at most {ours.send_lag_ms or 0.0:.1f} ms")
    lines.append(writer_line(counters))
    emit("\n".join(lines), payload, as_json)


@bench.command("sink", hidden=True)
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=0)
def sink(host: str, port: int) -> None:
    """Serve the WebSocket floor: acknowledge every utterance.end, store nothing."""
    try:
        asyncio.run(serve_sink(host, port))
    except KeyboardInterrupt:
        pass


@bench.command("export")
@click.option("--recordings", type=click.IntRange(0), default=1750, show_default=True,
              help="recordings in the account's package")
@click.option("--seconds", type=click.FloatRange(0.1, 60.0), default=2.0, show_default=True,
              help="audio per recording (16 kHz mono s16le)")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the data dir here (default: a temp dir, removed)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def export(recordings: int, seconds: float, data: Path | None, as_json: bool) -> None:
    """Build one access package; compare with copying the same audio out of SQLite."""
    say(f"seeding {recordings} recordings of {seconds:g} s")
    figures = bench_export.run(recordings, seconds, data)
    emit(bench_export.table(figures, seconds),
         {"bench": "export", "seconds": seconds, **figures.as_dict()}, as_json)


@bench.command("synth")
@click.option("--utterances", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--households", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--locale", default="de_DE", show_default=True)
@click.option("--voice", type=click.Choice(["speech", "fast"]), default="speech",
              show_default=True, help="eSpeak NG speech, or the letter splice")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def synth(utterances: int, households: int, seed: int, locale: str, voice: str,
          as_json: bool) -> None:
    """Text generation plus voice synthesis alone, on one core: cold, from disk, warm."""
    figures = bench_synth.run(utterances, households, seed, locale,
                              "fast" if voice == "fast" else "speech")
    emit(bench_synth.table(figures), {"bench": "synth", **figures.as_dict()}, as_json)


@bench.command("soak")
@click.option("--seconds", type=click.FloatRange(2, 3600), default=120.0, show_default=True,
              help="how long the fleet streams")
@click.option("--devices", type=click.IntRange(1, 5000), default=500, show_default=True,
              help="devices streaming at once (two per household)")
@click.option("--requests", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="access requests through the full flow, spread over the soak")
@click.option("--interval", type=click.FloatRange(0.5, 600), default=10.0, show_default=True,
              help="seconds per reported interval")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the backend's data dir and the packages here (default: a temp dir)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def soak(seconds: float, devices: int, requests: int, interval: float, seed: int,
         data: Path | None, as_json: bool) -> None:
    """Soak the backend: continuous streaming plus access requests; audit every package."""
    with tempfile.TemporaryDirectory(prefix="overheard-soak-") as tmp:
        root = data or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_soak(seconds=seconds, devices=devices, requests=requests,
                                      interval=interval, seed=seed, data=root))
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else report(result))
    raise SystemExit(0 if result.passed else 1)


bench.add_command(soak)
