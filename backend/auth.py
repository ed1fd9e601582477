"""Who is calling: bearer tokens resolved to a :class:`Principal`.

Admin: the configured admin token (constant-time compare). User, device and operator
tokens are looked up by their SHA-256 in ``tokens``; a revoked token is unknown.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Literal

import sqlite_utils
from aiohttp import web

from backend.errors import Forbidden, Unauthorized
from backend.ids import token_hash
from backend.keys import CONFIG, STORE

Kind = Literal["admin", "operator", "user", "device"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``subject_id`` is the account, device or operator id."""

    kind: Kind
    subject_id: str
    account_id: str | None = None
    """The account a user or device acts for (a device's current binding)."""


_TOKEN_TEXT = re.compile(r"[\x21-\x7e]{1,512}")
"""What a bearer token can be: printable ASCII (RFC 6750's token68 and then some), bounded.
A header byte outside it (aiohttp hands undecodable bytes on as surrogates) is no token."""


def bearer(request: web.Request) -> str | None:
    """The bearer token sent, ``None`` without one; 401 for one no token could be."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    value = value.strip()
    if not _TOKEN_TEXT.fullmatch(value):
        raise Unauthorized("the bearer token holds characters no token has", code="unauthorized")
    return value


def store_token(db: sqlite_utils.Database, *, token_sha256: str, kind: str, subject_id: str,
                at: str) -> None:
    """Record a new bearer token (by its SHA-256 only); call inside a write transaction."""
    db.execute(
        "INSERT INTO tokens (token_sha256, kind, subject_id, created_at, revoked_at)"
        " VALUES (?, ?, ?, ?, NULL)",
        [token_sha256, kind, subject_id, at],
    )


def lookup_token(db: sqlite_utils.Database, token: str) -> Principal | None:
    row = db.execute(
        "SELECT kind, subject_id FROM tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
        [token_hash(token)],
    ).fetchone()
    if row is None:
        return None
    kind, subject = row
    if kind == "user":
        return Principal("user", subject, account_id=subject)
    if kind == "device":
        dev = db.execute(
            "SELECT account_id FROM devices WHERE device_id = ? AND deregistered_at IS NULL",
            [subject],
        ).fetchone()
        if dev is None:
            return None
        return Principal("device", subject, account_id=dev[0])
    return Principal("operator", subject)


async def authenticate(request: web.Request) -> Principal | None:
    """The caller, or ``None`` when no or an unknown token was given."""
    token = bearer(request)
    if token is None:
        return None
    return await resolve_token(request.app, token)


async def resolve_token(app: web.Application, token: str) -> Principal | None:
    """Whose ``token`` is: the admin, or a live user, device or operator token; else None."""
    admin = app[CONFIG].admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal("admin", "admin")
    return await app[STORE].read(lambda db: lookup_token(db, token))


async def require(request: web.Request, *kinds: Kind) -> Principal:
    """The caller if it is one of ``kinds``; 401 without credentials, 403 for the wrong role."""
    who = await authenticate(request)
    if who is None:
        raise Unauthorized("a valid bearer token is required", code="unauthorized")
    if who.kind not in kinds:
        raise Forbidden(f"this needs a {' or '.join(kinds)} token", code="forbidden")
    return who
