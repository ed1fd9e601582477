"""The fleet: thousands of devices in one asyncio process, and ``overheard simulate``.

Three steps a scenario runner can also use one by one:

1. :func:`simulator.fleet.homes.register_world` creates an account per household and
   registers its devices through the admin API, in world order (so a backend with a
   seeded id generator assigns the same ids every run);
2. :func:`stream` hands each device its utterances and runs at most ``concurrency``
   devices at once over one connection pool, with a progress bar on stderr;
3. the :class:`~simulator.fleet.ledger.Ledger` the devices filled is written sorted.

Ctrl-C stops cleanly: devices in flight are cancelled, what they had sent and not seen
acknowledged stays ``info`` in the ledger, and the ledger is written before exit (130).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from simulator.fleet.client import Client
from simulator.fleet.device import (
    DeviceGaveUp,
    DeviceOptions,
    DeviceStats,
    DropHook,
    StreamingDevice,
)
from simulator.fleet.errors import FleetError
from simulator.fleet.homes import DeviceAccount, Home, register_world
from simulator.fleet.ledger import Ledger, LedgerEntry, Outcome
from simulator.fleet.progress import Counter, ProgressMode, resolve_mode
from simulator.world.households import Utterance, World

EMBEDDED_MARKER = ".overheard-simulate"
"""Marks a backend data dir this command created (and may therefore replace)."""


@dataclass
class FleetResult:
    """What a :func:`stream` run did."""

    devices: int
    utterances: int
    stats: DeviceStats
    wall_seconds: float
    gave_up: list[str] = field(default_factory=list)
    """Serials of devices that stopped delivering (token refused, backend gone)."""
    interrupted: bool = False

    @property
    def rate(self) -> float:
        done = self.stats.ok + self.stats.fail + self.stats.info
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _Progress:
    """Utterances done, their rate, and outcomes other than ``ok`` (see :mod:`simulator.fleet.progress`)."""

    def __init__(self, total: int, mode: ProgressMode) -> None:
        self.bar = Counter(total, mode, desc="utterances", unit="utt")
        self.counts = {"ok": 0, "fail": 0, "info": 0}
        self.reconnects = 0

    def __call__(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1
        if outcome != "ok" or self.bar.n % 500 == 0:
            self._postfix()
        self.bar.update(1)

    def _postfix(self) -> None:
        self.bar.set_postfix(fail=self.counts["fail"], info=self.counts["info"],
                             reconnects=self.reconnects)

    def close(self) -> None:
        self._postfix()
        self.bar.close()


def _sum(stats: Sequence[DeviceStats]) -> DeviceStats:
    total = DeviceStats()
    for s in stats:
        for name in ("ok", "fail", "info", "sent", "resent", "duplicates", "reconnects"):
            setattr(total, name, getattr(total, name) + getattr(s, name))
        for code, n in s.errors.items():
            total.errors[code] = total.errors.get(code, 0) + n
    return total


def pair_with_devices(utterances: Iterable[Utterance],
                      registered: Mapping[str, Home]) -> list[tuple[Utterance, DeviceAccount]]:
    """Each utterance with the registered device that hears it."""
    out = []
    for u in utterances:
        reg = registered.get(u.household)
        dev = reg.devices.get(u.device_serial) if reg else None
        if dev is None:
            raise ValueError(f"{u.household}: device {u.device_serial} is not registered")
        out.append((u, dev))
    return out


async def stream(base_url: str, pairs: Iterable[tuple[Utterance, DeviceAccount]],
                 ledger: Ledger, *, seed: int = 0, options: DeviceOptions | None = None,
                 concurrency: int = 256, progress: bool | ProgressMode = False,
                 drop: DropHook | None = None) -> FleetResult:
    """Stream each utterance from its device; outcomes go into ``ledger``.

    Utterances of one device (one token) go in time order over one connection; at most
    ``concurrency`` devices are connected at once. If cancelled, in-flight devices are
    cancelled too and the result (``interrupted=True``) is returned instead of raising, so
    the caller can still write the ledger.
    """
    by_device: dict[str, tuple[DeviceAccount, list[Utterance]]] = {}
    for u, dev in pairs:
        by_device.setdefault(dev.token, (dev, []))[1].append(u)
    for _, utts in by_device.values():
        utts.sort(key=lambda u: (u.recorded_at, u.utterance_id))
    n_utts = sum(len(v[1]) for v in by_device.values())
    queue = deque(sorted(by_device.values(), key=lambda v: (v[0].serial, v[0].device_id)))
    bar = _Progress(n_utts, resolve_mode(progress))
    stats: list[DeviceStats] = []
    gave_up: list[str] = []
    opts = options or DeviceOptions()
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            acct, utts = queue.popleft()
            st = DeviceStats()
            stats.append(st)
            dev = StreamingDevice(base_url, acct.token, acct.serial, utts, ledger=ledger,
                         account_id=acct.account_id, seed=seed, options=opts, stats=st,
                         session=session, on_outcome=bar, drop=drop)
            try:
                await dev.run()
            except DeviceGaveUp as exc:
                gave_up.append(acct.serial)
                bar.bar.write(f"gave up: {exc}")
            bar.reconnects += st.reconnects

    interrupted = False
    async with aiohttp.ClientSession(connector=connector) as session:
        workers = [asyncio.create_task(worker(session))
                   for _ in range(max(1, min(concurrency, len(queue))))]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            # Ctrl-C (or a caller's cancel): stop every device and report instead of
            # raising, so the ledger still gets written.
            interrupted = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            bar.close()
    return FleetResult(devices=len(by_device), utterances=n_utts, stats=_sum(stats),
                       wall_seconds=time.monotonic() - started, gave_up=sorted(gave_up),
                       interrupted=interrupted)


async def stream_utterances(base_url: str, pairs: Iterable[tuple[Utterance, DeviceAccount]],
                            *, progress: bool | ProgressMode = False,
                            **kwargs: Any) -> list[LedgerEntry]:
    """:func:`stream` into a fresh ledger; its entries, sorted (for scenario steps)."""
    ledger = Ledger()
    await stream(base_url, pairs, ledger, progress=progress, **kwargs)
    return ledger.entries()


@dataclass
class SimulateResult:
    """``overheard simulate``'s summary (also written to ``DIR/summary.json``)."""

    households: int
    devices: int
    utterances: int
    ok: int
    fail: int
    info: int
    duplicates: int
    reconnects: int
    errors: dict[str, int]
    gave_up: list[str]
    wall_seconds: float
    stream_seconds: float
    utterances_per_second: float
    interrupted: bool
    ledger: str


async def simulate_async(*, backend_url: str, admin_token: str, world: World, days: float,
                         out: Path, options: DeviceOptions | None = None,
                         concurrency: int = 256, progress: bool = True) -> SimulateResult:
    """Register the world on the backend, stream ``days`` of traffic, write the ledger."""
    started = time.monotonic()
    ledger = Ledger()
    ledger_path = out / "ledger.jsonl"
    async with Client(backend_url, admin_token) as client:
        regs = await register_world(client, world.households)
    pairs = pair_with_devices(world.traffic(days), regs)
    result: FleetResult | None = None
    try:
        result = await stream(backend_url, pairs, ledger, seed=world.seed, options=options,
                              concurrency=concurrency, progress=progress)
    finally:
        ledger.write(ledger_path)  # also when something above failed: keep what is known
    counts = ledger.counts()
    wall = time.monotonic() - started
    summary = SimulateResult(
        households=len(world.households), devices=sum(len(h.devices) for h in world.households),
        utterances=len(ledger), ok=counts["ok"], fail=counts["fail"], info=counts["info"],
        duplicates=result.stats.duplicates, reconnects=result.stats.reconnects,
        errors=dict(sorted(result.stats.errors.items())), gave_up=result.gave_up,
        wall_seconds=round(wall, 3), stream_seconds=round(result.wall_seconds, 3),
        utterances_per_second=round(result.rate, 1), interrupted=result.interrupted,
        ledger=str(ledger_path),
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n",
                                      encoding="utf-8")
    return summary


def _prepare_embedded_dir(path: Path) -> None:
    """Start from an empty data dir; replace it only if an earlier run of ours made it."""
    if path.exists():
        if not (path / EMBEDDED_MARKER).exists():
            raise FleetError(f"{path} exists and was not made by `overheard simulate`; "
                                   "choose another --out")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / EMBEDDED_MARKER).write_text("backend data of an embedded `overheard simulate` run\n")


async def run_embedded(world: World, days: float, out: Path, **kwargs: Any) -> SimulateResult:
    from backend import Config
    from simulator.fleet.embedded import embedded_backend

    data = out / "backend-data"
    _prepare_embedded_dir(data)
    # Seeded ids make the whole ledger repeatable; the backend's clock starts where the
    # traffic ends, so every recording lies in its past.
    config = Config(data_dir=data, id_seed=world.seed,
                    clock_start=world.start + timedelta(days=days))
    async with embedded_backend(config) as handle:
        return await simulate_async(backend_url=handle.url, admin_token=handle.admin_token,
                                    world=world, days=days, out=out, **kwargs)
