"""Logs a CI reader can follow: outside a terminal, plain lines (at most one every few
seconds) or none, never a carriage return; timeline lines in simulated-time order."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.fleet.progress import PLAIN_INTERVAL, Counter, default_mode, resolve_mode

STAMP = re.compile(r"^  \[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\] ([a-z_]+): ", re.M)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_most_once_per_interval() -> None:
    clock, out = FakeClock(), io.StringIO()
    counter = Counter(1000, "plain", desc="utterances", unit="utt", out=out, clock=clock)
    for _ in range(1000):
        clock.now += 0.03  # 30 s in all
        counter.update()
    counter.set_postfix(fail=2, info=0)
    counter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 30 / PLAIN_INTERVAL + 1
    assert len(lines) >= 30 / PLAIN_INTERVAL - 1
    assert lines[-1] == "  utterances: 1,000/1,000 (100%), 33 utt/s, fail 2"
    assert "\r" not in out.getvalue()


def test_none_prints_nothing_and_the_default_follows_the_stream() -> None:
    out = io.StringIO()
    counter = Counter(10, "none", desc="x", unit="u", out=out)
    for _ in range(10):
        counter.update()
    counter.write("gave up")
    counter.close()
    assert out.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert default_mode(Tty()) == "bar"
    assert default_mode(io.StringIO()) == "plain"
    assert resolve_mode("bar", quiet=True) == "none"
    assert resolve_mode(False) == "none"
    with pytest.raises(ValueError, match="progress must be one of"):
        resolve_mode("fancy")


def overheard_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """A run whose stdout and stderr are pipes: not a terminal, as in CI."""
    return subprocess.run([sys.executable, "-m", "simulator.cli", "run", *args], cwd=cwd,
                          capture_output=True, timeout=600)


def test_a_non_tty_run_logs_plain_lines_in_simulated_time_order(tmp_path: Path) -> None:
    proc = overheard_run("alexa-2018-misdelivery", "--out", "o", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"\r" not in proc.stdout and b"\r" not in proc.stderr
    log = proc.stderr.decode()
    steps = STAMP.findall(log)
    stamps = [at for at, _ in steps]
    assert stamps == sorted(stamps), log
    names = [step for _, step in steps]
    # the traffic is announced at its start, before the requests that follow its days
    assert names.index("traffic") < names.index("access_request") < names.index("revoke")
    assert "  utterances: 6,505/6,505 (100%)" in log


@pytest.mark.parametrize("flags", [("--quiet",), ("--progress", "none")])
def test_quiet_and_none_log_no_progress(tmp_path: Path, flags: tuple[str, ...]) -> None:
    proc = overheard_run("ingest.stale_binding", "--out", "o", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    assert b"PASS  ingest.stale_binding" in proc.stdout
    assert b"\r" not in proc.stdout


def test_plain_can_be_asked_for_and_bar_is_the_terminal_s(tmp_path: Path) -> None:
    plain = overheard_run("ingest.stale_binding", "--out", "o", "--progress", "plain",
                          cwd=tmp_path)
    assert plain.returncode == 0 and b"\r" not in plain.stderr
    assert b"utterances: 30/30 (100%)" in plain.stderr
    bar = overheard_run("ingest.stale_binding", "--out", "o", "--progress", "bar", cwd=tmp_path)
    assert bar.returncode == 0 and b"\r" in bar.stderr  # what a terminal gets, on request
