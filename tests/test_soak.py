"""``overheard bench soak``, short: 20 devices streaming for 10 s with 3 access requests.

The full soak (2 minutes, 500 devices) is a benchmark; this runs the same command small
enough for CI and checks what it promises: throughput and RSS per interval, no errors,
and every package built during the soak clean and complete up to its request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main


@pytest.mark.slow
def test_short_soak_has_no_errors_and_clean_packages(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "bench", "soak", "--seconds", "10", "--devices", "20", "--requests", "3",
        "--interval", "2", "--seed", "3", "--data", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert out["passed"] is True
    assert out["errors"] == 0, out["error_detail"]
    assert out["utterances"] > 100 and out["utterances_per_s"] > 10
    assert 0 < out["floor_utterances_per_s"] and 0 < out["ratio_to_floor"]
    assert len(out["samples"]) >= 3
    assert all(s["rss_mb"] > 0 and s["utterances_per_s"] >= 0 for s in out["samples"])
    # Memory settles: after warm-up the server grows by little while it keeps streaming.
    assert out["rss_end_mb"] - out["rss_warm_mb"] < 64, out
    packages = out["packages"]
    assert len(packages) == 3
    for p in packages:
        assert p["ok"] and p["clean"] and p["missing"] == 0 and p["foreign"] == 0, p
        assert p["recordings"] > 0
    # The packages themselves were kept where --data said, one per request.
    assert sorted(p.name for p in (tmp_path / "packages").iterdir()) == sorted(
        f"{p['request_id']}.zip" for p in packages)
