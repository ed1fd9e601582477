"""Admin routes: operators, faults and guards, run-time settings, the clock, the audit log
and alerts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from aiohttp import web
from pydantic import BaseModel, Field, create_model, model_validator

from backend import auditlog
from backend.alerts import read_alerts
from backend.auth import require, store_token
from backend.clock import ClockRangeError
from backend.config import MAX_DURATION, RUNTIME_KEYS
from backend.errors import BadRequest
from backend.faults import FAULTS as FAULT_SPECS
from backend.faults import GUARDS as GUARD_SPECS
from backend.faults import Spec
from backend.http import Routes, Strict, parse_body, query_int
from backend.ids import token_hash
from backend.keys import CLOCK, FAULTS, IDS, LIVE, STORE
from backend.openapi import document

routes = Routes()


class OperatorIn(Strict):
    name: str = Field(min_length=1, max_length=200)


def _switches_model(kind: str, table: dict[str, Spec]) -> type[BaseModel]:
    """``{"switches": [{"name", "enabled", "params"}]}`` for one catalogue: one variant per
    entry, so the spec lists the names and each one's parameters, and the handler validates
    with exactly that schema."""
    variants: list[type[BaseModel]] = []
    for name, spec in table.items():
        title = "".join(w.capitalize() for w in re.split(r"[._]", name))
        # Built at run time from the catalogue, so the field types are values here: the
        # dicts are typed ``Any`` for that reason, and pydantic checks them as it builds.
        param_fields: dict[str, Any] = {p: (Any, Field(default=None, description=d))
                                        for p, d in spec.params.items()}
        params = create_model(f"{title}Params", __base__=Strict, **param_fields)
        switch_fields: dict[str, Any] = {
            "name": (Literal.__getitem__(name), ...), "enabled": (bool, True),
            "params": (params, Field(default_factory=params))}
        variants.append(create_model(f"{title}Switch", __base__=Strict, __doc__=spec.summary,
                                     **switch_fields))
    one_of: Any = Union.__getitem__(tuple(variants))
    item: Any = Annotated[one_of, Field(discriminator="name")]
    model_fields: dict[str, Any] = {"switches": (list[item], ...)}
    return create_model(f"{kind.capitalize()}SwitchesIn", __base__=Strict, **model_fields)


SWITCHES_IN = {"fault": _switches_model("fault", FAULT_SPECS),
               "guard": _switches_model("guard", GUARD_SPECS)}


Seconds = Annotated[int, Field(ge=0, le=MAX_DURATION)]


class ConfigIn(Strict):
    """Run-time settings to change (the keys of a scenario's ``[backend]`` table and more);
    keys left out keep their value."""

    manual_review: list[Literal["access", "erasure"]] | None = Field(
        None, max_length=2, description=RUNTIME_KEYS["manual_review"])
    link_ttl: Seconds | None = Field(None, description=RUNTIME_KEYS["link_ttl"])
    export_workers: Annotated[int, Field(ge=1, le=64)] | None = Field(None,
                                       description=RUNTIME_KEYS["export_workers"])
    link_bound: bool | None = Field(None, description=RUNTIME_KEYS["link_bound"])
    link_single_use: bool | None = Field(None, description=RUNTIME_KEYS["link_single_use"])
    code_ttl: Seconds | None = Field(None, description=RUNTIME_KEYS["code_ttl"])
    code_tries: Annotated[int, Field(ge=1, le=100)] | None = Field(
        None, description=RUNTIME_KEYS["code_tries"])

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        """JSON has one number type: ``62.0`` is the integer 62, as JSON Schema says;
        ``62.5``, ``"62"`` and ``true`` stay what they are (and are refused)."""
        if isinstance(data, dict):
            return {k: int(v) if isinstance(v, float) and v.is_integer() else v
                    for k, v in data.items()}
        return data


_CONFIG_OUT = {"type": "object", "required": sorted(RUNTIME_KEYS),
               "properties": {"manual_review": {"type": "array", "items": {"type": "string"}},
                              "link_ttl": {"type": "integer"},
                              "export_workers": {"type": "integer"},
                              "link_bound": {"type": "boolean"},
                              "link_single_use": {"type": "boolean"},
                              "code_ttl": {"type": "integer"}, "code_tries": {"type": "integer"}}}


class ClockIn(Strict):
    advance_seconds: float = Field(ge=0, le=10 * 365 * 24 * 3600)


_ADMIN = {401: "No or unknown token", 403: "Not admin"}
_SWITCHES = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}}
_NOW = {"type": "object", "required": ["now"], "properties": {"now": {"type": "string"}}}

document("POST", "/v1/operators", "Create an operator and its token", roles=("admin",),
         body=OperatorIn, responses={201: "Created", 400: "Invalid body", **_ADMIN},
         response_schema={"type": "object", "required": ["operator_id", "operator_token"],
                          "properties": {"operator_id": {"type": "string"},
                                         "operator_token": {"type": "string"}}},
         tag="admin")
for _kind in ("fault", "guard"):
    document("GET", f"/v1/admin/{_kind}s", f"Every {_kind} with its state and parameters",
             roles=("admin",), responses={200: "OK", **_ADMIN}, response_schema=_SWITCHES,
             tag="admin")
    document("PUT", f"/v1/admin/{_kind}s", f"Switch {_kind}s on or off (all or none)",
             roles=("admin",), body=SWITCHES_IN[_kind],
             responses={200: "OK", 400: f"Invalid body or unknown {_kind}", **_ADMIN},
             response_schema=_SWITCHES, tag="admin")
document("GET", "/v1/admin/config", "The run-time settings as they are now", roles=("admin",),
         responses={200: "OK", **_ADMIN}, response_schema=_CONFIG_OUT, tag="admin")
document("PUT", "/v1/admin/config", "Change run-time settings (all given keys or none)",
         roles=("admin",), body=ConfigIn,
         responses={200: "OK: the settings now", 400: "Unknown key or bad value",
                    409: "A setting that is fixed when the server starts", **_ADMIN},
         response_schema=_CONFIG_OUT, tag="admin")
document("POST", "/v1/admin/clock", "Advance the simulated clock", roles=("admin",), body=ClockIn,
         responses={200: "OK", 400: "Invalid body, or beyond the clock's range (year 2100)", **_ADMIN},
         response_schema=_NOW, tag="admin")
document("GET", "/v1/admin/clock", "The simulated clock", roles=("admin",),
         responses={200: "OK", **_ADMIN}, response_schema=_NOW, tag="admin")
document("GET", "/v1/admin/audit", "The hash-chained audit log (verify=1 checks the chain)",
         roles=("admin",), query=(("after", "integer", False, {"minimum": 0, "maximum": 2**62}),
                                  ("limit", "integer", False, {"minimum": 1, "maximum": 5000}),
                                  ("verify", "string", False)),
         responses={200: "OK", 400: "Invalid query", **_ADMIN},
         response_schema={"type": "object", "required": ["entries"],
                          "properties": {"entries": {"type": "array"}, "chain": {"type": "object"}}},
         tag="admin")
document("GET", "/v1/admin/alerts", "Alerts raised by guards", roles=("admin",),
         responses={200: "OK", **_ADMIN},
         response_schema={"type": "object", "required": ["alerts"],
                          "properties": {"alerts": {"type": "array"}}},
         tag="admin")


@routes.post("/v1/operators")
async def create_operator(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, OperatorIn)
    app = request.app
    operator_id = app[IDS].new("op")
    token = app[IDS].token("opt")
    now = app[CLOCK].iso()

    def write(db: Any) -> None:
        db["operators"].insert({"operator_id": operator_id, "name": body.name, "created_at": now})
        store_token(db, token_sha256=token_hash(token), kind="operator",
                    subject_id=operator_id, at=now)
        auditlog.append(db, at=now, actor="admin", action="operator.created",
                        object_id=operator_id, detail={"name": body.name})

    await app[STORE].write(write)
    return web.json_response({"operator_id": operator_id, "operator_token": token}, status=201)


async def apply_switches(app: web.Application, kind: str, body: Any) -> list[dict[str, Any]]:
    """Switch faults or guards as ``body`` (a validated ``SWITCHES_IN[kind]``) says, audit-log
    the change, and return the catalogue's new state."""
    board = app[FAULTS]
    # Validated as a whole: either every switch changes or none does.
    changed = [{"name": sw.name, "enabled": sw.enabled,
                "params": sw.params.model_dump(exclude_unset=True)} for sw in body.switches]
    for sw in changed:
        board.set(sw["name"], sw["enabled"], sw["params"], kind=kind)
    now = app[CLOCK].iso()
    await app[STORE].write(lambda db: auditlog.append(
        db, at=now, actor="admin", action=f"{kind}s.changed", detail={"switches": changed}))
    return board.snapshot(kind)


def _switch_routes(kind: str) -> None:
    path = f"/v1/admin/{kind}s"

    @routes.get(path)
    async def get_switches(request: web.Request) -> web.Response:
        await require(request, "admin")
        return web.json_response({f"{kind}s": request.app[FAULTS].snapshot(kind)})

    @routes.put(path)
    async def put_switches(request: web.Request) -> web.Response:
        await require(request, "admin")
        body: Any = await parse_body(request, SWITCHES_IN[kind])
        return web.json_response({f"{kind}s": await apply_switches(request.app, kind, body)})

    get_switches.__name__ = f"get_{kind}s"
    put_switches.__name__ = f"put_{kind}s"


_switch_routes("fault")
_switch_routes("guard")


@routes.get("/v1/admin/config")
async def get_config(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response(request.app[LIVE].current.runtime())


@routes.put("/v1/admin/config")
async def put_config(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, ConfigIn)
    changes = body.model_dump(exclude_none=True)
    now_config = request.app[LIVE].apply(changes)  # SettingFixed: a 409 naming the key
    at = request.app[CLOCK].iso()
    await request.app[STORE].write(lambda db: auditlog.append(
        db, at=at, actor="admin", action="config.changed", detail={"changes": changes}))
    return web.json_response(now_config.runtime())


@routes.post("/v1/admin/clock")
async def advance_clock(request: web.Request) -> web.Response:
    await require(request, "admin")
    body = await parse_body(request, ClockIn)
    return web.json_response({"now": await advance_clock_by(request.app, body.advance_seconds)})


async def advance_clock_by(app: web.Application, seconds: float) -> str:
    """Move the simulated clock forward (audit-logged); the new time."""
    clock = app[CLOCK]
    before = clock.iso()
    try:
        clock.advance(seconds)
    except ClockRangeError as exc:
        raise BadRequest(str(exc), code="clock_out_of_range", field="advance_seconds") from None
    now = clock.iso()
    await app[STORE].write(lambda db: auditlog.append(
        db, at=now, actor="admin", action="clock.advanced",
        detail={"from": before, "seconds": seconds}))
    return now


@routes.get("/v1/admin/clock")
async def get_clock(request: web.Request) -> web.Response:
    await require(request, "admin")
    return web.json_response({"now": request.app[CLOCK].iso()})


@routes.get("/v1/admin/audit")
async def get_audit(request: web.Request) -> web.Response:
    await require(request, "admin")
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 500, 1, 5000)
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
    return web.json_response({"alerts": await request.app[STORE].read(read_alerts)})


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
