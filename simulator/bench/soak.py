"""``overheard bench soak``: a bounded soak of the whole backend, judged by the auditor.

A backend subprocess (its own core) takes a fleet of devices streaming continuously for
``--seconds`` while access requests go through the full email flow at even intervals
(request → code from the outbox → verify → package → link → download). Every
``--interval`` seconds it prints the server's own counters (utterances and audio bytes
stored, from ``/metrics``), the server process's RSS (``/proc/<pid>/status``), requests
finished and errors so far. At the end every downloaded package is audited against the
fleet's ledger: it must be clean (nothing foreign, nothing corrupt) and complete for
everything acknowledged before its request was filed.

The floor, measured in the same run before the backend starts: the same fleet client
streaming the same world's utterances to a bare WebSocket sink (``bench ingest``'s floor,
which acknowledges each utterance without storing anything). Both rates are steady-state:
counted after the first third of their window, so connecting 500 devices is not in either.
ours/floor says what storage, durability, auth and concurrent exports cost relative to a
server that does nothing; on a small machine the client itself (voice synthesis, framing)
is part of both.

Exit 0 when there were no errors and every package was clean and complete, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from simulator.bench.ingest import proc_status_kb, say, start_sink_process
from simulator.fleet.access import AccessOutcome, access_flow
from simulator.fleet.client import Client, ClientError
from simulator.fleet.device import DeviceOptions
from simulator.fleet.embedded import ServerProcess, start_server_process, stop_process
from simulator.fleet.homes import DeviceAccount, Home, register_world
from simulator.fleet.ledger import Ledger, LedgerEntry
from simulator.fleet.streaming import pair_with_devices, stream
from simulator.judge.audit import AuditError, audit_package
from simulator.world.households import HouseholdSpec, Utterance, World

ADMIN_TOKEN = "adm_soak_0123456789"
DEVICES_PER_HOUSEHOLD = 2
_METRIC = re.compile(r"^(overheard_utterances_stored_total|overheard_audio_bytes_stored_total"
                     r"|overheard_writer_queue_depth)\s+([0-9.e+]+)$", re.M)


class TimedLedger(Ledger):
    """A ledger that also notes when each utterance was acknowledged (monotonic seconds)."""

    def __init__(self) -> None:
        self.acked_at: dict[str, float] = {}
        super().__init__()

    def record(self, entry: LedgerEntry) -> None:
        super().record(entry)
        if entry.outcome == "ok":
            self.acked_at.setdefault(entry.utterance_id, time.monotonic())

    def as_of(self, moment: float) -> list[LedgerEntry]:
        """The history a package requested at ``moment`` is judged by: what was acknowledged
        before must be in it (``ok``); anything later may be (``info``)."""
        return [e if self.acked_at.get(e.utterance_id, math.inf) < moment
                else e.model_copy(update={"outcome": "info"}) for e in self.entries()]


@dataclass
class Sample:
    """One interval."""

    t: float
    utterances_per_s: float
    mb_per_s: float
    rss_mb: float
    writer_queue: int
    """Writes waiting for the server's writer thread at the end of the interval."""
    requests_done: int
    errors: int


@dataclass
class PackageVerdict:
    request_id: str
    household: str
    recordings: int
    clean: bool
    missing: int
    foreign: int
    corrupt: int
    duplicated: int
    unattributable: int

    @property
    def ok(self) -> bool:
        return self.clean and not (self.missing or self.duplicated or self.unattributable)


@dataclass
class SoakResult:
    devices: int
    seconds: float
    requests: int
    floor_utterances_per_s: float
    utterances: int
    utterances_per_s: float
    """Steady state: from the first sample after a third of the run to the end."""
    mb_per_s: float
    ratio_to_floor: float
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    errors: int
    error_detail: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    packages: list[PackageVerdict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.errors == 0 and len(self.packages) == self.requests
                and all(p.ok for p in self.packages))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["packages"] = [{**asdict(p), "ok": p.ok} for p in self.packages]
        return out


def soak_world(devices: int, seed: int) -> World:
    households = math.ceil(devices / DEVICES_PER_HOUSEHOLD)
    specs = [HouseholdSpec(f"h{i + 1:04d}", devices=DEVICES_PER_HOUSEHOLD)
             for i in range(households)]
    # hundreds of speakers and nobody listens: the letter splice keeps the client's
    # synthesis cheap and needs no render cache
    return World.build(seed, households=specs, voice="fast")


def _traffic(world: World, start_day: float, utterances: int, devices: int) -> list[Utterance]:
    """About ``utterances`` utterances of the world's first ``devices`` devices."""
    wanted = {d.serial for h in world.households for d in h.devices}
    wanted = set(sorted(wanted, key=lambda s: s)[:devices]) if len(wanted) > devices else wanted
    per_day = sum(h.rate_per_day for h in world.households) or 1.0
    days = max(0.25, utterances / per_day * 1.1)
    start = world.start + timedelta(days=start_day)
    return [u for u in world.traffic(days, start=start) if u.device_serial in wanted]


def _rss_mb(pid: int) -> float:
    kb = proc_status_kb("VmRSS", pid)
    return math.nan if kb is None else kb / 1024


async def _counters(session: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    """(utterances stored, audio bytes stored, writer queue depth) from the server."""
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    found = dict(_METRIC.findall(text))
    return (float(found.get("overheard_utterances_stored_total", 0)),
            float(found.get("overheard_audio_bytes_stored_total", 0)),
            int(float(found.get("overheard_writer_queue_depth", 0))))


async def _stream_for(url: str, pairs: list[tuple[Utterance, DeviceAccount]], ledger: Ledger,
                      seconds: float, *, seed: int, concurrency: int) -> float:
    """Stream until ``seconds`` pass (or the utterances run out); returns the elapsed time."""
    started = time.monotonic()
    task = asyncio.create_task(stream(url, pairs, ledger, seed=seed, concurrency=concurrency,
                                      options=DeviceOptions(max_attempts=3)))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()  # stream() turns a cancel into an interrupted result: in-flight = info
    await asyncio.gather(task, return_exceptions=True)
    return time.monotonic() - started


async def measure_floor(world: World, devices: int, seconds: float, seed: int) -> float:
    """Steady utterances/s of the same fleet client against a sink that stores nothing."""
    sink, sink_url = await start_sink_process()
    try:
        accounts = {d.serial: DeviceAccount(h.key, f"acc_{h.key}", d.serial, f"dev_{d.serial}",
                                            f"sink-{d.serial}")
                    for h in world.households for d in h.devices}
        utts = _traffic(world, 0.0, int(seconds * 4000), devices)
        pairs = [(u, accounts[u.device_serial]) for u in utts]
        ledger = TimedLedger()
        started = time.monotonic()
        await _stream_for(sink_url, pairs, ledger, seconds, seed=seed, concurrency=devices)
        acks = sorted(ledger.acked_at.values())
        warm = started + seconds / 3
        steady = [t for t in acks if t >= warm]
        if len(steady) < 2:
            return math.nan
        return (len(steady) - 1) / (steady[-1] - steady[0])
    finally:
        await stop_process(sink)


@dataclass
class _Request:
    household: str
    filed_at: float
    flow: AccessOutcome = field(default_factory=AccessOutcome)


async def _access_flow(client: Client, home: Home, out: Path, req: _Request,
                       errors: dict[str, int]) -> None:
    """The web-form path end to end (file by email, read the code, verify, wait, download);
    anything short of a downloaded package is counted as an error."""
    try:
        # long polls of up to 60 s each
        await access_flow(client, home, out, req.flow, via="email", polls=10, wait=60)
    except (ClientError, KeyError) as exc:
        name = f"request_flow:{type(exc).__name__}"
        errors[name] = errors.get(name, 0) + 1
        return
    if req.flow.package is None:
        errors[f"request_{req.flow.status}"] = errors.get(f"request_{req.flow.status}", 0) + 1


async def run_soak(*, seconds: float, devices: int, requests: int, interval: float, seed: int,
                   data: Path, floor_seconds: float | None = None) -> SoakResult:
    world = soak_world(devices, seed)
    floor_seconds = floor_seconds if floor_seconds is not None else min(15.0, seconds / 4)
    say(f"floor: the same fleet against a bare WebSocket sink for {floor_seconds:g} s")
    floor = await measure_floor(world, devices, floor_seconds, seed)
    say(f"floor: {floor:,.0f} utterances/s")

    server: ServerProcess = await start_server_process(data / "backend", admin_token=ADMIN_TOKEN)
    pid = server.proc.pid
    url = server.handle.url
    errors: dict[str, int] = {}
    samples: list[Sample] = []
    reqs: list[_Request] = []
    zips = data / "packages"
    zips.mkdir(parents=True, exist_ok=True)
    ledger = TimedLedger()
    try:
        async with Client(url, ADMIN_TOKEN, limit=50) as client, aiohttp.ClientSession() as http:
            say(f"registering {devices} devices at {url}")
            regs = await register_world(client, world.households, at_once=16)
            # Enough traffic for the whole soak at the floor's rate, with room to spare.
            utts = _traffic(world, 1.0, int(max(floor, 100.0) * seconds * 1.5), devices)
            pairs = pair_with_devices(utts, regs)
            rss_start = _rss_mb(pid)
            base_n, base_b, _ = await _counters(http, url)
            marks: list[tuple[float, float, float]] = [(time.monotonic(), base_n, base_b)]
            started = time.monotonic()
            rng = random.Random(f"soak/{seed}")
            keys = rng.sample(sorted(regs), min(requests, len(regs)))
            flows: list[asyncio.Task[None]] = []

            async def requester() -> None:
                for i, key in enumerate(keys):
                    due = started + (i + 0.5) * seconds / max(1, len(keys))
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    req = _Request(key, time.monotonic())
                    reqs.append(req)
                    flows.append(asyncio.create_task(
                        _access_flow(client, regs[key], zips, req, errors)))

            async def sampler() -> None:
                while True:
                    await asyncio.sleep(max(0.0, marks[0][0] + interval * len(marks)
                                            - time.monotonic()))
                    n, b, queue = await _counters(http, url)
                    now = time.monotonic()
                    last_t, last_n, last_b = marks[-1]
                    dt = now - last_t
                    marks.append((now, n, b))
                    fails = ledger.counts()["fail"]
                    samples.append(Sample(
                        round(now - started, 1), round((n - last_n) / dt, 1),
                        round((b - last_b) / dt / 1e6, 2), round(_rss_mb(pid), 1), queue,
                        sum(r.flow.package is not None for r in reqs),
                        fails + sum(errors.values())))
                    say(_row(samples[-1]))

            say(_header())
            side = [asyncio.create_task(requester()), asyncio.create_task(sampler())]
            elapsed = await _stream_for(url, pairs, ledger, seconds, seed=seed,
                                        concurrency=devices)
            side[0].cancel()
            await asyncio.gather(*flows)  # requests filed during the soak run to their end
            side[1].cancel()
            await asyncio.gather(*side, return_exceptions=True)
            end_t = time.monotonic()
            end_n, end_b, _ = await _counters(http, url)
            rss_end = _rss_mb(pid)
    finally:
        server.kill()
        await server.wait()

    counts = ledger.counts()
    if counts["fail"]:
        errors["utterance_fail"] = counts["fail"]
    packages: list[PackageVerdict] = []
    for req in reqs:
        if req.flow.package is None or req.flow.filed is None:
            continue
        try:
            audit = audit_package(req.flow.package, ledger.as_of(req.filed_at),
                                  subject_household=req.household)
        except AuditError as exc:
            errors[f"audit:{type(exc).__name__}"] = errors.get(f"audit:{type(exc).__name__}", 0) + 1
            continue
        packages.append(PackageVerdict(
            req.flow.filed.request_id, req.household, audit.files, audit.clean, audit.missing,
            sum(audit.foreign.values()), audit.corrupt, audit.duplicated, audit.unattributable))
    warm = [s.rss_mb for s in samples[len(samples) // 3:]] or [rss_end]
    stored = int(end_n - base_n)
    # Steady state: from the first mark at or after a third of the run to the end.
    warm_t, warm_n, warm_b = next((m for m in marks if m[0] >= marks[0][0] + elapsed / 3),
                                  marks[0])
    span = end_t - warm_t
    return SoakResult(
        devices=devices, seconds=round(elapsed, 1), requests=len(keys),
        floor_utterances_per_s=round(floor, 1), utterances=stored,
        utterances_per_s=round((end_n - warm_n) / span, 1) if span > 0 else math.nan,
        mb_per_s=round((end_b - warm_b) / span / 1e6, 2) if span > 0 else math.nan,
        ratio_to_floor=(round((end_n - warm_n) / span / floor, 3) if span > 0 and floor > 0
                        else math.nan),
        rss_start_mb=round(rss_start, 1), rss_warm_mb=round(warm[0], 1),
        rss_end_mb=round(rss_end, 1), errors=sum(errors.values()),
        error_detail=dict(sorted(errors.items())), samples=samples, packages=packages)


def _header() -> str:
    return (f"{'t s':>7}{'utt/s':>9}{'MB/s':>8}{'RSS MB':>9}{'queue':>7}{'pkgs':>6}"
            f"{'errors':>8}")


def _row(s: Sample) -> str:
    return (f"{s.t:>7.1f}{s.utterances_per_s:>9,.0f}{s.mb_per_s:>8.1f}{s.rss_mb:>9.1f}"
            f"{s.writer_queue:>7}{s.requests_done:>6}{s.errors:>8}")


def report(r: SoakResult) -> str:
    good = sum(p.ok for p in r.packages)
    lines = [
        f"bench soak: {r.devices} devices streaming for {r.seconds:g} s, {r.requests} access "
        "requests through the email flow, backend in its own process",
        _header(), *(_row(s) for s in r.samples),
        f"stored        {r.utterances:,} utterances; steady {r.utterances_per_s:,.0f} utt/s, "
        f"{r.mb_per_s:.1f} MB/s (server counters, after the first third)",
        f"floor         {r.floor_utterances_per_s:,.0f} utt/s steady: the same fleet client "
        "against a bare WebSocket sink (stores nothing)",
        f"ours/floor    {r.ratio_to_floor:.2f}",
        f"server RSS    start {r.rss_start_mb:.0f} MB, after warm-up {r.rss_warm_mb:.0f} MB, "
        f"end {r.rss_end_mb:.0f} MB ({r.rss_end_mb - r.rss_warm_mb:+.0f} MB after warm-up)",
        f"errors        {r.errors}" + (f"  {r.error_detail}" if r.errors else ""),
        f"packages      {len(r.packages)} of {r.requests} downloaded and audited: {good} clean "
        "and complete up to their request",
    ]
    for p in r.packages:
        if not p.ok:
            lines.append(f"  {p.request_id} ({p.household}): foreign {p.foreign}, missing "
                         f"{p.missing}, corrupt {p.corrupt}, duplicated {p.duplicated}, "
                         f"unattributable {p.unattributable}")
    lines.append("verdict       " + ("pass" if r.passed else "FAIL"))
    return "\n".join(lines)
