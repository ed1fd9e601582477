"""``overheard bench export``: time one access package against the floor it cannot beat.

A fresh data dir gets one account with ``--recordings`` recordings of ``--seconds`` of
audio, inserted straight through the backend's :class:`~backend.storage.Store`. Then, in
the same run and on the same warm page cache:

- the *floor*: the same audio blobs read out of SQLite (one read-only connection, the
  same query order) and written into one file, fsynced, as the export job does with its
  zip;
- *ours*: an embedded backend; the account holder files an access request over HTTP and
  long-polls its status until ``complete``. Timed from the POST to the answer that says
  ``complete``: the job reads, hashes, zips, fsyncs, records the package and mints the
  link.

Peak RSS growth is the process's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` before the request) minus its resident size just before.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import sqlite_utils

from backend.config import Config
from backend.ids import new_token, token_hash
from backend.storage import Store
from backend.storage.db import connect
from contract.audio import CHANNELS, RATE, WIDTH, duration_ms
from simulator.bench.ingest import proc_status_kb

ACCOUNT = "acc_bench_export"
DEVICE = "dev_bench_export"
SERIAL = "BENCH-EXPORT-1"


@dataclass
class ExportFigures:
    """What one run measured."""

    recordings: int
    audio_bytes: int
    floor_seconds: float
    ours_seconds: float
    package_bytes: int
    rss_growth_bytes: int | None
    rss_method: str

    @property
    def ratio(self) -> float:
        return self.ours_seconds / self.floor_seconds if self.floor_seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "recordings": self.recordings, "audio_bytes": self.audio_bytes,
            "package_bytes": self.package_bytes,
            "floor_seconds": round(self.floor_seconds, 4),
            "ours_seconds": round(self.ours_seconds, 4),
            "ours_mb_per_s": round(self.package_bytes / self.ours_seconds / 1e6, 1),
            "floor_mb_per_s": round(self.audio_bytes / self.floor_seconds / 1e6, 1),
            "ours_over_floor": round(self.ratio, 3),
            "rss_growth_mb": (round(self.rss_growth_bytes / 2**20, 1)
                              if self.rss_growth_bytes is not None else None),
            "rss_method": self.rss_method,
        }


def seed(data: Path, recordings: int, pool: list[bytes]) -> tuple[str, int]:
    """Create the account, its device and recordings; returns (user token, audio bytes)."""
    store = Store(Path(data) / "overheard.db")
    token = new_token("usr")
    at = "2024-05-01T08:00:00.000Z"
    audio = 0
    try:
        def base(db: sqlite_utils.Database) -> None:
            db.table("accounts").insert({"account_id": ACCOUNT, "name": "Bench Household",
                                   "email": "bench-export@example.org", "locale": "de-DE",
                                   "address": None, "created_at": at, "erased_at": None})
            db.table("tokens").insert({"token_sha256": token_hash(token), "kind": "user",
                                 "subject_id": ACCOUNT, "created_at": at, "revoked_at": None})
            db.table("devices").insert({"device_id": DEVICE, "serial": SERIAL, "model": "Echo Dot",
                                  "room": "Kitchen", "account_id": ACCOUNT, "registered_at": at,
                                  "deregistered_at": None})

        store.write_sync(base)
        batch = 250
        for lo in range(0, recordings, batch):
            rows, blobs = [], []
            for k in range(lo, min(lo + batch, recordings)):
                pcm = pool[k % len(pool)]
                rid = f"rec_{k:020x}"
                minute, second = divmod(k, 60)
                recorded = f"2024-05-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:{second % 60:02d}.000Z"
                rows.append({
                    "recording_id": rid, "utterance_id": f"utt-bench-{k}", "account_id": ACCOUNT,
                    "device_id": DEVICE, "serial": SERIAL, "recorded_at": recorded,
                    "stored_at": recorded, "duration_ms": duration_ms(len(pcm)),
                    "transcript": f"Alexa, wie wird das Wetter morgen in Köln? ({k})",
                    "locale": "de-DE", "rate": RATE, "width": WIDTH, "channels": CHANNELS,
                    "pcm_bytes": len(pcm), "pcm_sha256": hashlib.sha256(pcm).hexdigest(),
                })
                blobs.append({"recording_id": rid, "pcm": pcm})
                audio += len(pcm)

            def insert(db: sqlite_utils.Database, rows: list[Any] = rows,
                       blobs: list[Any] = blobs) -> None:
                db.table("recordings").insert_all(rows)
                db.table("audio").insert_all(blobs)

            store.write_sync(insert)
    finally:
        store.close()
    return token, audio


def copy_floor(data: Path, out: Path) -> tuple[float, int]:
    """Read the account's audio out of SQLite into one file, fsynced; (seconds, bytes)."""
    started = time.perf_counter()
    db = connect(Path(data) / "overheard.db", readonly=True)
    total = 0
    try:
        cur = db.conn.execute(
            "SELECT a.pcm FROM recordings r JOIN audio a ON a.recording_id = r.recording_id"
            " WHERE r.account_id = ? ORDER BY r.recorded_at, r.recording_id", [ACCOUNT])
        with open(out, "wb") as fh:
            while batch := cur.fetchmany(32):
                for (pcm,) in batch:
                    fh.write(pcm)
                    total += len(pcm)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        db.conn.close()
    return time.perf_counter() - started, total


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_status_kb("VmHWM") is not None


async def time_ours(data: Path, token: str) -> tuple[float, int, int | None, str]:
    """File an access request and wait for ``complete``; (seconds, package bytes, RSS growth)."""
    from simulator.fleet.embedded import embedded_backend

    config = Config(data_dir=data, admin_token="adm_bench_export")
    async with embedded_backend(config) as handle, aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {token}"}
        exact = reset_peak_rss()
        before_kb = proc_status_kb("VmRSS")
        before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        async with session.post(handle.url + "/v1/privacy/requests", json={"kind": "access"},
                                headers=auth) as resp:
            body = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"request refused: {resp.status} {body}")
        rid = body["request_id"]
        status = body
        while status["status"] not in ("complete", "error", "denied", "canceled"):
            async with session.get(f"{handle.url}/v1/privacy/requests/{rid}?wait=60",
                                   headers=auth) as resp:
                status = await resp.json()
        elapsed = time.perf_counter() - started
        if status["status"] != "complete":
            raise RuntimeError(f"export ended {status['status']}: {status.get('error')}")
        if exact and before_kb is not None:
            growth: int | None = ((proc_status_kb("VmHWM") or 0) - before_kb) * 1024
            method = "VmHWM - VmRSS"
        else:
            after_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            growth = (after_max - before_max) * 1024
            method = "ru_maxrss delta (lower bound)"
        size = sum(p.stat().st_size for p in (Path(data) / "packages").iterdir())
    return elapsed, size, growth, method


def run(recordings: int, seconds: float, data: Path | None = None) -> ExportFigures:
    """Seed, measure the floor, measure ours; all in this process."""
    from simulator.bench.ingest import pcm_pool

    pool = pcm_pool(seconds, count=16, seed=7)
    with tempfile.TemporaryDirectory(prefix="overheard-bench-export-") as tmp:
        root = data or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        backend_dir = root / "backend"
        token, audio = seed(backend_dir, recordings, pool)
        floor_s, floor_bytes = copy_floor(backend_dir, root / "floor.pcm")
        (root / "floor.pcm").unlink()
        if floor_bytes != audio:
            raise RuntimeError(f"floor copied {floor_bytes} bytes, expected {audio}")
        ours_s, size, growth, method = asyncio.run(time_ours(backend_dir, token))
    return ExportFigures(recordings, audio, floor_s, ours_s, size, growth, method)


def table(f: ExportFigures, seconds: float) -> str:
    d = f.as_dict()
    rss = f"{d['rss_growth_mb']} MB ({f.rss_method})" if d["rss_growth_mb"] is not None else "n/a"
    return "\n".join([
        f"bench export: {f.recordings} recordings of {seconds:g} s "
        f"({f.audio_bytes / 1e6:.1f} MB audio), package {f.package_bytes / 1e6:.1f} MB",
        f"  floor (SQLite -> one file, fsync)  {f.floor_seconds:8.3f} s  "
        f"{d['floor_mb_per_s']:8.1f} MB/s",
        f"  overheard (request -> complete)    {f.ours_seconds:8.3f} s  "
        f"{d['ours_mb_per_s']:8.1f} MB/s",
        f"  ours/floor                         {f.ratio:8.2f}x",
        f"  peak RSS growth                    {rss}",
    ])
