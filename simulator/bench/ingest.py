"""``overheard bench``: measure the backend against the floors it cannot beat.

``bench ingest`` streams utterances from many concurrent device connections to a backend
running in its own process (so client and server each get a core), then runs the same
load against two floors measured in the same run:

- the *WebSocket floor*: a bare aiohttp WebSocket sink, also in its own process, that reads
  the same frames, discards the audio and acknowledges each ``utterance.end`` at once;
- the *storage floor*: the same rows and audio blobs inserted straight into SQLite with
  plain ``sqlite3`` in batches, with the backend's own schema and pragmas (WAL,
  ``synchronous`` as configured).

By default the load is a closed loop: each device waits for its answer before its next
utterance, which finds the most the server takes (and there, by Little's law, p50 latency
is about devices / rate). ``--rate R`` makes it an open loop instead: R utterances/s in
all, each sent when it is due whatever the answers do, latency timed from that moment;
that is how to read ack latency at a given load.

It prints utterances/s, MB/s and ack latency p50/p99 for each, and ours/floor ratios, plus
the serving side's CPU time per utterance (backend process, sink process, inserting thread),
which stays meaningful when other work shares the machine and wall-clock rates wander.
Progress goes to stderr; the table (or ``--json``) to stdout.

Shared pieces for other ``bench`` subcommands: :func:`percentile`, :class:`Measurement`,
:func:`ratio_table`, :func:`emit`, :func:`progress`, :func:`pcm_pool` and
:func:`drive_devices`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tqdm import tqdm

from contract.audio import CHANNELS, RATE, WIDTH, duration_ms
from contract.stream import end_json, start_json, stored_json
from simulator.fleet.client import Client
from simulator.fleet.homes import register_world
from simulator.world.households import HouseholdSpec, World

FRAME_LIMIT = 64 * 1024
"""Largest binary frame the device protocol allows."""


# -- shared helpers ---------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``); None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Measurement:
    """One measured run: how many utterances, how long, how many audio bytes, ack latencies."""

    label: str
    utterances: int
    seconds: float
    audio_bytes: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_seconds: float | None = None
    """CPU time of the serving side (server process, sink process, inserting thread)."""
    send_lag_ms: float | None = None
    """Open loop only: the most the client fell behind its sending schedule."""

    @property
    def per_second(self) -> float:
        return self.utterances / self.seconds if self.seconds > 0 else math.nan

    @property
    def mb_per_second(self) -> float:
        return self.audio_bytes / self.seconds / 1e6 if self.seconds > 0 else math.nan

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def cpu_ms_per_utterance(self) -> float:
        """Serving-side CPU per utterance: steadier than wall time on a shared machine."""
        if self.cpu_seconds is None or not self.utterances:
            return math.nan
        return self.cpu_seconds * 1000 / self.utterances

    def as_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 3)

        return {
            "label": self.label, "utterances": self.utterances, "seconds": round(self.seconds, 4),
            "audio_bytes": self.audio_bytes, "utterances_per_s": num(self.per_second),
            "mb_per_s": num(self.mb_per_second), "ack_p50_ms": num(self.p50_ms),
            "ack_p99_ms": num(self.p99_ms), "errors": self.errors,
            "server_cpu_ms_per_utterance": num(self.cpu_ms_per_utterance),
            **({} if self.send_lag_ms is None else {"send_lag_ms": num(self.send_lag_ms)}),
        }


def rate_ratios(ours: Measurement, floors: dict[str, Measurement]) -> dict[str, float]:
    """ours/floor of utterances per second, per floor name."""
    return {name: ours.per_second / floor.per_second for name, floor in floors.items()
            if floor.per_second > 0}


def ratio_table(ours: Measurement, floors: dict[str, Measurement],
                compared: dict[str, float] | None = None) -> str:
    """A plain-text table of every measurement followed by the ``compared`` ours/floor
    ratios (default: :func:`rate_ratios`)."""

    def cell(x: float, fmt: str) -> str:
        return "-" if math.isnan(x) else format(x, fmt)

    rows = [ours, *floors.values()]
    width = max([len(m.label) for m in rows] + [len(f"ours/{name}") for name in floors]) + 2
    lines = [f"{'':<{width}}{'utt/s':>10}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
             f"{'cpu ms/utt':>12}"]
    for m in rows:
        lines.append(f"{m.label:<{width}}{cell(m.per_second, ',.1f'):>10}"
                     f"{cell(m.mb_per_second, '.1f'):>9}{cell(m.p50_ms, '.1f'):>9}"
                     f"{cell(m.p99_ms, '.1f'):>9}{m.errors:>8}"
                     f"{cell(m.cpu_ms_per_utterance, '.3f'):>12}")
    if compared is None:
        compared = rate_ratios(ours, floors)
    for name, value in compared.items():
        lines.append(f"{'ours/' + name:<{width}}{value:>10.2f}")
    return "\n".join(lines)


def emit(text: str, payload: dict[str, Any], as_json: bool) -> None:
    """Print the result: the table, or JSON, to stdout."""
    print(json.dumps(payload, indent=2, sort_keys=True) if as_json else text, flush=True)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; else ``None``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def say(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def progress(total: int, desc: str) -> tqdm:
    """A progress bar on stderr (quiet when stderr is not a terminal)."""
    return tqdm(total=total, desc=desc, unit="utt", file=sys.stderr, leave=False,
                disable=None, dynamic_ncols=True)


def pcm_pool(seconds: float, *, count: int = 16, seed: int = 0) -> list[bytes]:
    """``count`` deterministic s16le clips of ``seconds`` each: tones under seeded noise."""
    rng = random.Random(seed)
    samples = int(seconds * RATE)
    pool: list[bytes] = []
    for i in range(count):
        noise = bytearray(rng.randbytes(samples * WIDTH))
        freq = 110.0 * (i + 2)
        # A quiet tone every 16th sample keeps clips distinct without per-sample Python cost.
        for s in range(0, samples, 16):
            v = int(3000 * math.sin(2 * math.pi * freq * s / RATE)) & 0xFFFF
            noise[2 * s] = v & 0xFF
            noise[2 * s + 1] = v >> 8
        pool.append(bytes(noise))
    return pool


def utterance_ids(count: int, seed: int) -> list[str]:
    """Deterministic UUIDs: the same seed gives the same ids."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


async def drive_devices(
    url: str,
    tokens: Sequence[str],
    utterances: int,
    pool: Sequence[bytes],
    *,
    label: str,
    seed: int = 0,
    on_ack: Callable[[], None] | None = None,
    server_pid: int | None = None,
    rate: float | None = None,
) -> Measurement:
    """Stream ``utterances`` from ``len(tokens)`` concurrent connections; measure them.

    Each utterance is start, PCM (≤ 64 KiB frames), end. The clock starts when every
    connection is open.

    - Closed loop (``rate`` None): each connection waits for the answer before its next
      utterance, so the load is as much as the server takes. Latency is from the end frame
      to the answer.
    - Open loop (``rate`` utterances/s in all): utterance ``i`` (of all) is due at
      ``i / rate`` seconds and is sent then, whether or not earlier answers have come back
      (the server answers each connection in order). Latency is from the moment it was
      due to its answer, so time the sender spent held back (by TCP flow control, or by
      its own lateness) counts too, instead of hiding the wait.
    """
    drive = _Drive(url.replace("http", "ws", 1) + "/v1/device/stream", len(tokens), pool,
                   label, on_ack, rate)
    ids = utterance_ids(utterances, seed)
    per_conn = [ids[i::len(tokens)] for i in range(len(tokens))]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(drive.device(session, t, per_conn[n], n))
                 for n, t in enumerate(tokens)]
        await _all_connected(drive.all_ready, tasks)
        cpu_before = process_cpu_seconds(server_pid) if server_pid else None
        started = drive.clock_start = time.perf_counter()
        drive.go.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu_after = process_cpu_seconds(server_pid) if server_pid else None
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Measurement(label, utterances - drive.errors, elapsed, drive.audio, drive.latencies,
                       drive.errors, cpu, send_lag_ms=drive.lag * 1000 if rate else None)


async def _all_connected(all_ready: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every connection is open; a connection that failed first raises."""
    waiter = asyncio.create_task(all_ready.wait())
    watched: list[asyncio.Task[Any]] = [waiter, *tasks]
    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:  # a connection failed before the start
        waiter.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            t.result()


Script = list[tuple[str, list[bytes], str, int]]
"""One connection's utterances as frames: (start, PCM chunks, end, PCM bytes)."""


class _Drive:
    """The shared state of one :func:`drive_devices` run: the start signal and the figures."""

    def __init__(self, ws_url: str, connections: int, pool: Sequence[bytes], label: str,
                 on_ack: Callable[[], None] | None, rate: float | None) -> None:
        self.ws_url, self.connections, self.pool, self.label = ws_url, connections, pool, label
        self.on_ack, self.rate = on_ack, rate
        self.latencies: list[float] = []
        self.audio = 0
        self.errors = 0
        self.go = asyncio.Event()
        self.clock_start = 0.0
        self.lag = 0.0
        """Open loop: how far behind its schedule the client sent, at worst (seconds)."""
        self.ready = 0
        self.all_ready = asyncio.Event()

    def script(self, mine: list[str], n: int) -> Script:
        # Frames are rendered before the clock starts: the client shares the machine with the
        # server, and its own work should not be what is measured.
        script = []
        for k, uid in enumerate(mine):
            pcm = self.pool[(n + k) % len(self.pool)]
            start = start_json(uid, f"2024-05-01T08:{k // 60 % 60:02d}:{k % 60:02d}.000Z")
            chunks = [pcm[i:i + FRAME_LIMIT] for i in range(0, len(pcm), FRAME_LIMIT)]
            end = end_json(uid, "wie wird das Wetter morgen", "de-DE")
            script.append((start, chunks, end, len(pcm)))
        return script

    async def device(self, session: aiohttp.ClientSession, token: str, mine: list[str],
                     n: int) -> None:
        ws = await session.ws_connect(self.ws_url, headers={"Authorization": f"Bearer {token}"},
                                      compress=0, max_msg_size=0, autoping=True)
        script = self.script(mine, n)
        self.ready += 1
        if self.ready == self.connections:
            self.all_ready.set()
        await self.go.wait()
        # (when each answer's clock started, bytes) in send order; answers come in that order
        waiting: collections.deque[tuple[float, int]] = collections.deque()
        reader = (asyncio.create_task(self.answers(ws, waiting, len(script)))
                  if self.rate else None)
        try:
            for k, (start, chunks, end, size) in enumerate(script):
                if self.rate:
                    await self.pace(n + k * self.connections, waiting, size)
                await ws.send_str(start)
                for chunk in chunks:
                    await ws.send_bytes(chunk)
                await ws.send_str(end)
                if reader is None:
                    waiting.append((time.perf_counter(), size))
                    await self.answer(ws, waiting)
            if reader is not None:
                await reader
        finally:
            if reader is not None and not reader.done():
                reader.cancel()  # the sending failed: no answers are coming
                await asyncio.gather(reader, return_exceptions=True)
            await ws.close()

    async def pace(self, index: int, waiting: collections.deque[tuple[float, int]],
                   size: int) -> None:
        """Open loop: wait for utterance ``index``'s due time; its clock starts then."""
        assert self.rate is not None
        due = self.clock_start + index / self.rate
        ahead = due - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)  # pacing the load, not waiting for a result
        self.lag = max(self.lag, time.perf_counter() - due)
        waiting.append((due, size))

    async def answer(self, ws: aiohttp.ClientWebSocketResponse,
                     waiting: collections.deque[tuple[float, int]]) -> None:
        msg = await ws.receive()
        now = time.perf_counter()
        since, size = waiting.popleft()
        self.latencies.append((now - since) * 1000)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"{self.label}: stream closed: {msg.type} {msg.data!r}")
        if '"utterance.stored"' not in msg.data:
            self.errors += 1
        else:
            self.audio += size
        if self.on_ack is not None:
            self.on_ack()

    async def answers(self, ws: aiohttp.ClientWebSocketResponse,
                      waiting: collections.deque[tuple[float, int]], count: int) -> None:
        for _ in range(count):
            await self.answer(ws, waiting)


# -- the floors --------------------------------------------------------------------------

async def _sink(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=4 * FRAME_LIMIT)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = json.loads(msg.data)
            if frame.get("type") == "utterance.end":
                uid = frame["utterance_id"]
                await ws.send_str(stored_json(uid, "rec_" + uid[:8], False))
    return ws


async def serve_sink(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/v1/device/stream", _sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"listening on http://{host}:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


async def start_sink_process() -> tuple[asyncio.subprocess.Process, str]:
    """``python -m simulator.cli bench sink --port 0``: ``(process, URL)`` once it listens."""
    from simulator.fleet.embedded import spawn_listening

    return await spawn_listening("-m", "simulator.cli", "bench", "sink", "--port", "0", what="sink")


def storage_floor(path: Path, utterances: int, pool: Sequence[bytes], *, batch: int,
                  synchronous: str, seed: int = 0,
                  on_batch: Callable[[int], None] | None = None) -> Measurement:
    """Insert ``utterances`` recordings + audio blobs with plain sqlite3, ``batch`` per commit.

    The schema and pragmas are the backend's own (its migrations and connection setup), so
    the only difference from the backend is everything around the INSERTs.
    """
    from backend.storage.db import connect
    from backend.storage.migrations import MIGRATIONS

    db = connect(path, synchronous=synchronous)
    for _name, migrate in MIGRATIONS:
        migrate(db)
    conn = db.conn  # from here on plain sqlite3
    ids = utterance_ids(utterances, seed + 1)
    audio = 0
    started, cpu_started = time.perf_counter(), time.thread_time()
    for lo in range(0, utterances, batch):
        rows, blobs = [], []
        for k in range(lo, min(lo + batch, utterances)):
            pcm = pool[k % len(pool)]
            rid = f"rec_{k:020d}"
            rows.append((rid, ids[k], "acc_floor", "dev_floor", "SN-FLOOR",
                         "2024-05-01T08:00:00.000Z", "2024-05-01T08:00:00.000Z",
                         duration_ms(len(pcm)), "wie wird das Wetter morgen", "de-DE",
                         RATE, WIDTH, CHANNELS, len(pcm), "0" * 64))
            blobs.append((rid, pcm))
            audio += len(pcm)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO recordings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO audio (recording_id, pcm) VALUES (?, ?)", blobs)
        conn.execute("COMMIT")
        if on_batch is not None:
            on_batch(len(rows))
    elapsed = time.perf_counter() - started
    cpu = time.thread_time() - cpu_started
    conn.close()
    return Measurement("storage floor", utterances, elapsed, audio, cpu_seconds=cpu)


# -- bench ingest --------------------------------------------------------------------------

async def register_devices(url: str, admin_token: str, devices: int, seed: int) -> list[str]:
    """A household of one device per device, registered by the fleet (16 at a time); the
    device tokens."""
    world = World.build(seed, households=[HouseholdSpec(f"b{n:05d}", members=1, devices=1)
                                          for n in range(devices)], voice="fast")
    async with Client(url, admin_token, limit=50) as client:
        homes = await register_world(client, world.households, at_once=16)
    return [d.token for home in homes.values() for d in home.devices.values()]


WRITER_COUNTERS = ("overheard_writer_transactions_total", "overheard_writer_writes_total",
                   "overheard_writer_wal_syncs_total", "overheard_writer_checkpoints_total")


async def writer_counters(url: str) -> dict[str, int]:
    """The backend's writer counters from ``/metrics`` (transactions, writes, WAL syncs,
    checkpoints): how the load was committed."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in WRITER_COUNTERS:
            found[name.removeprefix("overheard_writer_").removesuffix("_total")] = int(float(value))
    return found


def writer_line(counters: dict[str, int]) -> str:
    """``writer: 61 transactions (82.0 writes each), 40 WAL syncs, 55 checkpoints``."""
    tx, writes = counters.get("transactions", 0), counters.get("writes", 0)
    each = f" ({writes / tx:.1f} writes each)" if tx else ""
    return (f"writer: {tx:,} transactions{each}, {counters.get('wal_syncs', 0):,} WAL syncs, "
            f"{counters.get('checkpoints', 0):,} background checkpoints")


async def run_ingest(devices: int, utterances: int, seconds: float, *, data: Path,
                     floors: bool, seed: int, rate: float | None = None,
                     ) -> tuple[Measurement, dict[str, Measurement], dict[str, int]]:
    from backend.config import Config
    from simulator.fleet.embedded import start_server_process, stop_process

    pool = pcm_pool(seconds, seed=seed)
    admin_token = "adm_bench_0123456789"
    say(f"starting backend (data in {data})")
    server = await start_server_process(data / "backend", admin_token=admin_token)
    try:
        say(f"registering {devices} devices at {server.handle.url}")
        tokens = await register_devices(server.handle.url, admin_token, devices, seed)
        with progress(utterances, "overheard") as bar:
            ours = await drive_devices(server.handle.url, tokens, utterances, pool,
                                       label="overheard", seed=seed, rate=rate,
                                       on_ack=lambda: bar.update(1), server_pid=server.proc.pid)
        counters = await writer_counters(server.handle.url)
    finally:
        server.kill()
        await server.wait()
    results: dict[str, Measurement] = {}
    if not floors:
        return ours, results, counters
    say("starting WebSocket sink")
    sink, sink_url = await start_sink_process()
    try:
        with progress(utterances, "ws floor") as bar:
            results["ws floor"] = await drive_devices(
                sink_url, [f"sink-{n}" for n in range(devices)], utterances, pool,
                label="ws floor", seed=seed, rate=rate, on_ack=lambda: bar.update(1),
                server_pid=sink.pid)
    finally:
        await stop_process(sink)
    say("inserting into SQLite directly")
    config = Config(data_dir=data)
    with progress(utterances, "storage floor") as bar:
        results["storage floor"] = await asyncio.to_thread(
            storage_floor, data / "floor.db", utterances, pool, batch=config.max_batch,
            synchronous=config.synchronous, seed=seed, on_batch=bar.update)
    return ours, results, counters
