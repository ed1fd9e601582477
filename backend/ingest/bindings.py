"""Which account a device's speech belongs to: registration, resolution and the binding cache.

A serial is *bound* to one account at a time; ``bindings`` keeps the history (which account,
from when to when). A device token names a device row; the device row names its account.
The account of a recording is always derived here, from the token, never from anything a
device says.

Normal behaviour (no faults): registering a serial that is bound (to another account, as on
resale, or to the same one, as after a factory reset) closes the open binding, deregisters
the old device row, revokes its tokens, opens a new binding, and drops every cached entry
for the serial once the change is committed. Each utterance is also checked against the
tables inside the transaction that stores it, so a token revoked a moment ago cannot slip
a recording in between commit and cache drop.

The faults that live here, and the guard that stops both:

- ``ingest.stale_binding``: re-registration closes the binding row but leaves the old device
  row and token alive and the cache untouched. The cache is keyed by device token and also
  remembers the first binding seen for a serial; a resold device's speech (old token or new)
  keeps landing in the seller's account.
- ``ingest.serial_collision``: registering a serial that is bound to another account reuses
  that binding: the new device row is put under the first account, so the second household's
  recordings are stored under the first.
- guard ``binding.revoke_on_transfer``: re-registration always revokes at once and drops the
  cache; a serial bound to another account moves only when the request says
  ``{"transfer": true}``, otherwise 409 ``serial_in_use`` and an alert. A transfer it carries
  out raises an alert too (serial, from and to account, tokens revoked, cache entries
  dropped), so the previous owner can be told that the device no longer records for them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils
from aiohttp import web

from backend.auth import store_token
from backend.ids import token_hash
from backend.keys import FAULTS, STORE
from backend.storage.db import select_in

STALE_BINDING = "ingest.stale_binding"
SERIAL_COLLISION = "ingest.serial_collision"
REVOKE_ON_TRANSFER = "binding.revoke_on_transfer"


@dataclass
class Binding:
    """A device token resolved to its device and the account its speech is stored under."""

    token_sha256: str
    device_id: str
    account_id: str
    serial: str
    stale: bool = False
    """Resolved through a cache entry the tables no longer agree with (fault only)."""
    revoked: bool = False
    """Set when the device was deregistered or re-registered; open streams stop storing."""


class BindingCache:
    """Token → binding, plus the first binding seen per serial. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: dict[str, Binding] = {}
        self._by_serial: dict[str, Binding] = {}

    def get(self, token_sha256: str) -> Binding | None:
        with self._lock:
            hit = self._by_token.get(token_sha256)
        return hit if hit is not None and not hit.revoked else None

    def for_serial(self, serial: str) -> Binding | None:
        with self._lock:
            hit = self._by_serial.get(serial)
        return hit if hit is not None and not hit.revoked else None

    def remember(self, binding: Binding) -> None:
        with self._lock:
            self._by_token[binding.token_sha256] = binding
            self._by_serial.setdefault(binding.serial, binding)

    def forget(self, *, device_ids: Iterable[str] = (), serials: Iterable[str] = ()) -> int:
        """Drop and mark revoked every entry for these devices or serials; returns how many."""
        devices, sers = set(device_ids), set(serials)
        with self._lock:
            gone = [b for b in self._by_token.values()
                    if b.device_id in devices or b.serial in sers]
            gone += [b for b in self._by_serial.values()
                     if b.device_id in devices or b.serial in sers]
            for b in gone:
                b.revoked = True
                self._by_token.pop(b.token_sha256, None)
                if self._by_serial.get(b.serial) is b:
                    del self._by_serial[b.serial]
        return len({id(b) for b in gone})

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_token)


# -- resolution ------------------------------------------------------------------------

_LIVE_DEVICES = (
    # One row holding every match as JSON: the sqlite3 module gives up the GIL around each
    # step, and a step per row costs the writer a wait for the GIL per device when the event
    # loop is busy (see backend.storage.db.insert_rows).
    "SELECT json_group_array(json_array(t.token_sha256, d.device_id, d.account_id, d.serial))"
    " FROM tokens t"
    " JOIN devices d ON d.device_id = t.subject_id"
    " JOIN accounts a ON a.account_id = d.account_id"
    " WHERE t.token_sha256 IN ({marks}) AND t.kind = 'device' AND t.revoked_at IS NULL"
    " AND d.deregistered_at IS NULL AND a.erased_at IS NULL"
)


def lookup_devices(db: sqlite_utils.Database, token_sha256s: Iterable[str]) -> dict[str, Binding]:
    """The live device behind each device token; tokens with none (unknown, revoked,
    deregistered) are missing from the result."""
    return {token: Binding(token, device_id, account_id, serial)
            for (found,) in select_in(db, _LIVE_DEVICES, token_sha256s)
            for token, device_id, account_id, serial in json.loads(found)}


def lookup_device(db: sqlite_utils.Database, token_sha256: str) -> Binding | None:
    """The live device behind a device token, or ``None`` (unknown, revoked, deregistered)."""
    return lookup_devices(db, [token_sha256]).get(token_sha256)


def apply_stale_cache(cache: BindingCache, fresh: Binding) -> Binding:
    """Under ``ingest.stale_binding``: the serial's first cached account wins over the tables."""
    old = cache.for_serial(fresh.serial)
    if old is None or old.account_id == fresh.account_id:
        return fresh
    return Binding(fresh.token_sha256, fresh.device_id, old.account_id, fresh.serial, stale=True)


# -- registration ----------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """What registering a serial did, for the response, the audit entry and the cache."""

    device_id: str
    account_id: str
    """The account the new device row stores under (differs from the request only by fault)."""
    serial: str
    replaced_devices: tuple[str, ...] = ()
    """Device rows deregistered (and their tokens revoked) by this registration."""
    closed_bindings: tuple[int, ...] = ()
    previous_accounts: tuple[str, ...] = ()
    """Accounts the serial was bound to before."""
    binding_id: int | None = None
    """The binding opened; ``None`` when an existing one was reused (fault)."""
    refused: bool = False
    """The guard refused a silent transfer (409 ``serial_in_use``)."""
    revoked_tokens: int = 0
    """Device tokens of the replaced rows revoked by this registration."""

    @property
    def moved_from(self) -> tuple[str, ...]:
        """Other accounts whose binding this registration revoked: a transfer (resale)."""
        if not self.replaced_devices:
            return ()
        return tuple(a for a in self.previous_accounts if a != self.account_id)


def register(
    db: sqlite_utils.Database,
    *,
    now: str,
    account_id: str,
    device_id: str,
    token_sha256: str,
    serial: str,
    model: str,
    room: str,
    transfer: bool,
    stale_fault: bool,
    collision_fault: bool,
    guard: bool,
) -> Registration:
    """Bind ``serial`` to ``account_id`` under a new device row; call inside a write."""
    open_rows = db.execute(
        "SELECT binding_id, device_id, account_id FROM bindings"
        " WHERE serial = ? AND bound_to IS NULL ORDER BY bound_from, binding_id",
        [serial],
    ).fetchall()
    elsewhere = [r for r in open_rows if r[2] != account_id]
    previous = tuple(dict.fromkeys(r[2] for r in open_rows))

    if elsewhere and guard and not transfer:
        return Registration("", account_id, serial, previous_accounts=previous, refused=True)

    if elsewhere and collision_fault and not guard:
        # The bug: the serial looks registered already, so the first account's binding is
        # reused for the new device instead of opening one for the requester.
        first_account = open_rows[0][2]
        _insert_device(db, now=now, device_id=device_id, account_id=first_account,
                       token_sha256=token_sha256, serial=serial, model=model, room=room)
        return Registration(device_id, first_account, serial, previous_accounts=previous)

    revoke = guard or not stale_fault
    replaced: list[str] = []
    revoked_tokens = 0
    for binding_id, old_device, _old_account in open_rows:
        db.execute("UPDATE bindings SET bound_to = ? WHERE binding_id = ?", [now, binding_id])
        if revoke:
            revoked_tokens += _retire_device(db, old_device, now)
            replaced.append(old_device)
    _insert_device(db, now=now, device_id=device_id, account_id=account_id,
                   token_sha256=token_sha256, serial=serial, model=model, room=room)
    cur = db.execute(
        "INSERT INTO bindings (serial, device_id, account_id, bound_from, bound_to)"
        " VALUES (?, ?, ?, ?, NULL)",
        [serial, device_id, account_id, now],
    )
    return Registration(
        device_id, account_id, serial,
        replaced_devices=tuple(replaced),
        closed_bindings=tuple(r[0] for r in open_rows),
        previous_accounts=previous,
        binding_id=cur.lastrowid,
        revoked_tokens=revoked_tokens,
    )


def deregister(db: sqlite_utils.Database, device_id: str, now: str) -> str | None:
    """Deregister a live device, revoke its tokens, close its binding; its serial, or ``None``."""
    row = db.execute(
        "SELECT serial FROM devices WHERE device_id = ? AND deregistered_at IS NULL", [device_id]
    ).fetchone()
    if row is None:
        return None
    _retire_device(db, device_id, now)
    db.execute("UPDATE bindings SET bound_to = ? WHERE device_id = ? AND bound_to IS NULL",
               [now, device_id])
    return str(row[0])


def _insert_device(db: sqlite_utils.Database, *, now: str, device_id: str, account_id: str,
                   token_sha256: str, serial: str, model: str, room: str) -> None:
    db.execute(
        "INSERT INTO devices (device_id, serial, model, room, account_id, registered_at,"
        " deregistered_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        [device_id, serial, model, room, account_id, now],
    )
    store_token(db, token_sha256=token_sha256, kind="device", subject_id=device_id, at=now)


def _retire_device(db: sqlite_utils.Database, device_id: str, now: str) -> int:
    """Deregister a device row and revoke its tokens; returns how many tokens were revoked."""
    db.execute("UPDATE devices SET deregistered_at = ? WHERE device_id = ?"
               " AND deregistered_at IS NULL", [now, device_id])
    cur = db.execute("UPDATE tokens SET revoked_at = ? WHERE subject_id = ? AND kind = 'device'"
                     " AND revoked_at IS NULL", [now, device_id])
    return max(cur.rowcount, 0)


# -- the cache on the app, and resolving a token -------------------------------------------

BINDINGS = web.AppKey("ingest.bindings", BindingCache)


def cache_of(app: web.Application) -> BindingCache:
    """The app's binding cache (made by :func:`setup_bindings`)."""
    return app[BINDINGS]


def setup_bindings(app: web.Application) -> None:
    app[BINDINGS] = BindingCache()


def stale_bindings_on(app: web.Application) -> bool:
    """True when ``ingest.stale_binding`` is on and its guard is not."""
    board = app[FAULTS]
    return board.on(STALE_BINDING) and not board.on(REVOKE_ON_TRANSFER)


async def resolve(app: web.Application, token: str) -> Binding | None:
    """The binding a device token streams under, or ``None`` if the token is not a live device's."""
    digest = token_hash(token)
    cache = cache_of(app)
    hit = cache.get(digest)
    if hit is not None:
        return hit
    fresh = await app[STORE].read(lambda db: lookup_device(db, digest))
    if fresh is None:
        return None
    if stale_bindings_on(app):
        fresh = apply_stale_cache(cache, fresh)
    cache.remember(fresh)
    return fresh
