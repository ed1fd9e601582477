"""Where generated scenarios are played: in this event loop, or in worker processes.

A :class:`Pool` takes *work*, either a campaign run (its :class:`Options` and index: the
worker generates the scenario itself) or a raw scenario (a shrinking candidate), and
answers each with the run's :class:`Outcome`. Up to ``concurrency`` runs are in flight per
process, each against its own embedded backend: while one waits on its backend's threads
(the writer, an export job), another computes.

Worker processes are started once per campaign and serve all of it, its runs and then its
shrinking, taking work as they have a free slot, so a worker that drew slow runs does not
hold the others back. They are forked from a fork server that imported this module once
(~1.4 s of imports per worker otherwise, on every campaign): never from the parent itself,
since a parent that already ran a campaign has threads (export workers, resolvers) whose
locks a forked child would inherit held; without a fork server, they are spawned. What a
run gives does not depend on where it ran: results are matched to work by id.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from simulator.explore.errors import ExploreError
from simulator.explore.play import Outcome, play
from simulator.explore.runs import Options, scenario_for
from simulator.scenario.model import Scenario

Work = tuple[Options, int] | dict[str, Any]
"""A campaign run ``(options, index)``, or a raw scenario."""

CONCURRENCY = 4
"""Runs in flight per process: enough to hide the waits on the backend's threads; more only
adds event-loop contention (measured: 4 and 8 give the same rate)."""


def scenario_of(work: Work) -> Scenario:
    """The scenario ``work`` stands for."""
    # A campaign run goes through its raw form too, exactly as a replay of it would.
    return Scenario.model_validate(work if isinstance(work, dict) else scenario_for(*work))


async def play_work(work: Work) -> Outcome:
    """Play ``work`` here; a scenario that cannot even be built is this run's error."""
    try:
        scenario = scenario_of(work)
    except Exception as exc:  # noqa: BLE001 - reported as the run's error, like a run crash
        return Outcome({}, f"crash: cannot build the scenario: {type(exc).__name__}: {exc}")
    return await play(scenario)


class Pool:
    """Plays work in this process's event loop, ``concurrency`` at a time."""

    slots: int

    def __init__(self, concurrency: int = CONCURRENCY) -> None:
        self.slots = concurrency
        self._sem: asyncio.Semaphore | None = None

    async def play(self, work: Work) -> Outcome:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.slots)
        async with self._sem:
            return await play_work(work)

    async def close(self, abandon: bool = False) -> None:
        """Nothing to stop here."""

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # On an error (or ^C) the work still queued is of no use: do not wait for it.
        await self.close(abandon=exc_type is not None)


class ProcessPool(Pool):
    """Plays work in ``jobs`` worker processes, ``concurrency`` runs in flight in each."""

    def __init__(self, jobs: int, concurrency: int = CONCURRENCY) -> None:
        super().__init__(concurrency)
        self.slots = jobs * concurrency
        ctx = _context()
        self._tasks: Any = ctx.Queue()
        self._results: Any = ctx.Queue()
        self._procs = [ctx.Process(target=_worker, args=(self._tasks, self._results, concurrency),
                                   daemon=True, name=f"overheard-explore-{k}")
                       for k in range(jobs)]
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._closing = False
        self._dead: ExploreError | None = None

    async def __aenter__(self) -> ProcessPool:
        self._loop = asyncio.get_running_loop()
        for p in self._procs:
            p.start()
        self._reader = threading.Thread(target=self._read, name="overheard-explore-results",
                                        daemon=True)
        self._reader.start()
        return self

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [p.pid for p in self._procs if p.pid is not None]

    async def play(self, work: Work) -> Outcome:
        assert self._loop is not None, "use the pool as an async context manager"
        if self._dead is not None:
            raise self._dead
        tid = next(self._ids)
        fut: asyncio.Future[Outcome] = self._loop.create_future()
        self._waiting[tid] = fut
        self._tasks.put((tid, work))
        return await fut

    def _read(self) -> None:
        """Hand each result to its waiter; if a worker dies, fail every waiter."""
        assert self._loop is not None
        while True:
            try:
                tid, outcome = self._results.get(timeout=0.5)
            except queue.Empty:
                if self._closing:
                    return
                dead = [p for p in self._procs if p.exitcode is not None]
                if dead:
                    self._loop.call_soon_threadsafe(self._fail, dead[0].exitcode)
                    return
                continue
            if tid is None:  # the close marker
                return
            self._loop.call_soon_threadsafe(self._settle, tid, outcome)

    def _settle(self, tid: int, outcome: Outcome) -> None:
        fut = self._waiting.pop(tid, None)
        if fut is not None and not fut.done():
            fut.set_result(outcome)

    def _fail(self, exitcode: int | None) -> None:
        error = self._dead = ExploreError(f"a worker process died (exit code {exitcode}); "
                                          f"{len(self._waiting)} run(s) lost")
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(error)
        self._waiting.clear()

    async def close(self, abandon: bool = False) -> None:
        self._closing = True
        if abandon:
            self._tasks.cancel_join_thread()  # nobody may read what is still queued
            for p in self._procs:
                if p.pid is not None:
                    p.terminate()
        for _ in range(self.slots):
            self._tasks.put(None)
        loop = asyncio.get_running_loop()
        for p in self._procs:
            if p.pid is not None:
                await loop.run_in_executor(None, p.join)
        self._results.put((None, None))
        if self._reader is not None:
            await loop.run_in_executor(None, self._reader.join)
        self._tasks.close()
        self._results.close()


def _context() -> Any:
    """Fork server (with this module preloaded) where the platform has one, else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _worker(tasks: Any, results: Any, concurrency: int) -> None:
    """A worker process: ``concurrency`` consumers in one event loop until the stop marks."""
    asyncio.run(_serve(tasks, results, concurrency))


async def _serve(tasks: Any, results: Any, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    # Blocking gets in threads of their own: the default executor is the backend's too.
    with ThreadPoolExecutor(concurrency, thread_name_prefix="overheard-explore-take") as takers:

        async def consume() -> None:
            while True:
                task = await loop.run_in_executor(takers, tasks.get)
                if task is None:
                    return
                tid, work = task
                results.put((tid, await play_work(work)))

        await asyncio.gather(*(consume() for _ in range(concurrency)))
