"""Admin routes for accounts and their devices: create, look up, register, re-register, deregister.

An account is a household with one owner user token. Devices are registered by serial;
registering a serial that is bound elsewhere is a re-registration (resale): the semantics,
and the faults and guard that change them, live in :mod:`backend.ingest.bindings` because
they decide where a device's speech is stored. Every change appends an audit entry in the
same transaction. Audit details carry ids and serials, never names or email addresses,
because the audit log is append-only and must survive an erasure without holding personal
data.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils
from aiohttp import web
from pydantic import Field

from backend import auditlog
from backend.alerts import raise_alert
from backend.auth import require, store_token
from backend.emails import Email
from backend.errors import Conflict, Gone, NotFound
from backend.http import Routes, Strict, parse_body
from backend.ids import token_hash
from backend.ingest.bindings import (
    REVOKE_ON_TRANSFER,
    SERIAL_COLLISION,
    STALE_BINDING,
    Registration,
    cache_of,
    deregister,
    register,
    stale_bindings_on,
)
from backend.keys import CLOCK, FAULTS, IDS, STORE
from backend.openapi import document
from backend.storage import recordings
from contract.stream import LOCALE_PATTERN

routes = Routes()

# Printable text without control characters: names and rooms end up in CSV and HTML.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
SERIAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class AccountIn(Strict):
    """A new account (household) and its owner."""

    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    email: Email
    """Stored in its normal form (:mod:`backend.emails`): one account per address."""
    locale: str = Field(pattern=LOCALE_PATTERN, examples=["de-DE", "de_DE"])
    address: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$")


class DeviceIn(Strict):
    """A device serial to bind to the account."""

    serial: str = Field(pattern=SERIAL_PATTERN)
    model: str = Field(min_length=1, max_length=100, pattern=TEXT_PATTERN)
    room: str = Field(min_length=1, max_length=100, pattern=TEXT_PATTERN)
    transfer: bool = False
    """Move a serial that is bound to another account (required by ``binding.revoke_on_transfer``)."""


_ACCOUNT_OUT = {
    "type": "object",
    "required": ["account_id", "user_token"],
    "properties": {"account_id": {"type": "string"}, "user_token": {"type": "string"}},
}
_DEVICE_OUT = {
    "type": "object",
    "required": ["device_id", "device_token"],
    "properties": {
        "device_id": {"type": "string"},
        "device_token": {"type": "string"},
        "replaced_devices": {"type": "array", "items": {"type": "string"}},
    },
}
_BINDING = {
    "type": "object",
    "properties": {
        "binding_id": {"type": "integer"}, "serial": {"type": "string"},
        "device_id": {"type": "string"}, "account_id": {"type": "string"},
        "bound_from": {"type": "string"}, "bound_to": {"type": ["string", "null"]},
    },
}

document("POST", "/v1/accounts", "Create an account and its owner's user token", roles=("admin",),
         body=AccountIn, responses={201: "Created", 400: "Invalid body", 401: "No token",
                                    403: "Not admin", 409: "Email already in use"},
         response_schema=_ACCOUNT_OUT, tag="accounts")
document("GET", "/v1/accounts/{account_id}", "An account with its devices", roles=("admin",),
         responses={200: "The account", 401: "No token", 403: "Not admin", 404: "No such account"},
         tag="accounts")
document("POST", "/v1/accounts/{account_id}/devices",
         "Register a device serial (re-registering a bound serial moves it)", roles=("admin",),
         body=DeviceIn,
         responses={201: "Registered", 400: "Invalid body", 401: "No token", 403: "Not admin",
                    404: "No such account", 409: "Serial bound to another account (guard)"},
         response_schema=_DEVICE_OUT, tag="accounts")
document("GET", "/v1/accounts/{account_id}/bindings",
         "Binding history: which serials were bound to the account, from when to when",
         roles=("admin",),
         responses={200: "The bindings", 401: "No token", 403: "Not admin", 404: "No such account"},
         response_schema={"type": "object", "properties": {
             "account_id": {"type": "string"}, "bindings": {"type": "array", "items": _BINDING}}},
         tag="accounts")
document("DELETE", "/v1/devices/{device_id}", "Deregister a device; its token stops working",
         roles=("admin",),
         responses={204: "Deregistered", 401: "No token", 403: "Not admin",
                    404: "No such device", 409: "Already deregistered"},
         tag="accounts")


def _live_account(db: sqlite_utils.Database, account_id: str) -> None:
    row = db.execute("SELECT erased_at FROM accounts WHERE account_id = ?", [account_id]).fetchone()
    if row is None:
        raise NotFound(f"no account {account_id}", code="account_not_found")
    if row[0] is not None:
        raise Gone(f"account {account_id} was erased", code="account_erased")


@routes.post("/v1/accounts")
async def create_account(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, AccountIn)
    app = request.app
    account_id = app[IDS].new("acc")
    token = app[IDS].token("usr")
    now = app[CLOCK].iso()

    def write(db: sqlite_utils.Database) -> None:
        # Email-path privacy requests find the account by email, so one live account per address.
        taken = db.execute(
            "SELECT 1 FROM accounts WHERE lower(email) = lower(?) AND erased_at IS NULL",
            [body.email],
        ).fetchone()
        if taken:
            raise Conflict("an account with this email exists", code="email_in_use")
        db.execute(
            "INSERT INTO accounts (account_id, name, email, locale, address, created_at, erased_at)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL)",
            [account_id, body.name, body.email, body.locale, body.address, now],
        )
        store_token(db, token_sha256=token_hash(token), kind="user", subject_id=account_id,
                    at=now)
        auditlog.append(db, at=now, actor="admin", action="account.created",
                        object_id=account_id, detail={"locale": body.locale})

    await app[STORE].write(write)
    return web.json_response({"account_id": account_id, "user_token": token}, status=201)


@routes.get("/v1/accounts/{account_id}")
async def get_account(request: web.Request) -> web.Response:
    await require(request, "admin")
    account_id = request.match_info["account_id"]

    def read(db: sqlite_utils.Database) -> dict[str, Any] | None:
        rows = list(db.query("SELECT * FROM accounts WHERE account_id = ?", [account_id]))
        if not rows:
            return None
        account = rows[0]
        account["devices"] = list(db.query(
            "SELECT device_id, serial, model, room, account_id, registered_at, deregistered_at"
            " FROM devices WHERE account_id = ? ORDER BY registered_at, device_id", [account_id]))
        account["recordings"] = recordings.usage(db, account_id)[0]
        return account

    account = await request.app[STORE].read(read)
    if account is None:
        raise NotFound(f"no account {account_id}", code="account_not_found")
    return web.json_response(account)


@routes.post("/v1/accounts/{account_id}/devices")
async def register_device(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, DeviceIn)
    app = request.app
    account_id = request.match_info["account_id"]
    board = app[FAULTS]
    guard = board.on(REVOKE_ON_TRANSFER)
    stale_fault = board.on(STALE_BINDING)
    collision_fault = board.on(SERIAL_COLLISION)
    ids = app[IDS]
    device_id = ids.new("dev")
    token = ids.token("dvt")
    now = app[CLOCK].iso()

    def write(db: sqlite_utils.Database) -> Registration:
        _live_account(db, account_id)
        reg = register(
            db, now=now, account_id=account_id, device_id=device_id,
            token_sha256=token_hash(token), serial=body.serial, model=body.model, room=body.room,
            transfer=body.transfer, stale_fault=stale_fault, collision_fault=collision_fault,
            guard=guard,
        )
        if reg.refused:
            raise_alert(
                db, alert_id=ids.new("alr"), at=now, guard=REVOKE_ON_TRANSFER, account_id=account_id,
                summary=f"serial {body.serial} is bound to another account; registration "
                        "refused without an explicit transfer",
                detail={"serial": body.serial, "bound_to_accounts": list(reg.previous_accounts),
                        "requested_account_id": account_id},
            )
            return reg
        detail: dict[str, Any] = {
            "serial": body.serial, "account_id": reg.account_id, "transfer": body.transfer,
            "replaced_devices": list(reg.replaced_devices),
            "previous_accounts": list(reg.previous_accounts), "binding_id": reg.binding_id,
        }
        if reg.account_id != account_id:
            detail["requested_account_id"] = account_id
        auditlog.append(db, at=now, actor="admin", action="device.registered",
                        object_id=device_id, detail=detail)
        return reg

    reg = await app[STORE].write(write)
    if reg.refused:
        raise Conflict(
            f"serial {body.serial} is bound to another account; send \"transfer\": true to move it",
            code="serial_in_use")
    dropped = 0
    if reg.binding_id is not None and not stale_bindings_on(app):
        # Committed: no cached binding of the serial may route speech any more.
        dropped = cache_of(app).forget(device_ids=reg.replaced_devices, serials=[body.serial])
    if guard and reg.moved_from:
        # The guard moved a serial away from another account: say so, with what it revoked,
        # so the previous owner can be told the device no longer records for them. Raised
        # after the cache drop (which must follow the commit) so the count is what happened.
        await app[STORE].write(lambda db: raise_alert(
            db, alert_id=ids.new("alr"), at=now, guard=REVOKE_ON_TRANSFER, account_id=account_id,
            summary=f"serial {body.serial} transferred from {', '.join(reg.moved_from)} to "
                    f"{account_id}; previous binding and tokens revoked",
            detail={"serial": body.serial, "from_accounts": list(reg.moved_from),
                    "to_account": account_id, "device_id": reg.device_id,
                    "revoked_devices": list(reg.replaced_devices),
                    "tokens_revoked": reg.revoked_tokens, "cache_entries_dropped": dropped,
                    "explicit_transfer": body.transfer},
        ))
    return web.json_response(
        {"device_id": reg.device_id, "device_token": token,
         "replaced_devices": list(reg.replaced_devices)},
        status=201)


@routes.get("/v1/accounts/{account_id}/bindings")
async def get_bindings(request: web.Request) -> web.Response:
    await require(request, "admin")
    account_id = request.match_info["account_id"]

    def read(db: sqlite_utils.Database) -> list[dict[str, Any]] | None:
        if db.execute("SELECT 1 FROM accounts WHERE account_id = ?", [account_id]).fetchone() is None:
            return None
        return list(db.query(
            "SELECT binding_id, serial, device_id, account_id, bound_from, bound_to FROM bindings"
            " WHERE account_id = ? ORDER BY bound_from, binding_id", [account_id]))

    rows = await request.app[STORE].read(read)
    if rows is None:
        raise NotFound(f"no account {account_id}", code="account_not_found")
    return web.json_response({"account_id": account_id, "bindings": rows})


@routes.delete("/v1/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    await require(request, "admin")
    app = request.app
    device_id = request.match_info["device_id"]
    now = app[CLOCK].iso()

    def write(db: sqlite_utils.Database) -> str:
        serial = deregister(db, device_id, now)
        if serial is None:
            known = db.execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone()
            if known:
                # The device's state, not a gone resource: its record and history stay.
                raise Conflict(f"device {device_id} is already deregistered",
                               code="deregistered")
            raise NotFound(f"no device {device_id}", code="device_not_found")
        auditlog.append(db, at=now, actor="admin", action="device.deregistered",
                        object_id=device_id, detail={"serial": serial})
        return serial

    await app[STORE].write(write)
    # Deregistration is never subject to the stale-binding fault: the token stops at once.
    cache_of(app).forget(device_ids=[device_id])
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
