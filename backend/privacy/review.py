"""What an operator needs to judge an assignment: who asked, whose data would answer, and
what looks wrong between the two.

The 2018 package was assembled by a person looking at two requests. This module puts the
requester's identity signals (name, address, whether the address was proven, devices and
recordings, last activity) beside the same signals of the account being assigned, and
words the mismatches as warnings: a requester without a single device being sent a
household's recordings, a name or an address that differs, an account that is also the
subject of another request in review at the same time. It reads; it decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from backend.alerts import read_alerts
from backend.privacy.state import default_subject, get_request


@dataclass(frozen=True)
class DeviceSignal:
    """One active device of an account and what it recorded."""

    device_id: str
    serial: str
    model: str
    room: str
    registered_at: str
    recordings: int
    last_recorded_at: str | None


@dataclass(frozen=True)
class AccountSignals:
    """An account as an operator should see it before sending its data anywhere."""

    account_id: str
    name: str
    email: str
    created_at: str
    erased: bool
    devices: list[DeviceSignal]
    recordings: int
    recording_devices: int
    """Distinct devices the account's recordings came from (resold ones included)."""
    last_recorded_at: str | None


@dataclass(frozen=True)
class RequesterSignals:
    """Who filed a request, as far as the backend can tell."""

    channel: str
    """``account`` (signed in with the account's own token) or ``email`` (the web form)."""
    name: str | None
    email: str | None
    email_verified: bool
    """Signed in, or the code sent to the address was answered."""
    account: AccountSignals | None
    """The requester's own account: the signed-in one, or the holder of the verified address."""


@dataclass(frozen=True)
class Review:
    """One request, its requester, the account assigned (or proposed), and the warnings."""

    request: dict[str, Any]
    requester: RequesterSignals
    assigned: AccountSignals | None
    warnings: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def account_signals(db: sqlite_utils.Database, account_id: str | None) -> AccountSignals | None:
    """The signals of one account, or None when there is no such account."""
    if not account_id:
        return None
    row = db.execute("SELECT account_id, name, email, created_at, erased_at FROM accounts"
                     " WHERE account_id = ?", [account_id]).fetchone()
    if row is None:
        return None
    devices = [DeviceSignal(*d) for d in db.execute(
        "SELECT d.device_id, d.serial, d.model, d.room, d.registered_at,"
        " (SELECT COUNT(*) FROM recordings r WHERE r.device_id = d.device_id"
        "   AND r.account_id = d.account_id),"
        " (SELECT MAX(recorded_at) FROM recordings r WHERE r.device_id = d.device_id"
        "   AND r.account_id = d.account_id)"
        " FROM devices d WHERE d.account_id = ? AND d.deregistered_at IS NULL"
        " ORDER BY d.registered_at, d.device_id", [account_id])]
    count, sources, last = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT device_id), MAX(recorded_at) FROM recordings"
        " WHERE account_id = ?", [account_id]).fetchone()
    return AccountSignals(row[0], row[1], row[2], row[3], row[4] is not None, devices,
                          int(count), int(sources), last)


def requester_signals(db: sqlite_utils.Database, row: dict[str, Any]) -> RequesterSignals:
    """The requester of ``row``: typed name and address, or those of the signed-in account."""
    verified = row["verified_at"] is not None
    # Until the code is answered the match stays hidden: acting on it would skip the check.
    own = default_subject(row) if verified or row["channel"] == "account" else None
    account = account_signals(db, own)
    name = row["contact_name"] or (account.name if account else None)
    email = (account.email if account and row["channel"] == "account" else None) \
        or row["contact_email"]
    return RequesterSignals(row["channel"], name, email, verified, account)


def _same_text(a: str | None, b: str | None) -> bool:
    return (a or "").strip().casefold() == (b or "").strip().casefold()


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def assignment_warnings(requester: RequesterSignals, assigned: AccountSignals | None,
                        others: list[dict[str, Any]]) -> list[str]:
    """Everything about this assignment that a careful operator would stop at.

    ``others`` are the other open requests whose subject is the assigned account.
    """
    if assigned is None:
        return []
    out: list[str] = []
    own = requester.account
    if not requester.email_verified:
        out.append("the requester's identity is not verified: the code sent to the address "
                   "has not been answered")
    if own is not None and own.account_id != assigned.account_id:
        out.append(f"this is not the requester's own account: the requester is "
                   f"{own.name} ({own.account_id}); you are assigning {assigned.name} "
                   f"({assigned.account_id})")
    requester_devices = len(own.devices) if own is not None else 0
    if requester_devices == 0 and (assigned.recordings or assigned.devices):
        out.append(f"this requester has no devices; the account you are assigning holds "
                   f"{_plural(assigned.recordings, 'recording')} from "
                   f"{_plural(assigned.recording_devices, 'device')}")
    if requester.name and not _same_text(requester.name, assigned.name):
        out.append(f"name mismatch: the requester is \u201c{requester.name}\u201d; the "
                   f"account holder is \u201c{assigned.name}\u201d")
    if requester.email and not _same_text(requester.email, assigned.email):
        out.append(f"email mismatch: the requester's address is {requester.email}; the "
                   f"address on file for the account is {assigned.email}")
    if assigned.erased:
        out.append("the account you are assigning has been erased")
    for other in others:
        out.append(f"the account you are assigning is also the subject of request "
                   f"{other['request_id']} ({other['status']}): two requests in review "
                   f"for one account at once is how packages get swapped")
    return out


def _others_for(db: sqlite_utils.Database, account_id: str, request_id: str) -> list[dict[str, Any]]:
    return list(db.query(
        "SELECT request_id, status, kind FROM privacy_requests WHERE subject_account_id = ?"
        " AND request_id != ? AND status IN ('pending', 'approved', 'in_processing')"
        " ORDER BY created_at, request_id", [account_id, request_id]))


def review(db: sqlite_utils.Database, request_id: str,
           candidate: str | None = None) -> Review | None:
    """The review of ``request_id`` with its assigned account, or with ``candidate`` when an
    operator is about to assign that one instead. None when there is no such request."""
    row = get_request(db, request_id)
    if row is None:
        return None
    requester = requester_signals(db, row)
    target = candidate or row["subject_account_id"]
    assigned = account_signals(db, target)
    others = _others_for(db, target, request_id) if target else []
    return Review(row, requester, assigned, assignment_warnings(requester, assigned, others),
                  read_alerts(db, request_id))
