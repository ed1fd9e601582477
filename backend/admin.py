"""Admin routes: operators, faults and guards, the clock, the audit log and alerts."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend import auditlog
from backend.auth import require
from backend.errors import BadRequest
from backend.ids import new_token, token_hash
from backend.keys import CLOCK, FAULTS, IDS, STORE

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for request bodies: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read a JSON body into ``model``; every problem becomes a 400 naming the field."""
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_field", field=where) from None


class OperatorIn(Strict):
    name: str = Field(min_length=1, max_length=200)


class SwitchIn(Strict):
    name: str
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


class SwitchesIn(Strict):
    switches: list[SwitchIn]


class ClockIn(Strict):
    advance_seconds: float = Field(ge=0, le=10 * 365 * 24 * 3600)


@routes.post("/v1/operators")
async def create_operator(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, OperatorIn)
    app = request.app
    operator_id = app[IDS].new("op")
    token = new_token("opt")
    now = app[CLOCK].iso()

    def write(db: Any) -> None:
        db["operators"].insert({"operator_id": operator_id, "name": body.name, "created_at": now})
        db["tokens"].insert({"token_sha256": token_hash(token), "kind": "operator",
                             "subject_id": operator_id, "created_at": now, "revoked_at": None})
        auditlog.append(db, at=now, actor="admin", action="operator.created",
                        object_id=operator_id, detail={"name": body.name})

    await app[STORE].write(write)
    return web.json_response({"operator_id": operator_id, "operator_token": token}, status=201)


def _switch_routes(kind: str) -> None:
    path = f"/v1/admin/{kind}s"

    @routes.get(path)
    async def get_switches(request: web.Request) -> web.Response:
        await require(request, "admin")
        return web.json_response({f"{kind}s": request.app[FAULTS].snapshot(kind)})

    @routes.put(path)
    async def put_switches(request: web.Request) -> web.Response:
        await require(request, "admin")
        body = await parse_body(request, SwitchesIn)
        board = request.app[FAULTS]
        for sw in body.switches:  # validate all before changing any
            board.spec(sw.name, kind)
        for sw in body.switches:
            board.set(sw.name, sw.enabled, sw.params, kind=kind)
        now = request.app[CLOCK].iso()
        changed = [sw.model_dump() for sw in body.switches]
        await request.app[STORE].write(lambda db: auditlog.append(
            db, at=now, actor="admin", action=f"{kind}s.changed", detail={"switches": changed}))
        return web.json_response({f"{kind}s": board.snapshot(kind)})

    get_switches.__name__ = f"get_{kind}s"
    put_switches.__name__ = f"put_{kind}s"


_switch_routes("fault")
_switch_routes("guard")


@routes.post("/v1/admin/clock")
async def advance_clock(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, ClockIn)
    clock = request.app[CLOCK]
    before = clock.iso()
    clock.advance(body.advance_seconds)
    now = clock.iso()
    await request.app[STORE].write(lambda db: auditlog.append(
        db, at=now, actor="admin", action="clock.advanced",
        detail={"from": before, "seconds": body.advance_seconds}))
    return web.json_response({"now": now})


@routes.get("/v1/admin/clock")
async def get_clock(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response({"now": request.app[CLOCK].iso()})


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", code="invalid_query", field=name) from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}", code="invalid_query", field=name)
    return value


@routes.get("/v1/admin/audit")
async def get_audit(request: web.Request) -> web.Response:
    await require(request, "admin")
    after = _int_query(request, "after", 0, 0, 2**62)
    limit = _int_query(request, "limit", 500, 1, 5000)
    entries = await request.app[STORE].read(lambda db: auditlog.rows(db, after=after, limit=limit))
    verify = request.query.get("verify") in ("1", "true")
    body: dict[str, Any] = {"entries": entries}
    if verify:
        rep = await request.app[STORE].read(auditlog.verify_chain)
        body["chain"] = {"ok": rep.ok, "entries": rep.entries, "first_bad_seq": rep.first_bad_seq,
                         "problem": rep.problem}
    return web.json_response(body)


@routes.get("/v1/admin/alerts")
async def get_alerts(request: web.Request) -> web.Response:
    await require(request, "admin")

    def read(db: Any) -> list[dict[str, Any]]:
        out = []
        for row in db.query("SELECT * FROM alerts ORDER BY at, alert_id"):
            row["detail"] = json.loads(row["detail"])
            out.append(row)
        return out

    return web.json_response({"alerts": await request.app[STORE].read(read)})


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
