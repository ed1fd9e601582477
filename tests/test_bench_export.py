"""``bench export`` on a small account: the figures are measured and consistent."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from contract.audio import BYTES_PER_SECOND
from simulator.bench.export import run
from simulator.cli.bench import bench


def test_bench_export_measures_one_package(tmp_path: Path) -> None:
    figures = run(40, 0.5, tmp_path)
    assert figures.recordings == 40
    assert figures.audio_bytes == 40 * BYTES_PER_SECOND // 2  # 0.5 s each
    # The package holds every byte of audio plus WAV headers and the text files.
    assert figures.package_bytes > figures.audio_bytes + 40 * 44
    assert figures.floor_seconds > 0 and figures.ours_seconds > 0
    assert figures.as_dict()["ours_over_floor"] > 0
    assert list((tmp_path / "backend" / "packages").glob("*.zip"))


def test_bench_export_command_prints_the_ratio(tmp_path: Path) -> None:
    out = CliRunner().invoke(bench, ["export", "--recordings", "10", "--seconds", "0.2",
                                     "--data", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "ours/floor" in out.output and "peak RSS growth" in out.output
