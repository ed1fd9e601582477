"""Crash safety, Jepsen-style: SIGKILL at named points under a streaming fleet, then check.

``test_crash.py`` kills the server at a random moment mid-stream; here the kill lands at
named points (``backend.crashpoints``): the server pauses at the n-th pass of a point,
prints ``reached <point>``, and this test SIGKILLs it from outside. Points × seeds:

- ``after_upgrade``: a device stream was just upgraded;
- ``mid_utterance``: a PCM chunk of an open utterance was just received;
- ``after_commit_before_ack``: a recording committed, its ack not yet sent;
- ``mid_package_build``: an export job is half-way through writing a package;
- ``package_built_before_release``: a package file is in place, its row, link and
  ``complete`` not yet committed.

Workload: a seeded world's households stream through the simulator's fleet (one
connection per device, pipelined, chunked), whose ledger is the history: ``ok`` (acked),
``fail`` (refused or never sent), ``info`` (sent, never acked). During the first run the
devices do not retry, so the crash leaves its mark in the history. Checker, after a restart
on the same data dir:

1. the store is sound: ``PRAGMA integrity_check``; no recording without its audio or audio
   without its recording; each blob's sha256 matches its row;
2. against the history: every ``ok`` is stored once with its ack's recording id, the PCM
   the device sent and the device's owner; no ``fail`` is stored; an ``info`` is either
   absent or stored whole; nothing is stored that no device sent;
3. the devices then resend every non-``ok`` utterance with the same id: all become
   ``ok``; exactly the ``info`` ones already stored are answered as duplicates; afterwards
   every utterance is stored exactly once and each account lists exactly its own;
4. packages: no link exists for a package being built; an interrupted job resumes after the
   restart (or ends ``error`` with a message); every package a link points to opens, its
   manifest hashes match, and the auditor finds it clean and complete up to its request;
5. the audit log's hash chain verifies.

Each iteration prints a one-line JSON summary (``pytest -s`` shows them): the crash point,
the history's outcomes after the crash, and the anomalies found.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backend.auditlog import verify_chain
from backend.storage.db import connect
from simulator.fleet.client import Client
from simulator.fleet.device import DeviceOptions
from simulator.fleet.embedded import ServerProcess, start_server_process
from simulator.fleet.homes import register_world
from simulator.fleet.ledger import Ledger, LedgerEntry
from simulator.fleet.streaming import pair_with_devices, stream
from simulator.judge.audit import audit_package
from simulator.world.households import Utterance, World

ADMIN = "adm_jepsen_0123456789"
HOUSEHOLDS = 4
DAYS = 5.0
SEEDS = (11, 12, 13)
POINTS = {
    "after_upgrade": "ingest.upgraded",
    "mid_utterance": "ingest.mid_utterance",
    "after_commit_before_ack": "ingest.after_commit",
    "mid_package_build": "export.mid_build",
    "package_built_before_release": "export.before_release",
}
REACH_TIMEOUT = 30.0

NO_RETRY = DeviceOptions(max_attempts=1, backoff_base=0.01, ack_timeout=20.0, connect_timeout=5.0)
"""First run: a device that loses its connection gives up, so the history keeps the crash."""
RETRY = DeviceOptions(max_attempts=4, backoff_base=0.02, ack_timeout=20.0)

@dataclass
class StoreState:
    """What the data dir holds, judged against a history."""

    stored: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """utterance_id → (recording_id, account_id, pcm_sha256) of each stored recording."""
    anomalies: list[str] = field(default_factory=list)
    info_stored: int = 0
    info_absent: int = 0


def _load_store(db_path: Path, bad: Callable[[str], None]) -> list[tuple[Any, ...]]:
    """The store's recordings with their audio, after its own consistency checks."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            bad(f"integrity_check: {integrity}")
        orphans = conn.execute(
            "SELECT count(*) FROM recordings r LEFT JOIN audio a USING (recording_id)"
            " WHERE a.recording_id IS NULL").fetchone()[0]
        blobs = conn.execute(
            "SELECT count(*) FROM audio a LEFT JOIN recordings r USING (recording_id)"
            " WHERE r.recording_id IS NULL").fetchone()[0]
        if orphans or blobs:
            bad(f"half-stored: {orphans} recordings without audio, {blobs} audio without row")
        return conn.execute(
            "SELECT r.utterance_id, r.recording_id, r.account_id, r.pcm_sha256, r.pcm_bytes,"
            " a.pcm FROM recordings r JOIN audio a USING (recording_id)").fetchall()
    finally:
        conn.close()


def _check_rows(rows: list[tuple[Any, ...]], history: dict[str, LedgerEntry],
                state: StoreState) -> None:
    """Each stored row: once per utterance, its audio intact, sent by a device as stored."""
    bad = state.anomalies.append
    per_utterance = Counter(r[0] for r in rows)
    for uid, n in per_utterance.items():
        if n > 1:
            bad(f"{uid} stored {n} times")
    for uid, rid, account, digest, size, pcm in rows:
        if hashlib.sha256(pcm).hexdigest() != digest or len(pcm) != size:
            bad(f"{rid}: audio does not match its row")
        state.stored[uid] = (rid, account, digest)
        entry = history.get(uid)
        if entry is None:
            bad(f"{rid}: stored, but no device sent {uid}")
        elif (account, digest) != (entry.account_id, entry.pcm_sha256):
            bad(f"{rid}: stored as ({account}, {digest[:12]}), sent as "
                f"({entry.account_id}, {entry.pcm_sha256[:12]})")


def _check_history(history: dict[str, LedgerEntry], state: StoreState) -> None:
    """Each sent utterance: acknowledged ones stored, refused ones not, the rest counted."""
    bad = state.anomalies.append
    for uid, entry in history.items():
        hit = state.stored.get(uid)
        if entry.outcome == "ok":
            if hit is None:
                bad(f"acknowledged {uid} ({entry.recording_id}) is lost")
            elif hit[0] != entry.recording_id:
                bad(f"acknowledged {uid} as {entry.recording_id}, stored as {hit[0]}")
        elif entry.outcome == "fail" and hit is not None:
            bad(f"refused or unsent {uid} is stored as {hit[0]}")
        elif entry.outcome == "info":
            if hit is None:
                state.info_absent += 1
            else:
                state.info_stored += 1


def read_store(db_path: Path, history: dict[str, LedgerEntry]) -> StoreState:
    """Check the store on its own and against ``history`` (utterance_id → last entry)."""
    state = StoreState()
    rows = _load_store(db_path, state.anomalies.append)
    _check_rows(rows, history, state)
    _check_history(history, state)
    return state


def check_packages(data: Path, history: History, requested_at: dict[str, int]) -> list[str]:
    """Every package a link points to is whole, hashes right, and is clean and complete for
    what was acknowledged before its request."""
    anomalies: list[str] = []
    db = connect(data / "overheard.db", readonly=True)
    try:
        linked = list(db.query(
            "SELECT l.link_id, p.package_id, p.request_id, p.file_name, p.account_id"
            " FROM links l LEFT JOIN packages p USING (package_id)"))
        chain = verify_chain(db)
    finally:
        db.conn.close()
    if not chain.ok:
        anomalies.append(f"audit chain broken at {chain.first_bad_seq}: {chain.problem}")
    known = {link["file_name"] for link in linked}
    for path in (data / "packages").iterdir():
        if path.name not in known:
            anomalies.append(f"package file {path.name} on disk with no link to it")
    for link in linked:
        if link["package_id"] is None:
            anomalies.append(f"link {link['link_id']} points to no package row")
            continue
        path = data / "packages" / link["file_name"]
        try:
            with zipfile.ZipFile(path) as zf:
                manifest = json.loads(zf.read("manifest.json"))
                for item in manifest["files"]:
                    if hashlib.sha256(zf.read(item["path"])).hexdigest() != item["sha256"]:
                        anomalies.append(f"{link['package_id']}: {item['path']} hash mismatch")
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            anomalies.append(f"link {link['link_id']} serves a broken package: {exc!r}")
            continue
        judged = history.as_of(requested_at.get(link["request_id"], -1))
        audit = audit_package(path, judged, subject_account=link["account_id"])
        if not audit.clean or audit.missing or audit.duplicated or audit.unattributable:
            anomalies.append(f"package {link['package_id']}: {audit.to_dict()}")
    return anomalies


class History:
    """The fleet's ledgers over the whole iteration, with when each ack arrived (a counter)."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.acked_at: dict[str, int] = {}
        self.tick = 0

    def merge(self, ledger: Ledger) -> None:
        for e in ledger.entries():
            old = self.entries.get(e.utterance_id)
            if old is None or old.outcome != "ok":
                self.entries[e.utterance_id] = e
                if e.outcome == "ok":
                    self.acked_at.setdefault(e.utterance_id, self.tick)
        self.tick += 1

    def as_of(self, tick: int) -> list[LedgerEntry]:
        """The history for a package requested at ``tick``: what was acknowledged before
        must be in it (``ok``); anything later may be (judged as ``info``)."""
        return [e if self.acked_at.get(e.utterance_id, tick) < tick
                else e.model_copy(update={"outcome": "info"}) for e in self.entries.values()]


async def wait_reached(server: ServerProcess, point: str) -> str:
    """The server's next stdout line: ``reached <point>``."""
    assert server.proc.stdout is not None
    line = (await server.proc.stdout.readline()).decode().strip()
    assert line == f"reached {point}", f"expected the crash point, got {line!r}"
    return line


async def kill(server: ServerProcess) -> None:
    server.kill()
    await server.wait()


def crash_n(point: str, rng: random.Random, utts: list[Utterance], devices: int,
            smallest_household: int) -> int:
    """Which pass of the point crashes: always one the crash run (``utts`` from ``devices``)
    reaches."""
    if point == "ingest.upgraded":
        return rng.randint(1, devices)
    if point == "ingest.mid_utterance":
        return rng.randint(5, 8 * len(utts) // 2)  # ≥ 2 chunks of ≤ 500 ms per ~3 s utterance
    if point == "ingest.after_commit":
        return rng.randint(2, len(utts) // 2)
    if point == "export.mid_build":
        return rng.randint(1, max(1, smallest_household - 1))
    return 1  # export.before_release: the first package built


async def _run_until_crash(server: ServerProcess, point: str, world: World,
                           first: list[Utterance], later: list[Utterance], seed: int,
                           history: History, requested_at: dict[str, int]
                           ) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Run 1: ``first`` streamed and acknowledged, then ``later`` streamed (and, at an
    export point, every household of ``first`` asks for its data) until the crash point is
    reached; the server is killed there. The registrations and the access requests."""
    exporting = point.startswith("export.")
    async with Client(server.handle.url, ADMIN) as client:
        regs = await register_world(client, world.households)
        if first:
            # Acknowledged before the crash run (and, for exports, before any request).
            ledger = Ledger()
            await stream(server.handle.url, pair_with_devices(first, regs), ledger,
                         seed=seed, options=RETRY)
            assert ledger.counts()["ok"] == len(first), ledger.counts()
            history.merge(ledger)
        ledger = Ledger()
        fleet = asyncio.create_task(stream(server.handle.url, pair_with_devices(later, regs),
                                           ledger, seed=seed, options=NO_RETRY))
        requests: dict[str, tuple[str, str]] = {}
        if exporting:
            for key in sorted({u.household for u in first}):
                token = regs[key].user_token
                req = await client.privacy_request("access", user_token=token)
                requests[req.request_id] = (key, token)
                requested_at[req.request_id] = history.tick
        reached = asyncio.create_task(wait_reached(server, point))
        done, _ = await asyncio.wait({reached, fleet}, timeout=REACH_TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        assert reached in done, f"{point} was never reached"
        reached.result()
        # Paused mid-build: that request has no link, and nothing served is partial.
        for rid, (_key, token) in requests.items():
            st = await client.get_privacy_request(rid, token=token)
            if st.status != "complete":
                assert st.download_url is None, st
        await kill(server)
        await fleet
        history.merge(ledger)
    return regs, requests


async def _resend(server: ServerProcess, utts: list[Utterance], regs: dict[str, Any],
                  history: History, seed: int, state: StoreState) -> list[str]:
    """The devices resend what was not acknowledged: all of it is acknowledged now, and
    exactly the unacknowledged recordings that were stored come back as duplicates."""
    again = [u for u in utts if history.entries.get(u.utterance_id) is None
             or history.entries[u.utterance_id].outcome != "ok"]
    ledger = Ledger()
    result = await stream(server.handle.url, pair_with_devices(again, regs), ledger,
                          seed=seed + 1, options=RETRY)
    assert ledger.counts() == {"ok": len(again), "fail": 0, "info": 0}, ledger.counts()
    history.merge(ledger)
    if result.stats.duplicates != state.info_stored:
        return [f"{result.stats.duplicates} duplicate acks on resend, but "
                f"{state.info_stored} unacknowledged recordings were stored"]
    return []


async def _check_served(client: Client, regs: dict[str, Any],
                        requests: dict[str, tuple[str, str]], history: History,
                        summary: dict[str, Any]) -> list[str]:
    """After the restart: every request finishes (the interrupted export requeued), and
    every household lists exactly its own recordings."""
    anomalies: list[str] = []
    for rid, (_key, token) in requests.items():
        st = await client.get_privacy_request(rid, token=token, wait=30)
        if st.status == "error":
            assert st.error, st  # failed visibly, with a reason
        elif st.status != "complete":
            anomalies.append(f"request {rid} stuck in {st.status} after restart")
    if requests:
        audit = await client.audit(limit=5000)
        summary["requeued"] = sum(e.action == "export.requeued" for e in audit.entries)
        assert summary["requeued"] >= 1, summary
    for key, reg in regs.items():
        listed = {r.recording_id for r in await client.all_my_recordings(reg.user_token)}
        own = {e.recording_id for e in history.entries.values() if e.household == key}
        if listed != own:
            anomalies.append(f"{key} lists {len(listed)} recordings, owns {len(own)}")
    return anomalies


async def _check_after_restart(server: ServerProcess, data: Path, point: str,
                               utts: list[Utterance], regs: dict[str, Any],
                               requests: dict[str, tuple[str, str]], history: History,
                               seed: int, summary: dict[str, Any]) -> list[str]:
    """Run 2 on the same data dir: the store against the history, the resend, what is
    served, and the store once more."""
    state = read_store(data / "overheard.db", history.entries)
    anomalies = list(state.anomalies)
    summary.update(info_stored=state.info_stored, info_absent=state.info_absent)
    if point == "ingest.after_commit":
        # The crash was between a commit and its ack: that recording is info and stored.
        assert state.info_stored >= 1, summary
    if point == "ingest.mid_utterance":
        assert state.info_absent >= 1, summary  # the utterance cut in half is not there
    anomalies += await _resend(server, utts, regs, history, seed, state)
    async with Client(server.handle.url, ADMIN) as client:
        anomalies += await _check_served(client, regs, requests, history, summary)
    final = read_store(data / "overheard.db", history.entries)
    anomalies += final.anomalies
    if len(final.stored) != len(utts):
        anomalies.append(f"{len(final.stored)} stored after resend, {len(utts)} sent")
    return anomalies


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(POINTS))
async def test_sigkill_at_a_named_point_loses_nothing_acknowledged(
        tmp_path: Path, name: str, seed: int) -> None:
    point = POINTS[name]
    rng = random.Random(f"jepsen/{name}/{seed}")
    world = World.build(seed, background=HOUSEHOLDS)
    utts = world.traffic(DAYS)
    data = tmp_path / "data"
    history = History()
    requested_at: dict[str, int] = {}
    summary: dict[str, Any] = {"point": name, "seed": seed, "utterances": len(utts)}

    # -- run 1: the workload, with the crash point armed -------------------------------
    # Exports need recordings first; a crash after an upgrade is more telling when acked
    # recordings already exist: those points stream half the traffic before the crash run.
    split = point.startswith("export.") or point == "ingest.upgraded"
    first, later = (utts[: len(utts) // 2], utts[len(utts) // 2:]) if split else ([], utts)
    by_household = Counter(u.household for u in first)
    n = crash_n(point, rng, later, len({u.device_serial for u in later}),
                min(by_household.values()) if by_household else 0)
    if point == "ingest.upgraded":
        n += len({u.device_serial for u in first})  # one upgrade per device already made
    summary["crash_at"] = f"{point}:{n}"
    server = await start_server_process(data, admin_token=ADMIN,
                                        env={"OVERHEARD_CRASH_AT": f"{point}:{n}"})
    try:
        regs, requests = await _run_until_crash(server, point, world, first, later, seed,
                                                history, requested_at)
    finally:
        await kill(server)
    summary["after_crash"] = dict(Counter(e.outcome for e in history.entries.values()))

    # -- restart on the same data dir; check the store against the history --------------
    server = await start_server_process(data, admin_token=ADMIN)
    try:
        anomalies = await _check_after_restart(server, data, point, utts, regs, requests,
                                               history, seed, summary)
    finally:
        await kill(server)
    anomalies += check_packages(data, history, requested_at)
    summary["anomalies"] = anomalies
    print(json.dumps(summary))
    assert not anomalies, json.dumps(summary, indent=2)
