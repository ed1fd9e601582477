"""The recordings and their audio: every statement on the two tables the voice path uses.

A recording is two rows written in one transaction: its metadata in ``recordings`` and its
PCM in ``audio`` (in the one format of :mod:`contract.audio`). Callers run these functions
inside :meth:`~backend.storage.Store.write` or :meth:`~backend.storage.Store.read`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import sqlite_utils

from backend.storage.db import insert_rows, select_in
from contract.audio import CHANNELS, RATE, WIDTH

T = TypeVar("T")

INSERT_RECORDING = (
    "INSERT INTO recordings (recording_id, utterance_id, account_id, device_id, serial,"
    " recorded_at, stored_at, duration_ms, transcript, locale, rate, width, channels,"
    " pcm_bytes, pcm_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    f" {RATE}, {WIDTH}, {CHANNELS}, ?, ?)"
)
"""Parameters: recording_id, utterance_id, account_id, device_id, serial, recorded_at,
stored_at, duration_ms, transcript, locale, pcm_bytes, pcm_sha256 (the format is fixed)."""
INSERT_AUDIO = "INSERT INTO audio (recording_id, pcm) VALUES (?, ?)"

FETCH_BATCH = 32
"""Recordings fetched per round trip: ~2 MB of 2-second clips, bounded whatever the account."""


def by_utterance(db: sqlite_utils.Database, utterance_id: str) -> tuple[str, str] | None:
    """``(recording_id, account_id)`` of the recording stored under ``utterance_id``."""
    row = db.execute("SELECT recording_id, account_id FROM recordings WHERE utterance_id = ?",
                     [utterance_id]).fetchone()
    return (row[0], row[1]) if row is not None else None


def by_utterances(db: sqlite_utils.Database,
                  utterance_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """:func:`by_utterance` for many ids at once: utterance_id → (recording_id, account_id)."""
    return {uid: (recording_id, account_id) for uid, recording_id, account_id in select_in(
        db, "SELECT utterance_id, recording_id, account_id FROM recordings"
        " WHERE utterance_id IN ({marks})", utterance_ids)}


def insert(db: sqlite_utils.Database, rows: list[tuple[Any, ...]],
           blobs: list[tuple[str, bytes]]) -> None:
    """Insert recordings (rows for :data:`INSERT_RECORDING`) and their audio."""
    insert_rows(db, INSERT_RECORDING, rows)
    insert_rows(db, INSERT_AUDIO, blobs)


def history_page(db: sqlite_utils.Database, account_id: str, after: tuple[str, str] | None,
                 limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` of an account's recordings after ``(recorded_at, recording_id)``,
    oldest first."""
    sql = ("SELECT recording_id, device_id, recorded_at, duration_ms, transcript"
           " FROM recordings WHERE account_id = ?")
    params: list[Any] = [account_id]
    if after is not None:
        sql += " AND (recorded_at, recording_id) > (?, ?)"
        params += list(after)
    sql += " ORDER BY recorded_at, recording_id LIMIT ?"
    params.append(limit)
    return list(db.query(sql, params))


def audio_of(db: sqlite_utils.Database, recording_id: str,
             account_id: str) -> tuple[bytes, int, int, int] | None:
    """``(pcm, rate, width, channels)`` of one of ``account_id``'s recordings."""
    row = db.execute(
        "SELECT a.pcm, r.rate, r.width, r.channels FROM recordings r"
        " JOIN audio a ON a.recording_id = r.recording_id"
        " WHERE r.recording_id = ? AND r.account_id = ?",
        [recording_id, account_id],
    ).fetchone()
    return (row[0], row[1], row[2], row[3]) if row is not None else None


def delete_owned(db: sqlite_utils.Database, recording_id: str, account_id: str) -> bool:
    """Delete one of ``account_id``'s recordings and its audio; False when it is not theirs."""
    owned = db.execute("SELECT 1 FROM recordings WHERE recording_id = ? AND account_id = ?",
                       [recording_id, account_id]).fetchone()
    if owned is None:
        return False
    db.execute("DELETE FROM audio WHERE recording_id = ?", [recording_id])
    db.execute("DELETE FROM recordings WHERE recording_id = ?", [recording_id])
    return True


def usage(db: sqlite_utils.Database, account_id: str) -> tuple[int, int]:
    """``(recordings, PCM bytes)`` stored for ``account_id``."""
    count, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(pcm_bytes), 0) FROM recordings WHERE account_id = ?",
        [account_id]).fetchone()
    return int(count), int(size)


def delete_account(db: sqlite_utils.Database, account_id: str) -> None:
    """Delete every recording of ``account_id`` and its audio."""
    db.execute("DELETE FROM audio WHERE recording_id IN"
               " (SELECT recording_id FROM recordings WHERE account_id = ?)", [account_id])
    db.execute("DELETE FROM recordings WHERE account_id = ?", [account_id])


def left_of(db: sqlite_utils.Database, account_id: str) -> tuple[int, int]:
    """``(recordings, audio blobs)`` still stored for ``account_id``."""
    rows = db.execute("SELECT COUNT(*) FROM recordings WHERE account_id = ?",
                      [account_id]).fetchone()[0]
    blobs = db.execute("SELECT COUNT(*) FROM audio a JOIN recordings r USING (recording_id)"
                       " WHERE r.account_id = ?", [account_id]).fetchone()[0]
    return int(rows), int(blobs)


def count_where(db: sqlite_utils.Database, where: str, value: str) -> int:
    """How many recordings ``where`` (a condition over ``recordings r`` with one ``?``) selects."""
    return int(db.execute(f"SELECT COUNT(*) FROM recordings r WHERE {where}",
                          [value]).fetchone()[0])


def ids_of(db: sqlite_utils.Database, account_id: str) -> frozenset[str]:
    """The ids of every recording stored under ``account_id``."""
    return frozenset(r[0] for r in db.execute(
        "SELECT recording_id FROM recordings WHERE account_id = ?", [account_id]))


def iter_with_audio(db: sqlite_utils.Database, where: str, value: str,
                    make: Callable[..., T]) -> Iterator[T]:
    """Stream the recordings ``where`` selects, with their audio, oldest first,
    :data:`FETCH_BATCH` rows at a time; each row as ``make(recording_id, account_id,
    device_id, recorded_at, duration_ms, transcript, rate, width, channels, pcm)``."""
    cur = db.conn.execute(
        "SELECT r.recording_id, r.account_id, r.device_id, r.recorded_at, r.duration_ms,"
        " r.transcript, r.rate, r.width, r.channels, a.pcm"
        " FROM recordings r JOIN audio a ON a.recording_id = r.recording_id"
        f" WHERE {where} ORDER BY r.recorded_at, r.recording_id", [value])
    try:
        while batch := cur.fetchmany(FETCH_BATCH):
            for row in batch:
                yield make(*row)
    finally:
        cur.close()
