"""The store: the only write connection lives in one thread; reads use their own connections.

Modelled on a single-writer design: callers ``await store.write(fn)``; the writer thread
takes every queued write it can (up to ``max_batch``), runs each in its own SAVEPOINT
inside one transaction, commits once, and only then resolves the callers' futures. An
acknowledgement that follows ``await store.write(...)`` is therefore durable: the commit
(with ``synchronous=FULL`` in WAL mode) has reached the disk.

A failing write rolls back to its savepoint and fails only its own caller; the rest of the
batch commits.

Grouped writes (:meth:`Store.write_grouped`) are for hot paths with many small writes of
one kind (device utterances): consecutive queued items of the same group are applied by
ONE call of the group's function (e.g. two ``executemany`` INSERTs) inside one savepoint,
in queue order with the other writes. If that call raises, the savepoint is rolled back
and every item of the run is applied again on its own, in its own savepoint, so one bad
item still fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from backend.storage.migrations import MIGRATIONS

log = logging.getLogger("overheard.storage")

T = TypeVar("T")

_STOP = object()

Outcome = tuple[bool, Any]
"""``(True, result)`` or ``(False, exception)`` for one queued write."""

GroupFn = Callable[[sqlite_utils.Database, list[Any]], list[Outcome]]
"""Applies a run of grouped items in one go; one outcome per item, in order. An item it
refuses (``(False, exc)``) must have written nothing."""

PAGE_SIZE = 16384
"""SQLite page size for new databases, in bytes."""


class StoreClosed(RuntimeError):
    """The store was closed; no more reads or writes."""


@dataclass
class WriterStats:
    """Counters the metrics endpoint reads."""

    transactions: int = 0
    writes: int = 0
    failed_writes: int = 0
    batch_sizes: dict[int, int] | None = None  # histogram bucket upper bound -> count

    def observe_batch(self, size: int) -> None:
        if self.batch_sizes is None:
            self.batch_sizes = {}
        for bound in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            if size <= bound:
                self.batch_sizes[bound] = self.batch_sizes.get(bound, 0) + 1
                return
        self.batch_sizes[10**9] = self.batch_sizes.get(10**9, 0) + 1


def connect(path: Path, *, readonly: bool = False, synchronous: str = "FULL") -> sqlite_utils.Database:
    """Open one connection with the project's pragmas set on it."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                               isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")
    if not readonly:
        # Only takes effect while the file is new (before WAL mode and the first table).
        # 16 KiB pages put a 2 s utterance (64 KB of PCM) in 4 overflow pages instead of 16;
        # measured with `overheard bench ingest`: ~1.5x the insert rate of 4 KiB pages.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
    return sqlite_utils.Database(conn)


class Store:
    """SQLite file + writer thread + reader pool. Close is idempotent; use after close raises."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 256,
        readers: int = 4,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._write_db = connect(self.path, synchronous=synchronous)
        self._migrate()
        self._local = threading.local()
        self._read_conns: list[sqlite_utils.Database] = []
        self._read_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="overheard-read")
        self._thread = threading.Thread(target=self._run, name="overheard-writer", daemon=True)
        self._thread.start()

    # -- lifecycle -----------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._write_db
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
        done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                fn(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", [name]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            log.info("applied migration %s", name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._readers.shutdown(wait=True)
        with self._read_lock:
            for db in self._read_conns:
                db.conn.close()
            self._read_conns.clear()
        self._write_db.conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- writes ----------------------------------------------------------------------
    def write(self, fn: Callable[[sqlite_utils.Database], T]) -> asyncio.Future[T]:
        """Queue ``fn(db)`` for the writer; the future resolves after its batch commits."""
        if self._closed:
            raise StoreClosed("store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return fut

    def write_grouped(self, group: GroupFn, item: Any,
                      single: Callable[[sqlite_utils.Database, Any], T]) -> asyncio.Future[T]:
        """Queue ``item`` for ``group`` (applied with its queued neighbours of the same group);
        ``single(db, item)`` applies it alone when the group call fails. Resolves after commit."""
        if self._closed:
            raise StoreClosed("store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((_Grouped(group, single, item), fut, loop))
        return fut

    def write_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Blocking write for code that runs outside the event loop (CLI tools, migrations)."""
        if self._closed:
            raise StoreClosed("store is closed")
        done = threading.Event()
        box: dict[str, Any] = {}
        self._queue.put((fn, (done, box), None))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _run(self) -> None:
        db = self._write_db
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop_after = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                batch.append(nxt)
            self._run_batch(db, batch)
            if stop_after:
                return

    def _run_batch(self, db: sqlite_utils.Database, batch: list[Any]) -> None:
        outcomes: list[Outcome] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            i, n = 0, len(batch)
            while i < n:
                fn = batch[i][0]
                if isinstance(fn, _Grouped):
                    j = i + 1
                    while j < n and isinstance(batch[j][0], _Grouped) \
                            and batch[j][0].group is fn.group:
                        j += 1
                    outcomes.extend(self._apply_group(db, [b[0] for b in batch[i:j]], i))
                    i = j
                    continue
                outcomes.append(_apply_one(db, fn, f"w{i}"))
                i += 1
            db.execute("COMMIT")
        except BaseException as exc:
            log.exception("write transaction failed")
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(False, exc) for _ in batch]
        self.stats.transactions += 1
        self.stats.writes += len(batch)
        self.stats.observe_batch(len(batch))
        # One wake-up per event loop per batch, not one per write: at thousands of writes a
        # second the per-write self-pipe writes cost the loop measurable time.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (ok, value), (_fn, fut, loop) in zip(outcomes, batch, strict=True):
            if not ok:
                self.stats.failed_writes += 1
            if loop is None:
                done, box = fut
                box["result" if ok else "error"] = value
                done.set()
            else:
                by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # the caller's loop is closed; nobody is waiting any more
                log.warning("dropped %d write results for a closed event loop", len(settled))

    @staticmethod
    def _apply_group(db: sqlite_utils.Database, run: list[_Grouped], first: int) -> list[Outcome]:
        sp = f"g{first}"
        db.execute(f"SAVEPOINT {sp}")
        try:
            outcomes = run[0].group(db, [g.item for g in run])
            if len(outcomes) != len(run):
                raise RuntimeError(f"group write gave {len(outcomes)} outcomes for {len(run)}")
        except Exception:
            log.warning("grouped write of %d items failed; applying them one by one",
                        len(run), exc_info=True)
            db.execute(f"ROLLBACK TO {sp}")
            db.execute(f"RELEASE {sp}")
            return [_apply_one(db, _bind(g), f"w{first + k}") for k, g in enumerate(run)]
        db.execute(f"RELEASE {sp}")
        return outcomes

    # -- reads -----------------------------------------------------------------------
    def _reader(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path, readonly=True, synchronous=self.synchronous)
            self._local.db = db
            with self._read_lock:
                self._read_conns.append(db)
        return db

    def _snapshot(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """``fn(db)`` inside one read transaction: all its queries see the same commit."""
        db = self._reader()
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn(db)`` on a read-only connection in the reader pool, as one snapshot."""
        if self._closed:
            raise StoreClosed("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._snapshot, fn)

    def read_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        if self._closed:
            raise StoreClosed("store is closed")
        return self._readers.submit(self._snapshot, fn).result()


@dataclass(frozen=True)
class _Grouped:
    """A queued item of a grouped write."""

    group: GroupFn
    single: Callable[[sqlite_utils.Database, Any], Any]
    item: Any


def _bind(g: _Grouped) -> Callable[[sqlite_utils.Database], Any]:
    return lambda db: g.single(db, g.item)


def _apply_one(db: sqlite_utils.Database, fn: Callable[[sqlite_utils.Database], Any],
               sp: str) -> Outcome:
    db.execute(f"SAVEPOINT {sp}")
    try:
        result = fn(db)
    except BaseException as exc:  # one caller's failure must not sink the batch
        db.execute(f"ROLLBACK TO {sp}")
        db.execute(f"RELEASE {sp}")
        return False, exc
    db.execute(f"RELEASE {sp}")
    return True, result


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in settled:
        _settle(fut, ok, value)


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
