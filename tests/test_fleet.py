"""The fleet against a real embedded backend: what the ledger says ok is really stored, with
the same audio; drops are retried without duplicates; the same seed gives the same run."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend import Config
from contract.audio import CHANNELS, RATE, WIDTH
from simulator.cli.simulate import simulate
from simulator.fleet.api import Recording
from simulator.fleet.client import ApiError, Client
from simulator.fleet.device import DeviceOptions
from simulator.fleet.embedded import BackendHandle, embedded_backend
from simulator.fleet.homes import Home, register_world
from simulator.fleet.ledger import Ledger, LedgerEntry, read_ledger
from simulator.fleet.streaming import pair_with_devices, stream, stream_utterances
from simulator.world.audio import wav_to_pcm
from simulator.world.households import HouseholdSpec, Utterance, World

SPECS = [HouseholdSpec("stranger", members=2, devices=2, recordings=24),
         HouseholdSpec("neighbour", members=1, devices=1, recordings=12),
         HouseholdSpec("requester", members=1, devices=0)]
FAST = DeviceOptions(backoff_base=0.001, backoff_max=0.01)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[BackendHandle]:
    async with embedded_backend(Config(data_dir=tmp_path / "data", id_seed=5)) as handle:
        yield handle


async def _setup(backend: BackendHandle, seed: int = 5) -> tuple[World, Client, dict[str, Home]]:
    world = World.build(seed, "de_DE", households=SPECS)
    client = Client(backend.url, backend.admin_token)
    regs = await register_world(client, world.households)
    return world, client, regs


async def _history(client: Client, reg: Home) -> dict[str, Recording]:
    return {r.recording_id: r for r in await client.all_my_recordings(reg.user_token)}


async def test_every_ok_entry_is_in_its_owners_voice_history(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    async with client:
        ledger = Ledger()
        result = await stream(backend.url, pair_with_devices(world.traffic(3), regs), ledger,
                              seed=world.seed, options=FAST, concurrency=2)
        assert result.utterances == 36 and result.devices == 3
        assert ledger.counts() == {"ok": 36, "fail": 0, "info": 0}
        assert regs["requester"].devices == {}
        assert await client.all_my_recordings(regs["requester"].user_token) == []
        for key in ("stranger", "neighbour"):
            reg = regs[key]
            mine = [e for e in ledger.entries() if e.household == key]
            assert {e.account_id for e in mine} == {reg.account_id}
            history = await _history(client, reg)
            assert set(history) == {e.recording_id for e in mine}
            for e in mine:
                assert e.recording_id is not None
                rec = history[e.recording_id]
                assert rec.transcript == e.transcript
                assert rec.recorded_at == e.recorded_at
                assert rec.device_id == reg.devices[e.device_serial].device_id
                wav = await client.recording_audio(reg.user_token, str(e.recording_id))
                pcm, rate, width, channels = wav_to_pcm(wav)
                assert (rate, width, channels) == (RATE, WIDTH, CHANNELS)
                assert hashlib.sha256(pcm).hexdigest() == e.pcm_sha256
        # two speakers in the stranger's household, as the auditor will count them
        assert len({e.speaker for e in ledger.entries() if e.household == "stranger"}) == 2


async def test_drop_mid_utterance_is_retried_without_duplicate(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    utts = world.household("neighbour").traffic(world.start, 3)
    victim = utts[4]
    dropped: list[tuple[int, int]] = []

    def drop(u: Utterance, chunk: int, n_chunks: int, attempt: int) -> bool:
        if u.utterance_id == victim.utterance_id and not dropped and chunk == n_chunks // 2:
            dropped.append((chunk, n_chunks))
            return True
        return False

    async with client:
        ledger = Ledger()
        result = await stream(backend.url, pair_with_devices(utts, regs), ledger,
                              options=FAST, drop=drop)
        assert dropped and dropped[0][1] >= 2  # it really was cut in the middle
        assert result.stats.reconnects == 1 and result.stats.resent >= 1
        assert ledger.counts() == {"ok": 12, "fail": 0, "info": 0}
        history = await _history(client, regs["neighbour"])
        assert len(history) == 12  # stored once each, the cut one included
        entry = ledger.get(victim.utterance_id)
        assert entry is not None and entry.recording_id in history
        wav = await client.recording_audio(regs["neighbour"].user_token, str(entry.recording_id))
        assert hashlib.sha256(wav_to_pcm(wav)[0]).hexdigest() == entry.pcm_sha256


async def test_lost_ack_is_resent_and_answered_as_duplicate(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    utts = world.household("neighbour").traffic(world.start, 3)
    victim = utts[2]
    fired: list[int] = []

    def drop(u: Utterance, chunk: int, n_chunks: int, attempt: int) -> bool:
        if u.utterance_id == victim.utterance_id and chunk == n_chunks and not fired:
            fired.append(attempt)
            return True  # after utterance.end, before its ack
        return False

    async with client:
        ledger = Ledger()
        result = await stream(backend.url, pair_with_devices(utts, regs), ledger,
                              options=DeviceOptions(window=1, backoff_base=0.001), drop=drop)
        assert fired == [0]
        assert result.stats.duplicates == 1  # the backend had stored it before the drop
        assert ledger.counts()["ok"] == 12
        history = await _history(client, regs["neighbour"])
        assert len(history) == 12
        assert [r.transcript for r in history.values()].count(victim.transcript) == \
            [u.transcript for u in utts].count(victim.transcript)


async def test_error_frame_is_a_definite_fail(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    good = world.household("neighbour").traffic(world.start, 3)[:3]
    bad = dataclasses.replace(good[1], utterance_id="00000000-0000-4000-8000-000000000001",
                              transcript="NUL \x00 inside")
    async with client:
        entries = await stream_utterances(backend.url, pair_with_devices([*good, bad], regs),
                                          options=FAST)
        outcome = {e.utterance_id: e.outcome for e in entries}
        assert outcome[bad.utterance_id] == "fail"
        assert [outcome[u.utterance_id] for u in good] == ["ok", "ok", "ok"]
        assert next(e for e in entries if e.utterance_id == bad.utterance_id).recording_id is None
        assert len(await _history(client, regs["neighbour"])) == 3


async def test_a_failed_disk_sync_leaves_utterances_info_not_fail(
        backend: BackendHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """storage_failed is not "nothing stored": the device resends, gives up, and the ledger
    keeps such utterances as info (maybe stored), never as fail."""
    from backend.storage import db as db_module

    world, client, regs = await _setup(backend)
    utts = world.household("neighbour").traffic(world.start, 3)[:5]

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    await client.close()
    monkeypatch.setattr(db_module, "_fdatasync", broken_disk)
    ledger = Ledger()
    result = await stream(backend.url, pair_with_devices(utts, regs), ledger,
                          options=dataclasses.replace(FAST, max_attempts=3))
    assert result.gave_up == [utts[0].device_serial]
    counts = ledger.counts()
    assert counts["ok"] == 0 and counts["info"] >= 1
    # Only what was never sent is a definite fail; what was sent is info.
    assert counts["info"] + counts["fail"] == len(utts)
    sent = {e.utterance_id for e in ledger.entries() if e.outcome == "info"}
    assert sent == {u.utterance_id for u in utts[:len(sent)]}


async def test_revoked_token_gives_up_and_records_fail(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    reg = regs["neighbour"]
    utts = world.household("neighbour").traffic(world.start, 3)
    async with client:
        await client.deregister_device(next(iter(reg.devices.values())).device_id)
        ledger = Ledger()
        result = await stream(backend.url, pair_with_devices(utts, regs), ledger, options=FAST)
        assert result.gave_up == [utts[0].device_serial]
        assert ledger.counts() == {"ok": 0, "fail": 12, "info": 0}
        with pytest.raises(ApiError) as err:
            await client.deregister_device("dev_nonexistent")
        assert err.value.status == 404 and err.value.code


async def test_cancel_leaves_in_flight_as_info(backend: BackendHandle) -> None:
    world, client, regs = await _setup(backend)
    pairs = pair_with_devices(world.traffic(3), regs)
    reached = asyncio.Event()

    def probe(u: Utterance, chunk: int, n_chunks: int, attempt: int) -> bool:
        if u.household == "stranger" and chunk == 0 and len(ledger) >= 10:
            reached.set()
        return False

    ledger = Ledger()
    async with client:
        task = asyncio.create_task(stream(backend.url, pairs, ledger, options=FAST,
                                          drop=probe, concurrency=3))
        await reached.wait()
        task.cancel()
        result = await task
        assert result.interrupted
        counts = ledger.counts()
        assert counts["fail"] == 0 and counts["info"] >= 1 and len(ledger) < 36
        for key in ("stranger", "neighbour"):
            history = await _history(client, regs[key])
            oks = {e.recording_id for e in ledger.entries()
                   if e.household == key and e.outcome == "ok"}
            assert oks <= set(history)


def _run_simulate(out: Path, seed: int = 3) -> str:
    result = CliRunner().invoke(simulate, [
        "--embedded", "--households", "3", "--days", "1", "--seed", str(seed),
        "--locale", "fr_FR", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output


def _audio(out: Path) -> list[tuple[str, bytes]]:
    with sqlite3.connect(out / "backend-data" / "overheard.db") as db:
        return db.execute("SELECT r.utterance_id, a.pcm FROM recordings r JOIN audio a"
                          " ON a.recording_id = r.recording_id ORDER BY r.utterance_id").fetchall()


def test_same_seed_twice_same_ledger_and_audio(tmp_path: Path) -> None:
    out1 = _run_simulate(tmp_path / "a")
    _run_simulate(tmp_path / "b")
    assert "utterances" in out1 and "utterances/s" in out1
    l1, l2 = read_ledger(tmp_path / "a" / "ledger.jsonl"), read_ledger(tmp_path / "b" / "ledger.jsonl")
    assert len(l1) > 10 and all(e.outcome == "ok" for e in l1)

    def strip(entries: list[LedgerEntry]) -> list[dict[str, object]]:
        return [e.model_dump(exclude={"recording_id"}) for e in entries]

    assert strip(l1) == strip(l2)
    # with a seeded backend even the server-assigned ids repeat
    assert (tmp_path / "a" / "ledger.jsonl").read_bytes() == (tmp_path / "b" / "ledger.jsonl").read_bytes()
    a1, a2 = _audio(tmp_path / "a"), _audio(tmp_path / "b")
    assert a1 == a2 and len(a1) == len(l1)
    assert {hashlib.sha256(pcm).hexdigest() for _, pcm in a1} == {e.pcm_sha256 for e in l1}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["ok"] == len(l1) and summary["households"] == 3
    # a different seed is a different world
    _run_simulate(tmp_path / "c", seed=4)
    assert strip(read_ledger(tmp_path / "c" / "ledger.jsonl")) != strip(l1)
    # running again into the same folder replaces the embedded backend's data
    _run_simulate(tmp_path / "a")
    assert (tmp_path / "a" / "ledger.jsonl").read_bytes() == (tmp_path / "b" / "ledger.jsonl").read_bytes()


def test_simulate_refuses_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(simulate, ["--embedded", "--backend", "http://x", "--out", str(tmp_path)])
    assert both.exit_code == 2 and "exactly one" in both.output
    no_token = runner.invoke(simulate, ["--backend", "http://127.0.0.1:9", "--out", str(tmp_path)],
                             env={"OVERHEARD_ADMIN_TOKEN": ""})
    assert no_token.exit_code == 2 and "admin-token" in no_token.output
    down = runner.invoke(simulate, ["--backend", "http://127.0.0.1:9", "--admin-token", "t",
                                    "--households", "1", "--out", str(tmp_path)])
    assert down.exit_code == 2 and "error:" in down.output
    foreign = tmp_path / "x"
    (foreign / "backend-data").mkdir(parents=True)
    refused = runner.invoke(simulate, ["--embedded", "--out", str(foreign)])
    assert refused.exit_code == 2 and "not made by" in refused.output


async def test_ctrl_c_writes_the_ledger_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from simulator.cli import main; main()", "simulate", "--embedded",
        "--households", "4",
        "--days", "2", "--seed", "8", "--realtime", "--out", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # a shell may start background children with SIGINT ignored; a terminal would not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    # stderr is a pipe: plain progress lines; wait for one that counts a stored utterance
    while not re.search(rb"utterances: [1-9][\d,]*/[\d,]+ ", seen):
        chunk = await proc.stderr.read(4096)
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    proc.send_signal(signal.SIGINT)
    stdout, _ = await proc.communicate()
    assert proc.returncode == 130, stdout.decode()
    assert b"interrupted" in stdout
    entries = read_ledger(out / "ledger.jsonl")
    outcomes = {e.outcome for e in entries}
    assert "ok" in outcomes and "info" in outcomes and "fail" not in outcomes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["ok"] == sum(e.outcome == "ok" for e in entries)
