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


@migration
def m0003_privacy(db: sqlite_utils.Database) -> None:
    for sql in (
        # One row per data-subject request (Art. 15 access, Art. 17 erasure). Secrets are
        # kept as keyed digests: the verification code as an HMAC, the requester token as
        # its SHA-256.
        """CREATE TABLE privacy_requests (
            request_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('access', 'erasure')),
            status TEXT NOT NULL CHECK (status IN ('identity_unverified', 'pending', 'approved',
                'in_processing', 'complete', 'denied', 'canceled', 'error')),
            reason TEXT,
            channel TEXT NOT NULL CHECK (channel IN ('account', 'email')),
            requester_account_id TEXT,
            requester_token_sha256 TEXT,
            contact_email TEXT,
            contact_name TEXT,
            matched_account_id TEXT,
            subject_account_id TEXT,
            code_hmac TEXT,
            code_expires_at TEXT,
            code_tries INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            due_at TEXT NOT NULL,
            verified_at TEXT,
            assigned_by TEXT,
            approved_by TEXT,
            completed_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            total_items INTEGER,
            package_id TEXT,
            error TEXT,
            result TEXT
        )""",
        "CREATE INDEX privacy_requests_status ON privacy_requests(status, created_at)",
        "CREATE INDEX privacy_requests_subject ON privacy_requests(subject_account_id, kind, status)",
        "CREATE INDEX privacy_requests_requester ON privacy_requests(requester_account_id, kind, status)",
        # A built access package: the zip lives at packages/<package_id>.zip. ``owners`` is
        # JSON {account_id: recordings} as stored, so erasure finds every package that holds
        # a subject's recordings, not only the ones built for them.
        """CREATE TABLE packages (
            package_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            file_name TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            files INTEGER NOT NULL,
            recordings INTEGER NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            owners TEXT NOT NULL,
            created_at TEXT NOT NULL,
            quarantined_at TEXT
        )""",
        "CREATE INDEX packages_account ON packages(account_id)",
        "CREATE INDEX packages_request ON packages(request_id)",
        # Download links. The random nonce is kept so the requester can read the link again
        # from the request status; the link is only valid with the HMAC over it, which needs
        # the server's link secret (not in this file).
        """CREATE TABLE links (
            link_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL UNIQUE,
            nonce TEXT NOT NULL UNIQUE,
            request_id TEXT NOT NULL,
            package_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'used')),
            signed INTEGER NOT NULL,
            bound_to TEXT,
            single_use INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT,
            revoked_by TEXT,
            used_at TEXT,
            sent_to TEXT NOT NULL
        )""",
        "CREATE INDEX links_request ON links(request_id)",
        "CREATE INDEX links_package ON links(package_id)",
        # Every attempt to redeem a link, without the token.
        """CREATE TABLE redemptions (
            redemption_id INTEGER PRIMARY KEY AUTOINCREMENT,
            link_id TEXT NOT NULL,
            at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            client_ip TEXT,
            user_agent TEXT
        )""",
        "CREATE INDEX redemptions_link ON redemptions(link_id)",
        # The simulated mail the backend sent: verification codes, links, notices.
        """CREATE TABLE outbox (
            message_id INTEGER PRIMARY KEY AUTOINCREMENT,
            to_addr TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            request_id TEXT,
            code TEXT,
            url TEXT
        )""",
        "CREATE INDEX outbox_to ON outbox(to_addr COLLATE NOCASE, message_id)",
    ):
        db.execute(sql)


@migration
def m0004_normalised_emails(db: sqlite_utils.Database) -> None:
    """Account emails in the normal form new accounts get (:func:`backend.emails.normalise`),
    so an address stored in another case or encoding is still found as the same one. An
    address whose normal form another live account already holds stays as typed: two
    accounts are never merged behind their holders' backs."""
    from backend import emails

    rows = db.execute("SELECT account_id, email FROM accounts WHERE erased_at IS NULL"
                      " ORDER BY created_at, account_id").fetchall()
    for account_id, email in rows:
        normal = emails.normalise(email)
        if normal == email:
            continue
        clash = db.execute(
            "SELECT 1 FROM accounts WHERE email = ? COLLATE NOCASE AND account_id != ?"
            " AND erased_at IS NULL", [normal, account_id]).fetchone()
        if clash is None:
            db.execute("UPDATE accounts SET email = ? WHERE account_id = ?", [normal, account_id])
