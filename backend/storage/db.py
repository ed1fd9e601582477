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
ONE call of the group's function (e.g. one lookup and two multi-row INSERTs, see
:func:`insert_rows`) inside one savepoint, in queue order with the other writes. If that
call raises, the savepoint is rolled back and every item of the run is applied again on
its own, in its own savepoint, so one bad item still fails only its own caller.

Durability off the writer's path. With ``synchronous="FULL"`` (the default) the store
gives FULL's promise, an answered write is on the disk, without making the writer wait
for the disk:

- the writer's connection runs ``synchronous=NORMAL``: its COMMIT hands the WAL frames to
  the operating system and returns; the writer goes on with the next batch at once;
- the *sync thread* takes every batch committed since its last round, calls ``fdatasync``
  on the WAL file once for all of them, and only then resolves their callers' futures (in
  commit order). A batch is answered only after a sync that began after its COMMIT, so
  every frame of it, commit frame included, is on the disk: what ``synchronous=FULL``
  would have synced inside the COMMIT, synced once for many batches instead;
- the *checkpointer* folds the WAL into the database file from a connection of its own
  (``PRAGMA wal_checkpoint(PASSIVE)``, at most once per ``checkpoint_interval`` while writes
  come in), so the copy and the database fsync do not stall the writer either. The writer
  keeps an automatic checkpoint at :data:`WRITER_AUTOCHECKPOINT_PAGES` as the backstop: it
  finds little left to copy, and it is what lets the WAL start over from its beginning.

Other connections may read a committed batch a few milliseconds before its sync; nothing
is acknowledged before it. If a sync fails the writes it covered fail with
:class:`StoreFailed` and the store takes no more writes (after a failed fsync Linux may
have dropped the pages it could not write, so a later sync proves nothing).

Measured with ``overheard bench ingest --devices 200 --utterances 8000``: 2,000-2,400
utterances/s with the fsync and checkpoints inside the writer's COMMIT, ~3,000/s with
them off its path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from backend.files import private_dir, touch_private
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

WRITER_AUTOCHECKPOINT_PAGES = 4096
"""The writer's own automatic checkpoint (64 MiB of WAL at 16 KiB pages). The checkpointer
thread does the copying; this backstop runs when the WAL has grown this far anyway, copies
what is left and so lets the WAL restart instead of growing while writes never pause."""

_fdatasync = getattr(os, "fdatasync", os.fsync)


class StoreClosed(RuntimeError):
    """The store was closed; no more reads or writes."""


class StoreFailed(StoreClosed):
    """A sync of the WAL failed: the writes it covered are not known to be on the disk, and
    the store takes no more writes."""


@dataclass
class WriterStats:
    """Counters the metrics endpoint reads."""

    transactions: int = 0
    writes: int = 0
    failed_writes: int = 0
    syncs: int = 0
    """fdatasync calls on the WAL by the sync thread (each covers one or more batches)."""
    checkpoints: int = 0
    """Checkpoints run by the checkpointer thread."""
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
        checkpoint_interval: float = 0.05,
    ) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        # SQLite gives -wal and -shm the database file's mode: create it 0600 first.
        touch_private(self.path)
        fresh = self._is_new()
        if fresh:
            fresh = not _copy_schema(self.path)
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self.checkpoint_interval = checkpoint_interval
        self.stats = WriterStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._failed: StoreFailed | None = None
        # FULL's promise is kept by the sync thread; the writer's COMMIT does not wait.
        self._sync_apart = self.synchronous == "FULL"
        self._write_synchronous = "NORMAL" if self._sync_apart else self.synchronous
        """What the writing connections (writer, checkpointer) run with."""
        self._write_db = connect(self.path, synchronous=self._write_synchronous)
        self._write_db.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
        self._migrate()
        if fresh:
            _keep_schema(self._write_db, self.path)
        self._local = threading.local()
        self._read_conns: list[sqlite_utils.Database] = []
        self._read_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="overheard-read")
        self._committed: queue.SimpleQueue[Any] = queue.SimpleQueue()
        """Committed batches waiting for the sync thread: ``(outcomes, batch)``."""
        self._wal_fd: int | None = None
        self._wrote = threading.Event()
        """Set after commits; the checkpointer waits on it."""
        self._stopping = threading.Event()
        self.on_checkpoint: Callable[[tuple[int, int, int]], None] | None = None
        """Called in the checkpointer thread with each ``(busy, log, checkpointed)`` row."""
        self._threads = [threading.Thread(target=self._run, name="overheard-writer", daemon=True)]
        if self._sync_apart:
            self._threads.append(threading.Thread(target=self._sync_run, name="overheard-sync",
                                                  daemon=True))
        self._threads.append(threading.Thread(target=self._checkpoint_run,
                                              name="overheard-checkpoint", daemon=True))
        for thread in self._threads:
            thread.start()

    # -- lifecycle -----------------------------------------------------------------
    def _is_new(self) -> bool:
        """An empty file and no WAL: nothing was ever written here."""
        return self.path.stat().st_size == 0 and not Path(f"{self.path}-wal").exists()

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
        writer, *others = self._threads
        writer.join()  # every queued write commits first ...
        self._committed.put(_STOP)  # ... and is synced and answered before the sync thread ends
        self._stopping.set()
        self._wrote.set()
        for thread in others:
            thread.join()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
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

    @property
    def failed(self) -> StoreFailed | None:
        """Why the store stopped taking writes, if a sync of the WAL failed."""
        return self._failed

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise StoreClosed("store is closed")

    # -- writes ----------------------------------------------------------------------
    def write(self, fn: Callable[[sqlite_utils.Database], T]) -> asyncio.Future[T]:
        """Queue ``fn(db)`` for the writer; the future resolves after its batch commits."""
        return self._enqueue(fn)

    def write_grouped(self, group: GroupFn, item: Any,
                      single: Callable[[sqlite_utils.Database, Any], T]) -> asyncio.Future[T]:
        """Queue ``item`` for ``group`` (applied with its queued neighbours of the same group);
        ``single(db, item)`` applies it alone when the group call fails. Resolves after commit."""
        return self._enqueue(_Grouped(group, single, item))

    def _enqueue(self, work: Any) -> asyncio.Future[Any]:
        """Queue ``work`` (a function of the db, or a :class:`_Grouped` item) with a future
        of the running loop, which the writer's settling resolves."""
        self._check_writable()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((work, fut, loop))
        return fut

    def write_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Blocking write for code that runs outside the event loop (CLI tools, migrations)."""
        self._check_writable()
        done = threading.Event()
        box: dict[str, Any] = {}
        self._queue.put((fn, (done, box), None))
        done.wait()
        if "error" in box:
            raise box["error"]
        result: T = box["result"]
        return result

    def _run(self) -> None:
        db = self._write_db
        while True:
            batch, stop = _take(self._queue, self.max_batch)
            if batch:
                outcomes = self._run_batch(db, batch)
                self._wrote.set()
                if self._sync_apart:
                    self._committed.put((outcomes, batch))
                else:
                    self._settle(outcomes, batch)
            if stop:
                return

    def _sync_run(self) -> None:
        """Sync the WAL once for every batch committed since the last round, then answer."""
        while True:
            items, stop = _take(self._committed, None)
            if items:
                error = self._failed
                if error is None:
                    try:
                        self._sync_wal()
                    except OSError as exc:
                        log.critical("fdatasync of the WAL failed (%s); the store takes no "
                                     "more writes", exc)
                        error = self._failed = StoreFailed(f"syncing the WAL failed: {exc}")
                        error.__cause__ = exc
                for outcomes, batch in items:
                    if error is not None:
                        outcomes = [(False, error)] * len(batch)
                    self._settle(outcomes, batch)
            if stop:
                return

    def _sync_wal(self) -> None:
        wal = f"{self.path}-wal"
        inode = os.stat(wal).st_ino
        if self._wal_fd is not None and os.fstat(self._wal_fd).st_ino != inode:
            os.close(self._wal_fd)  # the WAL file was replaced: sync the one in place
            self._wal_fd = None
        if self._wal_fd is None:
            self._wal_fd = os.open(wal, os.O_RDONLY)
        _fdatasync(self._wal_fd)
        self.stats.syncs += 1

    def _checkpoint_run(self) -> None:
        """Fold the WAL into the database while writes come in, off the writer's path."""
        db = connect(self.path, synchronous=self._write_synchronous)
        try:
            while True:
                self._wrote.wait()
                if self._stopping.is_set():
                    return
                self._wrote.clear()
                try:
                    busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    row = (int(busy), int(frames), int(done))
                    self.stats.checkpoints += 1
                except sqlite3.Error as exc:  # another checkpoint (erasure's) holds the lock
                    log.debug("background checkpoint skipped: %s", exc)
                else:
                    if self.on_checkpoint is not None:
                        self.on_checkpoint(row)
                # At most one per interval: each one syncs the database file.
                self._stopping.wait(self.checkpoint_interval)
        finally:
            db.conn.close()

    def _run_batch(self, db: sqlite_utils.Database, batch: list[Any]) -> list[Outcome]:
        """Apply and commit one batch; one outcome per write."""
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
        return outcomes

    def _settle(self, outcomes: list[Outcome], batch: list[Any]) -> None:
        """Hand each caller its outcome."""
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


_SCHEMAS: dict[tuple[str, ...], bytes] = {}
"""Migration names → a new database with just those migrations applied (its file bytes)."""
_SCHEMAS_LOCK = threading.Lock()


def _migration_names() -> tuple[str, ...]:
    return tuple(name for name, _fn in MIGRATIONS)


def _keep_schema(db: sqlite_utils.Database, path: Path) -> None:
    """Keep the file of a store just made and migrated as the template of the next new
    stores of this process: a process that opens many short-lived stores (an embedded
    backend per generated scenario) runs the migrations once, not ~50 statements each time.
    Checkpointed first, so the database file holds all of it."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    blob = path.read_bytes()
    with _SCHEMAS_LOCK:
        _SCHEMAS.setdefault(_migration_names(), blob)


def _copy_schema(path: Path) -> bool:
    """Write the kept template into the new, empty ``path`` (synced: a torn copy would be
    a corrupt database); False when there is none yet. Its ``_migrations`` rows carry the
    time the template was migrated."""
    with _SCHEMAS_LOCK:
        blob = _SCHEMAS.get(_migration_names())
    if blob is None:
        return False
    with open(path, "r+b") as f:
        f.write(blob)
        f.flush()
        _fdatasync(f.fileno())
    return True


@dataclass(frozen=True)
class _Grouped:
    """A queued item of a grouped write."""

    group: GroupFn
    single: Callable[[sqlite_utils.Database, Any], Any]
    item: Any


MAX_IN_PARAMS = 500
"""Values per ``IN (...)`` list, under SQLite's bound-parameter limit."""


def select_in(db: sqlite_utils.Database, sql: str, values: Iterable[Any]) -> Iterator[Any]:
    """Rows of ``sql`` whose ``{marks}`` is an ``IN`` list of ``values`` (deduplicated), one
    query per :data:`MAX_IN_PARAMS` values."""
    distinct = list(dict.fromkeys(values))
    for lo in range(0, len(distinct), MAX_IN_PARAMS):
        part = distinct[lo:lo + MAX_IN_PARAMS]
        yield from db.conn.execute(sql.format(marks=",".join("?" * len(part))), part)


def insert_rows(db: sqlite_utils.Database, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """``executemany(sql, rows)`` for an ``INSERT ... VALUES (...)``, as multi-row INSERTs.

    ``executemany`` steps its statement once per row, and the sqlite3 module gives up the
    GIL around every step. Beside a busy event loop each step then waits to take the GIL
    back, and the writer crawls: 1,754 against 3,264 utterance rows/s alone, measured with
    a thread that does what the loop does (Python with a syscall every ~20 us). A multi-row
    INSERT steps once for many rows (3,057/s beside the same thread). Rows go in chunks of
    64, 32, ... 1, so at most 7 statements per call and few distinct ones to prepare.
    """
    if not rows:
        return
    head, _, values = sql.partition(" VALUES ")
    i, n = 0, len(rows)
    while i < n:
        size = 1 << min((n - i).bit_length() - 1, 6)  # the largest power of two <= min(left, 64)
        part = rows[i:i + size]
        db.conn.execute(f"{head} VALUES {', '.join([values] * size)}",
                        [v for row in part for v in row])
        i += size


def _take(q: queue.SimpleQueue[Any], limit: int | None) -> tuple[list[Any], bool]:
    """Wait for one item, then take whatever else is queued (up to ``limit`` items);
    ``(items, stop)`` where ``stop`` says the stop marker came."""
    item = q.get()
    if item is _STOP:
        return [], True
    items = [item]
    while limit is None or len(items) < limit:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if nxt is _STOP:
            return items, True
        items.append(nxt)
    return items, False


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
