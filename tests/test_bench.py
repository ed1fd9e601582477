"""``overheard bench ingest``: a tiny real run against a subprocess backend and both floors."""

from __future__ import annotations

import json
import math
import re

from click.testing import CliRunner

from contract.audio import BYTES_PER_SECOND
from simulator.bench.ingest import Measurement, pcm_pool, percentile, ratio_table
from simulator.cli.bench import bench


def test_percentile_interpolates() -> None:
    assert percentile([], 50) != percentile([], 50)  # NaN
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99.0


def test_ratio_table_lists_every_run_and_ratio() -> None:
    ours = Measurement("overheard", 100, 1.0, 6_400_000, [10.0, 20.0])
    floors = {"ws floor": Measurement("ws floor", 400, 1.0, 25_600_000, [1.0]),
              "storage floor": Measurement("storage floor", 200, 1.0, 12_800_000)}
    text = ratio_table(ours, floors)
    lines = {line.split("  ")[0].strip(): line.split() for line in text.splitlines()[1:]}
    assert lines["overheard"][1:3] == ["100.0", "6.4"]
    assert lines["ours/ws floor"][-1] == "0.25"
    assert lines["ours/storage floor"][-1] == "0.50"
    assert lines["storage floor"][4:6] == ["-", "-"]  # no latencies for the storage floor


def test_pcm_pool_is_deterministic() -> None:
    a, b = pcm_pool(0.5, count=3, seed=7), pcm_pool(0.5, count=3, seed=7)
    assert a == b and len(a[0]) == BYTES_PER_SECOND // 2 and len(set(a)) == 3
    assert pcm_pool(0.5, count=3, seed=8) != a


def test_bench_ingest_runs_against_the_backend_and_both_floors() -> None:
    result = CliRunner().invoke(bench, ["ingest", "--devices", "4", "--utterances", "40",
                                        "--seconds", "0.5", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    ours = report["results"]["overheard"]
    assert (ours["utterances"], ours["errors"], ours["audio_bytes"]) == (40, 0, 40 * BYTES_PER_SECOND // 2)
    assert ours["ack_p50_ms"] > 0 and ours["ack_p99_ms"] >= ours["ack_p50_ms"]
    assert report["results"]["ws floor"]["utterances"] == 40
    assert report["results"]["storage floor"]["utterances"] == 40
    for name in ("ours/ws floor", "ours/storage floor"):
        assert math.isfinite(report["ratios"][name]) and report["ratios"][name] > 0
    assert "registering 4 devices" in result.stderr
    # How it was committed: every utterance is a write; each answer waited for a WAL sync.
    writer = report["writer"]
    assert writer["writes"] >= 40 and 1 <= writer["transactions"] <= writer["writes"]
    assert 1 <= writer["wal_syncs"] <= writer["transactions"]


def test_bench_ingest_table_output() -> None:
    result = CliRunner().invoke(bench, ["ingest", "--devices", "2", "--utterances", "6",
                                        "--seconds", "0.2"])
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "utt/s" in out and "p99 ms" in out
    assert "ours/ws floor" in out and "ours/storage floor" in out
    assert re.search(r"writer: [\d,]+ transactions \([\d.]+ writes each\), [\d,]+ WAL syncs", out)


def test_bench_ingest_open_loop_paces_the_load_and_times_from_the_schedule() -> None:
    rate, n = 100.0, 30
    result = CliRunner().invoke(bench, ["ingest", "--devices", "3", "--utterances", str(n),
                                        "--seconds", "0.2", "--rate", str(rate), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert report["offered_per_s"] == rate
    # Throughput at a fixed offered load says nothing about the server: no ratios.
    assert report["ratios"] == {}
    for name in ("overheard", "ws floor"):
        run = report["results"][name]
        assert (run["utterances"], run["errors"]) == (n, 0)
        # The last utterance is due at (n - 1) / rate: the run cannot end before it.
        assert run["seconds"] >= (n - 1) / rate
        assert run["send_lag_ms"] >= 0.0
        assert 0 < run["ack_p50_ms"] <= run["ack_p99_ms"]
    assert "send_lag_ms" not in report["results"]["storage floor"]


def test_bench_ingest_open_loop_table_says_how_latency_was_timed() -> None:
    result = CliRunner().invoke(bench, ["ingest", "--devices", "2", "--utterances", "6",
                                        "--seconds", "0.2", "--rate", "50", "--no-floors"])
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "open loop at 50 utterances/s offered" in out.splitlines()[0]
    assert re.search(r"client fell behind its schedule by at most [\d.]+ ms", out)
    assert "ours/" not in out
