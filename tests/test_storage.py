"""The store: one writer with group commit, savepoint isolation, pragmas, lifecycle."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from backend.storage import Store, StoreClosed, StoreFailed
from backend.storage import db as db_module
from backend.storage.db import PAGE_SIZE, WRITER_AUTOCHECKPOINT_PAGES


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db", max_batch=64)
    s.write_sync(lambda db: db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
    yield s
    s.close()


def insert(key: str, value: int = 0) -> Any:
    return lambda db: db.execute("INSERT INTO t (k, v) VALUES (?, ?)", [key, value]).lastrowid


async def hold_writer(store: Store) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Park the writer thread inside a write so that the next writes queue up behind it."""
    entered, release = threading.Event(), threading.Event()

    def blocker(db: sqlite_utils.Database) -> None:
        entered.set()
        release.wait(10)

    fut = store.write(blocker)
    await asyncio.to_thread(entered.wait, 10)
    return release, fut


async def test_queued_writes_commit_as_one_transaction(store: Store) -> None:
    before = store.stats.transactions
    release, blocked = await hold_writer(store)
    futures = [store.write(insert(f"k{i}", i)) for i in range(10)]
    assert store.queue_depth() == 10
    release.set()
    await blocked
    await asyncio.gather(*futures)
    # The blocker's batch, then exactly one more for the ten queued writes.
    assert store.stats.transactions - before == 2
    assert (store.stats.batch_sizes or {}).get(16) == 1  # one batch of 9..16 writes
    count = await store.read(lambda db: db.execute("SELECT count(*), sum(v) FROM t").fetchone())
    assert tuple(count) == (10, 45)


async def test_batches_respect_max_batch(tmp_path: Path) -> None:
    s = Store(tmp_path / "b.db", max_batch=4)
    try:
        s.write_sync(lambda db: db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        before = s.stats.transactions
        release, blocked = await hold_writer(s)
        futures = [s.write(insert(f"k{i}")) for i in range(10)]
        release.set()
        await blocked
        await asyncio.gather(*futures)
        assert s.stats.transactions - before == 1 + 3  # 4 + 4 + 2
    finally:
        s.close()


async def test_a_failing_write_rolls_back_alone(store: Store) -> None:
    def half_then_fail(db: sqlite_utils.Database) -> None:
        db.execute("INSERT INTO t (k, v) VALUES ('bad', 1)")
        raise ValueError("refused")

    before = store.stats.transactions
    release, blocked = await hold_writer(store)
    ok1 = store.write(insert("a"))
    bad = store.write(half_then_fail)
    ok2 = store.write(insert("b"))
    dup = store.write(insert("a"))  # a constraint violation is one caller's failure too
    release.set()
    await blocked
    await ok1
    await ok2
    with pytest.raises(ValueError, match="refused"):
        await bad
    with pytest.raises(sqlite3.IntegrityError):
        await dup
    assert store.stats.transactions - before == 2  # the blocker's, then all four in one
    keys = await store.read(lambda db: [r[0] for r in db.execute("SELECT k FROM t ORDER BY k")])
    assert keys == ["a", "b"]
    assert store.stats.failed_writes == 2


async def test_results_come_back_to_each_caller(store: Store) -> None:
    results = await asyncio.gather(*(store.write(lambda db, i=i: i * i) for i in range(20)))
    assert results == [i * i for i in range(20)]


async def test_readers_cannot_write(store: Store) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store.read(lambda db: db.execute("INSERT INTO t (k, v) VALUES ('x', 1)"))


async def test_pragmas(store: Store) -> None:
    writer = store.write_sync(lambda db: (
        db.execute("PRAGMA journal_mode").fetchone()[0],
        db.execute("PRAGMA synchronous").fetchone()[0],
        db.execute("PRAGMA secure_delete").fetchone()[0],
        db.execute("PRAGMA foreign_keys").fetchone()[0],
        db.execute("PRAGMA page_size").fetchone()[0],
        db.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
    ))
    # synchronous 1 = NORMAL: with FULL asked for, the store syncs the WAL itself before it
    # answers (see the sync tests below), so the writer's COMMIT does not wait for the disk.
    assert store.synchronous == "FULL"
    assert writer == ("wal", 1, 1, 1, PAGE_SIZE, WRITER_AUTOCHECKPOINT_PAGES)
    reader = await store.read(lambda db: (db.execute("PRAGMA synchronous").fetchone()[0],
                                          db.execute("PRAGMA secure_delete").fetchone()[0]))
    assert reader == (2, 1)


def test_migrations_apply_once(tmp_path: Path) -> None:
    first = Store(tmp_path / "m.db")
    names = first.read_sync(lambda db: [r[0] for r in db.execute(
        "SELECT name FROM _migrations ORDER BY name")])
    first.write_sync(lambda db: db.execute(
        "INSERT INTO accounts (account_id, name, email, locale, created_at)"
        " VALUES ('acc_1', 'A', 'a@example.org', 'de-DE', '2024')"))
    first.close()
    again = Store(tmp_path / "m.db")
    try:
        assert again.read_sync(lambda db: [r[0] for r in db.execute(
            "SELECT name FROM _migrations ORDER BY name")]) == names
        assert names[0].startswith("m0001")
        assert again.read_sync(lambda db: db.execute("SELECT count(*) FROM accounts")
                               .fetchone()[0]) == 1
    finally:
        again.close()


def _schema(s: Store) -> list[Any]:
    return s.read_sync(lambda db: sorted(db.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()))


def test_a_new_store_is_a_copy_of_the_migrated_schema_and_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Built here from scratch: the first new store of the process migrates, the next copy it.
    monkeypatch.setattr(db_module, "_SCHEMAS", {})
    first = Store(tmp_path / "a.db")
    first.write_sync(lambda db: db.execute(
        "INSERT INTO accounts (account_id, name, email, locale, created_at)"
        " VALUES ('acc_1', 'A', 'a@example.org', 'de-DE', '2024')"))
    assert list(db_module._SCHEMAS) == [tuple(name for name, _ in db_module.MIGRATIONS)]
    copied = Store(tmp_path / "b.db")
    try:
        assert _schema(copied) == _schema(first)
        assert copied.read_sync(lambda db: [r[0] for r in db.execute(
            "SELECT name FROM _migrations ORDER BY name")]) == [
            name for name, _ in sorted(db_module.MIGRATIONS)]
        # the first store's data written after its migration is not in the template
        assert copied.read_sync(lambda db: db.execute(
            "SELECT count(*) FROM accounts").fetchone()[0]) == 0
        assert copied.read_sync(lambda db: (db.execute("PRAGMA journal_mode").fetchone()[0],
                                            db.execute("PRAGMA page_size").fetchone()[0])) \
            == ("wal", PAGE_SIZE)
        assert (tmp_path / "b.db").stat().st_mode & 0o777 == 0o600
        copied.write_sync(lambda db: db.execute(
            "INSERT INTO accounts (account_id, name, email, locale, created_at)"
            " VALUES ('acc_2', 'B', 'b@example.org', 'de-DE', '2024')"))
    finally:
        copied.close()
        first.close()
    reopened = Store(tmp_path / "b.db")
    try:
        assert reopened.read_sync(lambda db: [r[0] for r in db.execute(
            "SELECT account_id FROM accounts")]) == ["acc_2"]
    finally:
        reopened.close()


async def test_close_is_idempotent_and_use_after_close_raises(tmp_path: Path) -> None:
    s = Store(tmp_path / "c.db")
    await s.write(lambda db: db.execute("CREATE TABLE t (k TEXT)"))
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StoreClosed):
        s.write(lambda db: None)
    with pytest.raises(StoreClosed):
        s.write_sync(lambda db: None)
    with pytest.raises(StoreClosed):
        await s.read(lambda db: None)
    with pytest.raises(StoreClosed):
        s.read_sync(lambda db: None)


async def test_close_commits_what_was_queued(tmp_path: Path) -> None:
    s = Store(tmp_path / "q.db")
    s.write_sync(lambda db: db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
    release, blocked = await hold_writer(s)
    futures = [s.write(insert(f"k{i}")) for i in range(5)]
    release.set()
    s.close()  # waits for the writer to finish the queue
    await blocked
    await asyncio.gather(*futures)
    conn = sqlite3.connect(tmp_path / "q.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    conn.close()


def group_insert(calls: list[list[str]]) -> Any:
    """A grouped write that inserts its run with one executemany; records each run it gets."""

    def group(db: sqlite_utils.Database, keys: list[str]) -> list[tuple[bool, Any]]:
        calls.append(list(keys))
        db.conn.executemany("INSERT INTO t (k, v) VALUES (?, 1)", [(k,) for k in keys])
        return [(True, f"group:{k}") for k in keys]

    return group


def single_insert(db: sqlite_utils.Database, key: str) -> str:
    db.execute("INSERT INTO t (k, v) VALUES (?, 2)", [key])
    return f"single:{key}"


async def test_grouped_writes_apply_consecutive_items_in_one_call(store: Store) -> None:
    calls: list[list[str]] = []
    group = group_insert(calls)
    release, blocked = await hold_writer(store)
    futures = [store.write_grouped(group, "a", single_insert),
               store.write_grouped(group, "b", single_insert),
               store.write(insert("c", 3)),
               store.write_grouped(group, "d", single_insert)]
    release.set()
    await blocked
    results = await asyncio.gather(*futures)
    # Queue order holds: a and b in one call, the plain write, then d on its own.
    assert calls == [["a", "b"], ["d"]]
    assert results[:2] == ["group:a", "group:b"] and results[3] == "group:d"
    got = await store.read(lambda db: db.execute("SELECT k, v FROM t ORDER BY k").fetchall())
    assert [tuple(r) for r in got] == [("a", 1), ("b", 1), ("c", 3), ("d", 1)]


async def test_a_failing_group_falls_back_to_one_savepoint_per_item(store: Store) -> None:
    await store.write(insert("taken"))
    calls: list[list[str]] = []
    group = group_insert(calls)
    release, blocked = await hold_writer(store)
    futures = [store.write_grouped(group, k, single_insert) for k in ("x", "taken", "y")]
    release.set()
    await blocked
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert calls == [["x", "taken", "y"]]  # the group call failed on the duplicate key
    assert outcomes[0] == "single:x" and outcomes[2] == "single:y"
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    got = await store.read(lambda db: db.execute("SELECT k, v FROM t ORDER BY k").fetchall())
    # Nothing of the failed group call remains; each good item is stored once, alone.
    assert [tuple(r) for r in got] == [("taken", 0), ("x", 2), ("y", 2)]


def _same_file(fd: int, path: Path) -> bool:
    return os.fstat(fd).st_ino == os.stat(path).st_ino


async def test_a_write_is_answered_only_after_the_wal_is_synced(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """FULL's promise without FULL in the COMMIT: committed first, answered after the sync."""
    entered, release = threading.Event(), threading.Event()
    synced: list[bool] = []
    real = db_module._fdatasync

    def held_sync(fd: int) -> None:
        synced.append(_same_file(fd, Path(f"{store.path}-wal")))
        entered.set()
        release.wait(10)
        real(fd)

    monkeypatch.setattr(db_module, "_fdatasync", held_sync)
    before = store.stats.syncs
    fut = store.write(insert("durable", 7))
    await asyncio.to_thread(entered.wait, 10)
    # Committed (another connection sees it) but not answered: the sync has not returned.
    seen = await store.read(lambda db: db.execute("SELECT v FROM t WHERE k = 'durable'")
                            .fetchone())
    assert tuple(seen) == (7,)
    assert not fut.done()
    release.set()
    assert await fut == 1
    assert synced == [True]  # the WAL file itself was synced
    assert store.stats.syncs == before + 1


async def test_one_sync_answers_every_batch_committed_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "one.db", max_batch=1)  # one write per batch
    try:
        store.write_sync(lambda db: db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        entered, release = threading.Event(), threading.Event()
        real = db_module._fdatasync

        def held_sync(fd: int) -> None:
            if not release.is_set():
                entered.set()
                release.wait(10)
            real(fd)

        monkeypatch.setattr(db_module, "_fdatasync", held_sync)
        first = store.write(insert("a"))
        await asyncio.to_thread(entered.wait, 10)  # batch 1's sync is under way, held
        later = [store.write(insert(key)) for key in ("b", "c", "d")]
        # The writer is sequential: once this write runs, b, c and d have committed.
        release_writer, parked = await hold_writer(store)
        assert not any(f.done() for f in later)
        syncs = store.stats.syncs
        release.set()
        await first
        await asyncio.gather(*later)
        # Batch 1's sync, then ONE sync for the three batches committed while it ran.
        assert store.stats.syncs - syncs == 2
        release_writer.set()
        await parked
        keys = await store.read(lambda db: [r[0] for r in db.execute("SELECT k FROM t ORDER BY k")])
        assert keys == ["a", "b", "c", "d"]
    finally:
        store.close()


async def test_a_failed_sync_fails_its_writes_and_stops_the_store(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_disk(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(db_module, "_fdatasync", broken_disk)
    with pytest.raises(StoreFailed, match="Input/output error"):
        await store.write(insert("lost"))
    assert isinstance(store.failed, StoreFailed)
    with pytest.raises(StoreFailed):
        store.write(insert("refused"))
    with pytest.raises(StoreFailed):
        store.write_sync(insert("refused"))
    # Reads still work: what is there can be read out.
    assert await store.read(lambda db: db.execute("SELECT count(*) FROM t").fetchone()[0]) == 1


async def test_the_checkpointer_folds_the_wal_into_the_database(store: Store) -> None:
    loop = asyncio.get_running_loop()
    rows: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    await asyncio.gather(*(store.write(insert(f"k{i}", i)) for i in range(50)))
    store.on_checkpoint = lambda row: loop.call_soon_threadsafe(rows.put_nowait, row)
    # Commits wake the checkpointer: one checkpoint starts after this write has committed.
    await store.write(insert("last", 50))

    def in_database_file() -> int:
        # immutable=1 reads the database file alone, ignoring the WAL.
        plain = sqlite3.connect(f"file:{store.path}?mode=ro&immutable=1", uri=True)
        try:
            return int(plain.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # table not folded in yet
            return 0
        finally:
            plain.close()

    while True:
        busy, log_frames, checkpointed = await asyncio.wait_for(rows.get(), 10)
        assert busy == 0 and checkpointed <= log_frames
        if checkpointed == log_frames and in_database_file() == 51:
            break
    assert store.stats.checkpoints >= 1


async def test_the_wal_stays_bounded_while_writes_never_pause(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's own autocheckpoint is the backstop: with the background checkpointer
    all but idle, a steady stream of writes still lets the WAL restart instead of growing."""
    monkeypatch.setattr(db_module, "WRITER_AUTOCHECKPOINT_PAGES", 64)  # 1 MiB at 16 KiB pages
    store = Store(tmp_path / "w.db", max_batch=4, checkpoint_interval=3600)
    try:
        store.write_sync(lambda db: db.execute("CREATE TABLE b (k INTEGER PRIMARY KEY, v BLOB)"))
        blob = bytes(range(256)) * 256  # 64 KiB
        wal = Path(f"{store.path}-wal")
        largest = 0
        for lo in range(0, 320, 8):  # 20 MiB in all, eight writes at a time
            await asyncio.gather(*(store.write(
                lambda db, k=k: db.execute("INSERT INTO b (k, v) VALUES (?, ?)", [k, blob]))
                for k in range(lo, lo + 8)))
            largest = max(largest, wal.stat().st_size)
        assert largest < 4 << 20, largest  # restarted every ~1 MiB, not 20 MiB long
        assert store.stats.checkpoints <= 2  # the background one did (almost) none of it
        count = await store.read(lambda db: db.execute("SELECT count(*) FROM b").fetchone()[0])
        assert count == 320
    finally:
        store.close()
