"""Schema migrations, applied in order by :class:`backend.storage.Store` at open.

Each migration is a function of the write connection, run in its own transaction and
recorded in ``_migrations``. Never edit an applied migration: append a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, named after the function."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m0001_accounts_devices_recordings(db: sqlite_utils.Database) -> None:
    # executescript() would COMMIT mid-migration, so statements go one by one.
    for sql in (
        """CREATE TABLE accounts (
            account_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL,
            locale TEXT NOT NULL,
            address TEXT,
            created_at TEXT NOT NULL,
            erased_at TEXT
        )""",
        "CREATE INDEX accounts_email ON accounts(email)",
        "CREATE INDEX accounts_name ON accounts(name)",
        # Tokens are stored as SHA-256 of the secret, never in clear.
        """CREATE TABLE tokens (
            token_sha256 TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'device', 'operator')),
            subject_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        "CREATE INDEX tokens_subject ON tokens(subject_id)",
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            serial TEXT NOT NULL,
            model TEXT NOT NULL,
            room TEXT NOT NULL,
            account_id TEXT NOT NULL REFERENCES accounts(account_id),
            registered_at TEXT NOT NULL,
            deregistered_at TEXT
        )""",
        "CREATE INDEX devices_serial ON devices(serial)",
        "CREATE INDEX devices_account ON devices(account_id)",
        # Which account a serial belonged to, from when to when (resale history).
        """CREATE TABLE bindings (
            binding_id INTEGER PRIMARY KEY AUTOINCREMENT,
            serial TEXT NOT NULL,
            device_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            bound_from TEXT NOT NULL,
            bound_to TEXT
        )""",
        "CREATE INDEX bindings_serial ON bindings(serial, bound_from)",
        """CREATE TABLE operators (
            operator_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE recordings (
            recording_id TEXT PRIMARY KEY,
            utterance_id TEXT NOT NULL UNIQUE,
            account_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            serial TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            duration_ms INTEGER NOT NULL,
            transcript TEXT NOT NULL,
            locale TEXT NOT NULL,
            rate INTEGER NOT NULL,
            width INTEGER NOT NULL,
            channels INTEGER NOT NULL,
            pcm_bytes INTEGER NOT NULL,
            pcm_sha256 TEXT NOT NULL
        )""",
        "CREATE INDEX recordings_account_time ON recordings(account_id, recorded_at, recording_id)",
        "CREATE INDEX recordings_device ON recordings(device_id)",
        # Audio beside the metadata so one transaction holds both.
        """CREATE TABLE audio (
            recording_id TEXT PRIMARY KEY REFERENCES recordings(recording_id) ON DELETE CASCADE,
            pcm BLOB NOT NULL
        )""",
    ):
        db.execute(sql)


@migration
def m0002_audit_alerts(db: sqlite_utils.Database) -> None:
    for sql in (
        # Append-only and hash-chained: each entry's hash covers the one before it.
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            object_id TEXT,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            guard TEXT NOT NULL,
            request_id TEXT,
            account_id TEXT,
            summary TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
    ):
        db.execute(sql)
