"""The scenario runner end to end: the issue-7 fixtures give their verdicts, runs repeat
byte for byte, and bad input exits 2 naming the key."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest

from simulator.runner import run_scenario
from simulator.scenario import bundled_dir, load_scenario


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


async def test_2018_incident_is_reproduced(tmp_path: Path) -> None:
    scenario = load_scenario(bundled_dir() / "alexa-2018-misdelivery.toml")
    result = await run_scenario(scenario, tmp_path, progress=False)
    assert result.verdict == "pass", [e.to_dict() for e in result.expectations]
    [pkg] = result.packages
    assert pkg["subject_household"] == "requester"
    assert pkg["own"] == 0 and pkg["foreign"] == {"stranger": 1700}
    [leak] = result.leaks or []
    assert (leak["from_household"], leak["to_household"]) == ("stranger", "requester")
    assert (leak["recordings"], leak["data_subjects"], leak["link_redeemed"]) == (1700, 2, True)
    # The run folder holds everything a data-protection officer needs.
    for name in ("report.json", "report.html", "junit.xml", "ledger.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    zips = sorted((tmp_path / "packages").glob("*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as zf:
        wavs = [n for n in zf.namelist() if n.endswith(".wav")]
        assert len(wavs) == 1700
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "overheard-access-package/1"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["breach_notification"]["art34"]["required"] is True
    html = (tmp_path / "report.html").read_text()
    assert "Art. 33" in html and "<svg" in html
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == len(scenario.expect)
    assert (tmp_path / "backend-data" / "overheard.db").exists()
    _assert_2018_as_reported(tmp_path, zips[0], pkg, report)


def _assert_2018_as_reported(out: Path, zip_path: Path, pkg: dict[str, Any],
                             report: dict[str, Any]) -> None:
    """His own request answered with his own data, a stranger's voice history among it."""
    with zipfile.ZipFile(zip_path) as zf:
        profile = json.loads(zf.read("account/profile.json"))
        manifest = json.loads(zf.read("manifest.json"))
        text = b"".join(zf.read(n) for n in zf.namelist() if not n.endswith(".wav"))
    assert profile["account_id"] == pkg["subject_account"] == manifest["subject"]["account_id"]
    assert manifest["request_id"] == pkg["request_id"]
    assert 90e6 <= zip_path.stat().st_size <= 110e6
    # the auditor: 1,700 foreign recordings of 2 data subjects in the requester's package
    assert pkg["foreign"] == {"stranger": 1700}
    assert pkg["manifest"]["account_id"] == pkg["manifest"]["profile_account"] == (
        pkg["subject_account"])
    [leak] = report["leaks"]
    assert (leak["recordings"], leak["data_subjects"]) == (1700, 2)
    # the stranger is named nowhere in the package, yet what they said identifies them
    with sqlite3.connect(out / "backend-data" / "overheard.db") as db:
        name, email = db.execute("SELECT name, email FROM accounts WHERE account_id = ?",
                                 [leak["from_account"]]).fetchone()
    assert name.encode() not in text and email.encode() not in text
    ident = leak["identifiability"]
    assert ident["matching_households"] == 1
    kinds = {c["kind"] for c in ident["clues"]}
    assert {"town", "contact", "doctor", "street"} <= kinds
    assert all(c["value"] and c["count"] >= 1 for c in ident["clues"])
    town = next(c for c in ident["clues"] if c["kind"] == "town")
    html = (out / "report.html").read_text()
    assert f"the town {town['value']} ({town['count']} times)" in html
    assert "1 of 10 households" in html
    assert "identify the speakers" in report["breach_notification"]["art34"]["reason"]
    # the report plays what leaked, from WAVs copied next to it
    for sample in leak["samples"]:
        wav = out / sample["audio"]
        assert wav.read_bytes()[:4] == b"RIFF" and f'src="{sample["audio"]}"' in html
    # the timeline states the operator's act
    acts = [t["what"] for t in report["timeline"] if "put the voice history" in t["what"]]
    assert acts == [f"Operator A put the voice history of {_request_of(report, 'stranger')} "
                    f"(stranger) into {pkg['request_id']} (requester)"]


def _request_of(report: dict[str, Any], household: str) -> str:
    for t in report["timeline"]:
        if t["what"].startswith(f"{household} asks for access → "):
            return str(t["what"].split("→ ")[1].split(" ")[0])
    raise AssertionError(f"no request of {household} on the timeline")


async def test_2018_guarded_twin_stops_the_leak(tmp_path: Path) -> None:
    scenario = load_scenario(bundled_dir() / "alexa-2018-misdelivery-guarded.toml")
    result = await run_scenario(scenario, tmp_path, progress=False)
    assert result.verdict == "pass", [e.to_dict() for e in result.expectations]
    assert result.leaks == []
    [pkg] = result.packages
    # Exactly his own data: a profile and no recordings.
    assert (pkg["files"], pkg["own"], pkg["foreign"]) == (0, 0, {})
    with zipfile.ZipFile(next((tmp_path / "packages").glob("*.zip"))) as zf:
        names = set(zf.namelist())
        profile = json.loads(zf.read("account/profile.json"))
    assert "account/profile.json" in names
    assert not [n for n in names if n.endswith(".wav")]
    assert profile["account_id"] == pkg["subject_account"]
    # The report says what the guard caught, for the person who reads it.
    report = json.loads((tmp_path / "report.json").read_text())
    assert [a["guard"] for a in report["alerts"]] == ["export.ownership_check"]
    assert "1700 recordings of other accounts" in report["alerts"][0]["summary"]
    assert "Guard alerts" in (tmp_path / "report.html").read_text()


async def test_baseline_is_clean_and_repeats_byte_for_byte(tmp_path: Path) -> None:
    scenario = load_scenario(bundled_dir() / "baseline-clean.toml")
    reports = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        result = await run_scenario(scenario, out, progress=False)
        assert result.verdict == "pass", [e.to_dict() for e in result.expectations]
        report = json.loads((out / "report.json").read_text())
        assert set(report["run"]) >= {"started_at", "finished_at"}
        report.pop("run")
        reports.append(report)
        assert all(p["own"] > 0 and p["missing"] == 0 and not p["foreign"] for p in result.packages)
    assert reports[0] == reports[1]
    assert (tmp_path / "run1/ledger.jsonl").read_bytes() == (tmp_path / "run2/ledger.jsonl").read_bytes()


async def test_a_failed_expectation_fails_the_run(tmp_path: Path) -> None:
    text = (bundled_dir() / "baseline-clean.toml").read_text()
    text += '\n[[expect]]\nleak = { from = "alice", to = "bob" }\n'
    path = tmp_path / "s.toml"
    path.write_text(text)
    result = await run_scenario(load_scenario(path), tmp_path / "out", progress=False)
    assert result.verdict == "fail"
    failed = [e for e in result.expectations if not e.passed]
    assert [e.name for e in failed] == ["leak(from=alice, to=bob)"]
    junit = (tmp_path / "out/junit.xml").read_text()
    assert junit.count("<failure") == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "x"\ncolour = "red"\n', "colour: unknown key"),
        ('name = "x"\nseed = "many"\n', "seed:"),
        ('name = "x"\n[[step]]\ndo = "download"\nby = "nobody"\n', "unknown household 'nobody'"),
    ],
)
def test_bad_scenario_exits_2_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = cli("run", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_unreachable_backend_exits_2(tmp_path: Path) -> None:
    proc = cli("run", str(bundled_dir() / "baseline-clean.toml"), "--out", str(tmp_path / "o"),
               "--backend", "http://127.0.0.1:9", "--admin-token", "x", "-q", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error" in proc.stderr.lower() or "could not decide" in proc.stdout


def test_scenarios_lists_the_bundled_ones(tmp_path: Path) -> None:
    proc = cli("scenarios", cwd=tmp_path)
    assert proc.returncode == 0
    assert "alexa-2018-misdelivery " in proc.stdout and "baseline-clean" in proc.stdout
    schema = json.loads(cli("scenarios", "--schema", cwd=tmp_path).stdout)
    assert schema["title"] == "overheard scenario"
