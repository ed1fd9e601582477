"""Download links: minting, redemption, revocation, and ``GET /v1/privacy/downloads/{token}``.

A link token is ``<nonce>.<signature>``: 144 random bits (base64url) and the HMAC-SHA256
of the nonce under the server's link secret. The signature is checked first, in constant
time; a token that fails it (tampered, guessed, truncated) gets the same 404 as one that
never existed. A valid token is then looked up, and the decision (expired, revoked, used,
wrong caller, or served) is taken and recorded in ONE store write, so a single-use link
redeemed by 50 clients at once is served exactly once.

A served attempt is recorded when its transfer ends. A single-use link counts as used only
once the whole package has gone out (in one answer, or in Range pieces that together
cover it); a refused, unmodified (304), failed-precondition (412), unsatisfiable (416) or
broken-off transfer never uses it up. Attempts on one link are taken one at a time.

Links expire after ``Config.link_ttl_seconds``. ``Config.link_bound`` makes a link need the
requester's own token as well; ``Config.link_single_use`` makes it work once; the guard
``delivery.bound_links`` switches both on.

Tokens are never logged and never stored in redemptions or the audit log: log lines and
records name the ``link_id``. Error responses here are returned, not raised, because the
error middleware logs the request path, which holds the token.

The fault ``delivery.unbound_link`` lives in :func:`mint_link` (sequential, unsigned,
non-expiring links) and the fault ``delivery.misaddressed_email`` in :func:`link_recipient`.
With the guard ``delivery.bound_links`` on, a probe (a forged or guessed token, a bare
sequential number, or a valid link presented by someone other than its requester) is
refused as before and raises an alert naming the caller (:func:`_alert_probe`), at most one
per caller and kind of probe per simulated hour, so enumeration cannot flood the alerts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from backend import auditlog
from backend.alerts import raise_alert
from backend.auth import authenticate, bearer
from backend.config import Config
from backend.errors import ApiError, json_error
from backend.faults import FaultBoard
from backend.http import PRIVATE_HEADERS, Routes
from backend.ids import IdGen, token_hash
from backend.keys import CLOCK, CONFIG, FAULTS, IDS, METRICS, STORE
from backend.logsafe import SECRET_PATH_PREFIXES
from backend.openapi import document
from contract.rfc3339 import parse_rfc3339, rfc3339

log = logging.getLogger("overheard.privacy.delivery")
routes = Routes()

_CONTEXT = b"overheard-link/1:"
NONCE_BYTES = 18
"""144 random bits per link (at least 128 are required)."""
_NONCE = re.compile(r"[A-Za-z0-9_-]{24}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")
_SEQ = re.compile(r"[0-9]{1,18}")
"""ASCII digits only: ``str.isdigit`` also takes other scripts' digits and superscripts."""
DOWNLOAD_PATH = "/v1/privacy/downloads/"
SECRET_PATH_PREFIXES.add(DOWNLOAD_PATH)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(secret: bytes, nonce: str) -> str:
    return _b64(hmac.new(secret, _CONTEXT + nonce.encode(), hashlib.sha256).digest())


def token_for(secret: bytes, link: dict[str, Any]) -> str:
    """The token of a stored link (the requester may read it again from the request status)."""
    if link["signed"]:
        return f"{link['nonce']}.{_sign(secret, link['nonce'])}"
    return str(link["seq"])


def link_url(config: Config, token: str) -> str:
    """Absolute when ``Config.public_url`` is set, else a path on this server.

    Never built from the request's Host header: a forged Host would otherwise put an
    attacker's domain into the emailed link.
    """
    return config.public_url.rstrip("/") + DOWNLOAD_PATH + token


@dataclass(frozen=True)
class Lookup:
    """How a syntactically valid token finds its link."""

    column: str  # "nonce" or "seq"
    value: str | int


def parse_token(secret: bytes, token: str) -> Lookup | None:
    """A lookup for a well-formed, correctly signed token; ``None`` for anything else."""
    nonce, dot, sig = token.partition(".")
    if dot:
        if not (_NONCE.fullmatch(nonce) and _SIG.fullmatch(sig)):
            return None
        if not hmac.compare_digest(_sign(secret, nonce).encode(), sig.encode()):
            return None
        return Lookup("nonce", nonce)
    # Bare numbers only ever match unsigned links, which exist only while the fault
    # delivery.unbound_link is on.
    if _SEQ.fullmatch(token):
        return Lookup("seq", int(token))
    return None


def link_state(link: dict[str, Any], now: datetime) -> str:
    """``active``, ``expired``, ``revoked`` or ``used``: expiry is read against the clock."""
    if link["state"] != "active":
        return str(link["state"])
    if link["expires_at"] is not None and parse_rfc3339(link["expires_at"]) <= now:
        return "expired"
    return "active"


def requester_identity(row: dict[str, Any]) -> str:
    """What a bound link is bound to: the requester's account, or their requester token."""
    if row["requester_account_id"]:
        return f"account:{row['requester_account_id']}"
    return f"token:{row['requester_token_sha256']}"


def link_recipient(db: sqlite_utils.Database, row: dict[str, Any], faults: FaultBoard) -> str:
    """The address the link email goes to: the requester's email on file.

    For the signed-in path that is the requester account's address; for the email path the
    address on file of the account whose mailbox answered the code. Fault
    ``delivery.misaddressed_email`` (unless the guard ``identity.verified_channel`` is on)
    sends it to the address typed into the form, or to its ``to`` parameter.
    """
    return route_link(db, row, faults)[0]


def route_link(db: sqlite_utils.Database, row: dict[str, Any],
               faults: FaultBoard) -> tuple[str, bool]:
    """:func:`link_recipient`, and whether the guard ``identity.verified_channel`` diverted
    the message from an address not on file (the fault's pick) to the address on file."""
    guard = faults.on("identity.verified_channel")
    typed = None
    if faults.on("delivery.misaddressed_email"):
        typed = faults.params("delivery.misaddressed_email").get("to") or row["contact_email"]
        if typed and not guard:
            return str(typed), False
    account = row["requester_account_id"] or row["matched_account_id"]
    found = db.execute("SELECT email FROM accounts WHERE account_id = ?", [account]).fetchone()
    if found is None:
        raise LookupError("the requester has no email on file")
    on_file = str(found[0])
    return on_file, bool(typed) and str(typed).lower() != on_file.lower()


def mint_link(db: sqlite_utils.Database, *, config: Config, ids: IdGen, faults: FaultBoard,
              row: dict[str, Any], package_id: str, now: datetime, sent_to: str) -> tuple[str, str]:
    """Create the link for a built package (inside a write); returns ``(link_id, token)``."""
    guard = faults.on("delivery.bound_links")
    unbound = faults.on("delivery.unbound_link") and not guard
    seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM links").fetchone()[0])
    link_id = ids.new("lnk", package_id)
    if unbound:
        nonce, signed, expires, bound, single = f"seq-{seq}", 0, None, None, 0
    else:
        nonce = _b64(ids.secret_bytes(NONCE_BYTES, package_id))
        signed = 1
        expires = rfc3339(now + timedelta(seconds=config.link_ttl_seconds))
        bound = requester_identity(row) if (config.link_bound or guard) else None
        single = int(config.link_single_use or guard)
    db.table("links").insert({
        "link_id": link_id, "seq": seq, "nonce": nonce, "request_id": row["request_id"],
        "package_id": package_id, "state": "active", "signed": signed, "bound_to": bound,
        "single_use": single, "created_at": rfc3339(now), "expires_at": expires,
        "revoked_at": None, "revoked_by": None, "used_at": None, "sent_to": sent_to,
    })
    auditlog.append(db, at=rfc3339(now), actor="system", action="link.created",
                    object_id=row["request_id"],
                    detail={"link_id": link_id, "package_id": package_id, "expires_at": expires,
                            "bound": bound is not None, "single_use": bool(single),
                            "signed": bool(signed)})
    return link_id, token_for(config.link_secret, {"signed": signed, "nonce": nonce, "seq": seq})


def latest_link(db: sqlite_utils.Database, request_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM links WHERE request_id = ? ORDER BY seq DESC LIMIT 1",
                         [request_id]))
    return rows[0] if rows else None


def link_view(config: Config, link: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "link_id": link["link_id"], "state": link_state(link, now),
        "expires_at": link["expires_at"], "single_use": bool(link["single_use"]),
        "bound": link["bound_to"] is not None, "created_at": link["created_at"],
    }


def revoke_links(db: sqlite_utils.Database, request_id: str, *, at: str, by: str) -> list[str]:
    """Revoke every active link of a request (inside a write); returns their ids."""
    ids = [r[0] for r in db.execute(
        "SELECT link_id FROM links WHERE request_id = ? AND state = 'active'", [request_id])]
    for link_id in ids:
        db.execute("UPDATE links SET state = 'revoked', revoked_at = ?, revoked_by = ?"
                   " WHERE link_id = ?", [at, by, link_id])
    return ids


@dataclass(frozen=True)
class Redemption:
    outcome: str
    """ok (to be served), not_found, expired, revoked, used, not_requester, package_gone."""
    link_id: str | None = None
    package_file: str | None = None
    request_id: str | None = None
    package_id: str | None = None


def redeem(db: sqlite_utils.Database, lookup: Lookup, *, now: datetime, callers: frozenset[str],
           client_ip: str | None, user_agent: str | None) -> Redemption:
    """Decide one download attempt and record it (inside ONE write: single-use is exact)."""
    if lookup.column == "nonce":
        rows = list(db.query("SELECT * FROM links WHERE nonce = ? AND signed = 1", [lookup.value]))
    else:
        rows = list(db.query("SELECT * FROM links WHERE seq = ? AND signed = 0", [lookup.value]))
    if not rows:
        return Redemption("not_found")
    link = rows[0]
    state = link_state(link, now)
    if link["bound_to"] is not None and link["bound_to"] not in callers:
        outcome = "not_requester"
    elif state != "active":
        outcome = state
    else:
        outcome = "ok"
    pkg = db.execute("SELECT file_name FROM packages WHERE package_id = ?",
                     [link["package_id"]]).fetchone()
    if outcome == "ok" and pkg is None:
        outcome = "package_gone"
    at = rfc3339(now)
    if outcome != "ok":
        # An attempt that is served is recorded when its transfer ends (:func:`record_transfer`):
        # only then is it known whether the package went out.
        db.table("redemptions").insert({"link_id": link["link_id"], "at": at, "outcome": outcome,
                                  "client_ip": client_ip, "user_agent": user_agent})
        auditlog.append(db, at=at, actor="link", action="package.download_refused",
                        object_id=link["request_id"],
                        detail={"link_id": link["link_id"], "package_id": link["package_id"],
                                "outcome": outcome})
    return Redemption(outcome, link["link_id"], pkg[0] if pkg else None, link["request_id"],
                      link["package_id"])


def record_transfer(db: sqlite_utils.Database, served: Redemption, *, now: datetime,
                    outcome: str, delivered: bool, client_ip: str | None,
                    user_agent: str | None) -> None:
    """Record how a served attempt ended (inside a write). ``delivered``: with it, the whole
    package has now gone out to this link (in one answer or in Range pieces), which is when
    a single-use link counts as used; a refused, unmodified or broken transfer never burns it."""
    at = rfc3339(now)
    db.table("redemptions").insert({"link_id": served.link_id, "at": at, "outcome": outcome,
                              "client_ip": client_ip, "user_agent": user_agent})
    if delivered:
        db.execute("UPDATE links SET state = 'used', used_at = ? WHERE link_id = ?"
                   " AND single_use = 1 AND state = 'active'", [at, served.link_id])
    auditlog.append(db, at=at, actor="link",
                    action="package.downloaded" if delivered else "package.download_unfinished",
                    object_id=served.request_id,
                    detail={"link_id": served.link_id, "package_id": served.package_id,
                            "outcome": outcome})


_REFUSALS: dict[str, tuple[int, str, str]] = {
    "not_found": (404, "not_found", "no such download"),
    "expired": (410, "link_expired", "this link has expired"),
    "revoked": (410, "link_revoked", "this link has been revoked"),
    "used": (410, "link_used", "this link has already been used"),
    "package_gone": (410, "package_gone", "this package no longer exists"),
    "not_requester": (403, "requester_only",
                      "this link works only together with the requester's own token"),
}


def _refuse(outcome: str) -> web.Response:
    status, code, message = _REFUSALS[outcome]
    resp = json_error(status, code, message)
    resp.headers.update(PRIVATE_HEADERS)
    return resp


async def _callers(request: web.Request) -> frozenset[str]:
    """Every identity the caller proves: its account (user token) and its token digest."""
    token = bearer(request)
    if token is None:
        return frozenset()
    ids = {f"token:{token_hash(token)}"}
    who = await authenticate(request)
    if who is not None and who.kind == "user":
        ids.add(f"account:{who.account_id}")
    return frozenset(ids)


document("GET", "/v1/privacy/downloads/{token}", "Download an access package by its link",
         roles=("link",), content_type="application/zip",
         response_schema={"type": "string", "format": "binary"},
         responses={200: "the zip (Range requests supported)", 206: "a byte range of the zip",
                    403: "the link is bound to the requester: send their token too",
                    404: "no such link (also: tampered or unsigned token)",
                    410: "expired, revoked, already used, or the package was erased"})


@routes.get(DOWNLOAD_PATH + "{token}", allow_head=False)  # a HEAD must not use up a link
async def download(request: web.Request) -> web.StreamResponse:
    return await serve_download(request, request.match_info["token"])


async def serve_download(request: web.Request, token: str,
                         callers: frozenset[str] | None = None) -> web.StreamResponse:
    """Redeem ``token`` for the caller and answer with the zip or the refusal. ``callers``
    are the identities the caller proved (default: from its bearer token)."""
    try:
        return await _download(request, token, callers)
    except ApiError as exc:  # answered here: the error middleware would log the token's path
        log.info("download refused: %s", exc.code)
        return _private(json_error(exc.status, exc.code, exc.message, **exc.extra))
    except Exception:  # never let the error middleware log this path: it holds the token
        log.exception("download failed")
        return _private(json_error(500, "internal", "internal error; this is a bug in overheard"))


def _private(resp: web.Response) -> web.Response:
    resp.headers.update(PRIVATE_HEADERS)
    return resp


async def _download(request: web.Request, token: str,
                    callers: frozenset[str] | None) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    metrics = app[METRICS]
    lookup = parse_token(config.link_secret, token)
    if lookup is None:
        metrics.inc("overheard_downloads_total", outcome="not_found")
        log.info("download refused: malformed or badly signed token")
        await _alert_probe(request, "forged_token", {})
        return _refuse("not_found")
    served_range = byte_range(request.headers.get("Range"))
    if served_range == "unsatisfiable":
        resp = _private(json_error(416, "range_not_satisfiable",
                                   "an empty suffix range selects nothing"))
        resp.headers["Content-Range"] = "bytes */*"
        return resp
    if callers is None:
        callers = await _callers(request)
    ua = request.headers.get("User-Agent", "")[:200] or None
    # One attempt per link at a time: the next one is decided after this one's transfer
    # ends, so a single-use link is served once even to fifty clients at once, and still
    # to the next one when this transfer breaks off.
    async with transfers(app).lock(lookup):
        now = app[CLOCK].now()
        result = await app[STORE].write(lambda db: redeem(
            db, lookup, now=now, callers=callers, client_ip=request.remote, user_agent=ua))
        metrics.inc("overheard_downloads_total", outcome=result.outcome)
        log.info("download %s: link %s", result.outcome, result.link_id or "-")
        if result.outcome == "not_found" and lookup.column == "seq":
            await _alert_probe(request, "sequential_guess", {})
        elif result.outcome == "not_requester":
            await _alert_probe(request, "not_requester",
                               {"link_id": result.link_id, "request_id": result.request_id})
        if result.outcome != "ok":
            return _refuse(result.outcome)
        return await _serve(request, result, served_range is not None, ua)


async def _serve(request: web.Request, served: Redemption, ranged: bool,
                 user_agent: str | None) -> web.StreamResponse:
    """Send the package and record how the transfer ended."""
    app = request.app
    path = Path(app[CONFIG].packages_dir) / str(served.package_file)
    headers = {
        **PRIVATE_HEADERS,
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="overheard-{served.request_id}.zip"',
    }
    resp = PackageResponse(path, headers=headers)
    # A Range this server does not serve (another unit, several ranges, garbage) is
    # ignored and the whole package sent, as RFC 9110 section 14.2 allows.
    target = request if ranged or "Range" not in request.headers else request.clone(
        headers={k: v for k, v in request.headers.items() if k.lower() != "range"})
    sent = False
    try:
        await resp.prepare(target)
        sent = True
    except ConnectionError:
        log.info("download broke off: link %s", served.link_id)
    finally:
        outcome, delivered = transfers(app).ended(served.link_id or "", resp, sent=sent)
        now = app[CLOCK].now()
        await asyncio.shield(app[STORE].write(lambda db: record_transfer(
            db, served, now=now, outcome=outcome, delivered=delivered,
            client_ip=request.remote, user_agent=user_agent)))
    return resp


_RANGE = re.compile(r"bytes=(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))", re.IGNORECASE)


def byte_range(header: str | None) -> str | None:
    """The Range header if it is one byte range this server serves; ``"unsatisfiable"`` for
    ``bytes=-0`` (a suffix of nothing); ``None`` for no Range or one to ignore."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last, suffix = found.groups()
    if suffix is not None:
        return "unsatisfiable" if int(suffix) == 0 else header
    if last and int(last) < int(first):
        return None  # an invalid range-spec: ignored like any Range not served
    return header


class PackageResponse(web.FileResponse):
    """A package file that may be prepared inside the handler, so the handler learns whether
    it went out; aiohttp's own later ``prepare`` then does nothing."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


@dataclass
class Transfers:
    """Per-link locks, and the byte ranges of each package that have gone out so far."""

    locks: dict[tuple[str, str | int], asyncio.Lock] = field(default_factory=dict)
    users: dict[tuple[str, str | int], int] = field(default_factory=dict)
    covered: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @asynccontextmanager
    async def lock(self, lookup: Lookup) -> AsyncIterator[None]:
        key = (lookup.column, lookup.value)
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] = self.users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.users[key] -= 1
            if not self.users[key]:
                del self.users[key], self.locks[key]

    def ended(self, link_id: str, resp: web.StreamResponse, *, sent: bool) -> tuple[str, bool]:
        """``(outcome, delivered)`` of one transfer: ``delivered`` once the pieces sent so far
        cover the whole package."""
        if not sent:
            return "incomplete", False
        if resp.status == 200:
            self.covered.pop(link_id, None)
            return "ok", True
        if resp.status != 206:
            return _STATUS_OUTCOMES.get(resp.status, f"status_{resp.status}"), False
        piece = _content_range(resp.headers.get("Content-Range", ""))
        if piece is None:
            return "partial", False
        start, end, size = piece
        spans = _merge([*self.covered.get(link_id, []), (start, end)])
        if spans == [(0, size)]:
            self.covered.pop(link_id, None)
            return "ok", True
        self.covered[link_id] = spans
        return "partial", False


_STATUS_OUTCOMES = {304: "not_modified", 412: "precondition_failed", 416: "unsatisfiable"}


def _content_range(value: str) -> tuple[int, int, int] | None:
    """``(start, end exclusive, size)`` of ``bytes a-b/size``."""
    found = re.fullmatch(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)", value)
    if found is None:
        return None
    first, last, size = (int(g) for g in found.groups())
    return first, last + 1, size


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


TRANSFERS = web.AppKey("delivery.transfers", Transfers)


def transfers(app: web.Application) -> Transfers:
    return app[TRANSFERS]


_PROBES = {
    "forged_token": "a download link token that is malformed or fails its signature (guessed or tampered)",
    "sequential_guess": "a bare link number while links are signed (enumeration)",
    "not_requester": "a valid link presented without its requester's token (forwarded or leaked)",
}


async def _alert_probe(request: web.Request, why: str, detail: dict[str, Any]) -> None:
    """Guard ``delivery.bound_links``: alert on a refused probe, naming who probed (their
    account when they sent a user token, else their address) but never the token itself.
    One alert per caller and kind of probe per simulated hour."""
    app = request.app
    if not app[FAULTS].on("delivery.bound_links"):
        return
    who = await authenticate(request)
    account = who.account_id if who is not None and who.kind == "user" else None
    caller = f"account:{account}" if account else f"ip:{request.remote}"
    now_dt = app[CLOCK].now()
    now, since = rfc3339(now_dt), rfc3339(now_dt - timedelta(hours=1))
    ua = request.headers.get("User-Agent", "")[:200] or None

    def write(db: sqlite_utils.Database) -> None:
        if db.execute(
                "SELECT 1 FROM alerts WHERE guard = 'delivery.bound_links' AND at > ?"
                " AND json_extract(detail, '$.caller') = ? AND json_extract(detail, '$.probe') = ?",
                [since, caller, why]).fetchone():
            return
        raise_alert(db, alert_id=app[IDS].new("alr"), at=now, guard="delivery.bound_links",
                    request_id=detail.get("request_id"), account_id=account,
                    summary=f"download refused: {_PROBES[why]}; caller {caller}",
                    detail={"probe": why, "caller": caller, "client_ip": request.remote,
                            "user_agent": ua, **detail})

    await app[STORE].write(write)


def setup(app: web.Application) -> None:
    app[TRANSFERS] = Transfers()
    app[METRICS].describe("overheard_downloads_total", "download attempts by outcome")
    app.router.add_routes(routes)
