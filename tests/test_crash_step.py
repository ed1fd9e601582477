"""The scenario crash step: the backend is SIGKILLed at a named crash point and restarted on
its data dir, the scenario goes on, and ``acked_durable`` holds, unless the disk loses what
was acknowledged, when it fails. Also: strict validation, served backends refused, a crash
nobody reached, and a package build stopped half-way leaves no zip writer to the collector."""

from __future__ import annotations

import gc
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.crashpoints import POINTS
from backend.privacy.errors import PackageAborted
from backend.privacy.package import Recording, Subject, write_access_package
from simulator.fleet.crashable import Crash, CrashableBackend
from simulator.judge.report import RunResult
from simulator.scenario.model import ScenarioError, load_scenario
from simulator.scenario.runner import RunAborted, run_scenario

HOUSEHOLDS = """
[[household]]
key = "a"
recordings = 6
[[household]]
key = "b"
members = 2
recordings = 5
"""
INGEST_AFTER = """
[[step]]
do = "traffic"
days = 2
"""
EXPORT_AFTER = """
[[step]]
do = "access_request"
by = ["a", "b"]
[[step]]
do = "wait"
[[step]]
do = "download"
by = "a"
[[step]]
do = "download"
by = "b"
"""
INVARIANTS = ("acked_durable", "complete", "no_foreign_data", "no_foreign_recipient")


def scenario_text(point: str, nth: int, seed: int, expect: tuple[str, ...] = INVARIANTS) -> str:
    after = INGEST_AFTER if point.startswith("ingest.") else EXPORT_AFTER
    return (f'name = "crash-at-{point}"\nseed = {seed}\n{HOUSEHOLDS}\n'
            '[[step]]\ndo = "traffic"\ndays = 3\n\n'
            f'[[step]]\ndo = "crash"\npoint = "{point}"\nnth = {nth}\n{after}\n'
            + "".join(f'[[expect]]\ninvariant = "{name}"\n' for name in expect))


async def play(tmp_path: Path, text: str) -> RunResult:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return await run_scenario(load_scenario(path), tmp_path / "run", progress=False,
                              voice="fast")


def audit_actions(data: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{data / 'overheard.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    finally:
        conn.close()


def stored_recordings(data: Path) -> int:
    conn = sqlite3.connect(f"file:{data / 'overheard.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM recordings").fetchone()[0])
    finally:
        conn.close()


NTH = {"ingest.upgraded": 1, "ingest.mid_utterance": 7, "ingest.after_commit": 4,
       "export.mid_build": 3, "export.before_release": 1}


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
async def test_acknowledged_recordings_survive_a_crash_at_each_point(tmp_path: Path,
                                                                     point: str) -> None:
    result = await play(tmp_path, scenario_text(point, NTH[point], seed=31))
    assert result.verdict == "pass", [(e.name, e.detail) for e in result.expectations]
    durable = next(e for e in result.expectations if e.name == "invariant(acked_durable)")
    assert durable.detail == "every acknowledged recording is still stored"
    killed = [t.what for t in result.timeline if t.what.startswith("killed (SIGKILL)")]
    assert killed and f"pass {NTH[point]} of {point}" in killed[0]
    data = tmp_path / "run" / "backend-data"
    actions = audit_actions(data)
    assert actions.count("backend.started") == 2  # a second process on the same data dir
    ledger = (tmp_path / "run" / "ledger.jsonl").read_text().splitlines()
    utterances = [line for line in ledger if '"outcome":' in line]
    assert utterances and all('"outcome":"ok"' in line for line in utterances)
    assert stored_recordings(data) == len(utterances)  # every one stored once
    if point.startswith("export."):
        assert "export.requeued" in actions  # the killed job ran again after the restart
        assert len(result.packages) == 2


@pytest.mark.slow
async def test_the_same_crash_gives_the_same_report(tmp_path: Path) -> None:
    text = scenario_text("export.mid_build", 2, seed=8)
    one = await play(tmp_path / "one", text)
    two = await play(tmp_path / "two", text)
    assert one.verdict == two.verdict == "pass"
    assert one.timeline == two.timeline
    assert one.packages == two.packages
    ledger = [(p / "run" / "ledger.jsonl").read_bytes() for p in (tmp_path / "one",
                                                                  tmp_path / "two")]
    assert ledger[0] == ledger[1]


def _db_files(data: Path) -> list[Path]:
    return [data / f"overheard.db{suffix}" for suffix in ("", "-wal")]


@pytest.mark.slow
async def test_acked_durable_fails_when_the_disk_loses_acknowledged_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that acknowledges writes it never keeps: at the kill, the data dir goes back to
    what it held when the crash was armed. The recordings acknowledged in between are gone,
    and their devices, having had the ack, never resend them."""
    saved = tmp_path / "saved"
    arm, spawn = CrashableBackend.arm, CrashableBackend._spawn

    async def arm_and_save(self: CrashableBackend, point: str, nth: int) -> None:
        await arm(self, point, nth)
        saved.mkdir(mode=0o700)
        for f in _db_files(Path(self.config.data_dir)):
            shutil.copy2(f, saved / f.name)

    async def spawn_on_what_the_disk_kept(self: CrashableBackend) -> None:
        if self.epoch:  # the restart after the kill
            data = Path(self.config.data_dir)
            (data / "overheard.db-shm").unlink(missing_ok=True)
            for f in _db_files(data):
                shutil.copy2(saved / f.name, f)
        await spawn(self)

    monkeypatch.setattr(CrashableBackend, "arm", arm_and_save)
    monkeypatch.setattr(CrashableBackend, "_spawn", spawn_on_what_the_disk_kept)
    # Only a's devices talk after the arming; then b erases its account.
    text = scenario_text("ingest.after_commit", 4, seed=31,
                         expect=("acked_durable", "no_collateral_loss"))
    text = text.replace('do = "traffic"\ndays = 2\n', 'do = "traffic"\ndays = 2\nhouseholds = ["a"]\n'
                        '[[step]]\ndo = "erasure_request"\nby = "b"\n[[step]]\ndo = "wait"\n')
    result = await play(tmp_path, text)
    assert result.verdict == "fail"
    durable, collateral = result.expectations
    # Passes 1-3 of the point were committed and acknowledged after the arming; the 4th
    # was committed, killed before its ack, and resent.
    assert (durable.passed, durable.detail) == (False, "3 acknowledged recording(s) of a are gone")
    # Lost at the same time as b's erasure, but not by it: the runner's ``lost`` section
    # says what an erasure destroyed.
    assert (collateral.passed, collateral.detail) == (
        True, "no erasure destroyed anyone else's recordings")


async def test_no_collateral_loss_names_what_an_erasure_destroyed(tmp_path: Path) -> None:
    from test_runner import LOST_AFTER_RESALE  # the seller's erasure takes the buyer's

    text = LOST_AFTER_RESALE.split("[[expect]]")[0] + '[[expect]]\ninvariant = "no_collateral_loss"\n'
    result = await play(tmp_path, text)
    [lost] = result.lost
    assert lost.recordings > 0
    [collateral] = result.expectations
    assert (collateral.passed, collateral.detail) == (
        False, f"{lost.recordings} recording(s) of buyer destroyed by seller's erasure")


def test_an_unknown_crash_point_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(scenario_text("ingest.after_comit", 1, seed=1), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert f"{path}: step[1].point: Input should be 'ingest.upgraded'" in str(err.value)
    path.write_text(scenario_text("ingest.upgraded", 0, seed=1), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"step\[1\]\.nth"):
        load_scenario(path)


async def test_a_served_backend_cannot_be_crashed(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(scenario_text("ingest.upgraded", 1, seed=1), encoding="utf-8")
    with pytest.raises(RunAborted, match="has a crash step: it needs the backend the runner"):
        await run_scenario(load_scenario(path), tmp_path / "run", progress=False,
                           backend_url="http://127.0.0.1:9", admin_token="adm_x")


@pytest.mark.slow
async def test_a_crash_no_step_reaches_cannot_decide(tmp_path: Path) -> None:
    # An export point, but no access request after it: nothing passes the point.
    text = scenario_text("ingest.upgraded", 1, seed=3).replace(
        'point = "ingest.upgraded"', 'point = "export.mid_build"')
    result = await play(tmp_path, text)
    assert result.verdict == "unknown"
    assert "the crash at pass 1 of export.mid_build never happened" in \
        result.expectations[0].detail


def test_a_build_stopped_half_way_closes_its_zip(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Left open, the zip writer is closed by the garbage collector, after its file: the
    "Exception ignored in ZipFile.__del__ ... seek of closed file" of in-process runs."""
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    recs = iter([Recording(f"rec_{i}", "acc_a", "dev_a", "2018-06-01T00:00:00.000Z", 100,
                           "hello", 16000, 2, 1, b"\x01\x00" * 1600) for i in range(3)])
    with pytest.raises(PackageAborted):
        write_access_package(
            tmp_path / "p.zip", request_id="prq_x",
            subject=Subject("acc_a", {"account_id": "acc_a", "locale": "de_DE"}, []),
            recordings=recs, generated_at="2018-06-01T00:00:00Z",
            generated_dt=datetime(2018, 6, 1, tzinfo=UTC), should_stop=lambda: True)
    gc.collect()
    assert ignored == []


async def test_the_restarted_backend_keeps_what_the_killed_one_held_in_memory(
        tmp_path: Path) -> None:
    """The clock, the switches and fresh seeded ids survive a kill: the new child is told."""
    import aiohttp

    from backend import Config
    from simulator.fleet.crashable import CrashSafeClient

    config = Config(data_dir=tmp_path / "data", admin_token="adm_crash_0123456789",
                    id_seed=4, clock_start=datetime(2018, 6, 1, tzinfo=UTC), clock_frozen=True)
    backend = CrashableBackend(config)
    await backend.start()
    try:
        async with CrashSafeClient(backend) as client, aiohttp.ClientSession() as session:
            await client.advance_clock(3 * 86400)
            await client.put_faults({"ingest.stale_binding": {}})
            await client.put_guards({"export.ownership_check": {}})
            first = await client.create_account("Ann Example", "ann@example.net", "de_DE")
            dev = await client.register_device(first["account_id"], "SN-1", "Echo", "kitchen")
            await backend.arm("ingest.upgraded", 1)
            ws = await session.ws_connect(client.ws_url("/v1/device/stream"), headers={
                "Authorization": f"Bearer {dev['device_token']}"})
            assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE)
            await backend.wait_up()
            assert backend.crashes == [Crash("ingest.upgraded", 1)] and backend.epoch == 1
            assert await client.get_clock() == "2018-06-04T00:00:00.000Z"
            faults = await client.get_faults()
            guards = await client.get_guards()
            assert _on(faults) == ["ingest.stale_binding"]
            assert _on(guards) == ["export.ownership_check"]
            second = await client.create_account("Bo Example", "bo@example.net", "de_DE")
            assert second["account_id"] != first["account_id"]
            assert (await client.get_account(first["account_id"]))["email"] == "ann@example.net"
    finally:
        await backend.stop()


def _on(switches: dict[str, Any]) -> list[str]:
    [items] = switches.values()  # {"faults": [...]} or {"guards": [...]}
    return sorted(s["name"] for s in items if s["enabled"])
