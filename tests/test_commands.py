"""``overheard audit-log``: run as a real subprocess against a real data dir."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from privacy_support import access_signed_in, household, privacy_env

from simulator.cli.audit_log import audit_log


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from simulator.cli import main; main()", "audit-log", *args],
        capture_output=True, text=True, timeout=60, check=False)


async def test_audit_log_verifies_and_detects_an_edit(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        await access_signed_in(env, alice)
    data = tmp_path / "data"

    ok = _run("--data", str(data), "--verify")
    assert ok.returncode == 0, ok.stderr
    assert "hash chain intact" in ok.stdout
    listed = CliRunner().invoke(audit_log, ["--data", str(data), "--json", "--tail", "3"])
    entries = json.loads(listed.output)["entries"]
    assert len(entries) == 3 and entries[-1]["action"] == "request.completed"

    conn = sqlite3.connect(data / "overheard.db")
    built = conn.execute("SELECT seq FROM audit_log WHERE action = 'package.built'").fetchone()[0]
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET detail = replace(detail, '\"recordings\":2',"
                 " '\"recordings\":0') WHERE seq = ?", [built])
    assert conn.total_changes == 1
    conn.commit()
    conn.close()

    bad = _run("--data", str(data), "--verify")
    assert bad.returncode == 1
    assert f"BROKEN at entry {built}" in bad.stdout
    again = CliRunner().invoke(audit_log, ["--data", str(data), "--verify", "--json"])
    assert again.exit_code == 1
    as_json = json.loads(again.output)
    assert (as_json["ok"], as_json["first_bad_seq"]) == (False, built)


def test_audit_log_without_a_database(tmp_path: Path) -> None:
    out = CliRunner().invoke(audit_log, ["--data", str(tmp_path), "--verify"])
    assert out.exit_code == 2
    assert "no database" in out.output
