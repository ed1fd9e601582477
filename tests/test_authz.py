"""Authorization matrix, generated from the served /openapi.json.

Every operation in the spec × six callers: the **owner** of the object the path names,
**another account**'s user, **another account's device**, an **operator**, the **admin**,
and **anonymous** (no token). ``EXPECT`` holds the outcome of every cell; an operation in
the spec without a row fails the test, and so does a row the spec does not have. Objects
are the owner's (account A): its account, device, recording, requests and link; for the
``requester`` routes the owner is whoever filed the request (A's user token, or the
requester token of the email path).

A 404 for another tenant's object must be the 404 of an id that never existed: same
status, same body (so a caller learns nothing about what exists). And every route the
aiohttp app serves must be in the spec.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import ADMIN_TOKEN, Api, make_config, pcm_bytes, receive_json, send_utterance

from backend import create_app
from backend.openapi import build_spec
from backend.web.pages import WEB_PREFIXES
from simulator.fleet.embedded import embedded_backend

ROLES = ("owner", "other_account", "other_device", "operator", "admin", "anonymous")


def row(owner: int, other: int, device: int, operator: int, admin: int, anon: int) -> dict[str, int]:
    return dict(zip(ROLES, (owner, other, device, operator, admin, anon), strict=True))


ANYONE = row(200, 200, 200, 200, 200, 200)
ADMIN_200 = row(403, 403, 403, 403, 200, 401)
ADMIN_201 = row(403, 403, 403, 403, 201, 401)
OPERATOR_200 = row(403, 403, 403, 200, 403, 401)
# Voice history: the caller's own account only; another account's id is "not found".
MY_LIST = row(200, 200, 403, 403, 403, 401)
MY_RECORDING = row(200, 404, 403, 403, 403, 401)
MY_DELETE = row(204, 404, 403, 403, 403, 401)

EXPECT: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/healthz"): ANYONE,
    ("GET", "/metrics"): ANYONE,
    ("GET", "/openapi.json"): ANYONE,
    ("POST", "/v1/operators"): ADMIN_201,
    ("GET", "/v1/admin/faults"): ADMIN_200,
    ("PUT", "/v1/admin/faults"): ADMIN_200,
    ("GET", "/v1/admin/guards"): ADMIN_200,
    ("PUT", "/v1/admin/guards"): ADMIN_200,
    ("GET", "/v1/admin/clock"): ADMIN_200,
    ("GET", "/v1/admin/config"): ADMIN_200,
    ("PUT", "/v1/admin/config"): ADMIN_200,
    ("POST", "/v1/admin/clock"): ADMIN_200,
    ("GET", "/v1/admin/audit"): ADMIN_200,
    ("GET", "/v1/admin/alerts"): ADMIN_200,
    ("GET", "/v1/outbox"): ADMIN_200,
    ("POST", "/v1/accounts"): ADMIN_201,
    ("GET", "/v1/accounts/{account_id}"): ADMIN_200,
    ("GET", "/v1/accounts/{account_id}/bindings"): ADMIN_200,
    ("POST", "/v1/accounts/{account_id}/devices"): ADMIN_201,
    ("DELETE", "/v1/devices/{device_id}"): row(403, 403, 403, 403, 204, 401),
    # Only a live device token opens a stream (101); any other credential is no device: 401.
    ("GET", "/v1/device/stream"): row(401, 401, 101, 401, 401, 401),
    ("GET", "/v1/me/recordings"): MY_LIST,
    ("GET", "/v1/me/recordings/{recording_id}/audio"): MY_RECORDING,
    ("DELETE", "/v1/me/recordings/{recording_id}"): MY_DELETE,
    ("GET", "/v1/ops/requests"): OPERATOR_200,
    ("GET", "/v1/ops/accounts"): OPERATOR_200,
    ("POST", "/v1/ops/requests/{request_id}/assign"): OPERATOR_200,
    ("POST", "/v1/ops/requests/{request_id}/approve"): OPERATOR_200,
    ("POST", "/v1/ops/requests/{request_id}/deny"): OPERATOR_200,
    ("POST", "/v1/ops/requests/{request_id}/revoke"): OPERATOR_200,
    # Account holders file for themselves; anyone may file by naming an email (web form).
    ("POST", "/v1/privacy/requests"): row(201, 201, 403, 403, 403, 201),
    # The requester (and the admin, who runs the service) reads a request; for everyone else
    # it does not exist.
    ("GET", "/v1/privacy/requests/{request_id}"): row(200, 404, 404, 404, 200, 401),
    ("POST", "/v1/privacy/requests/{request_id}/verify"): row(200, 404, 404, 404, 200, 401),
    # An unbound link is a bearer capability: whoever holds it downloads (the guard
    # delivery.bound_links changes that; see test_links.py).
    ("GET", "/v1/privacy/downloads/{token}"): ANYONE,
}

MISSING_IDS = {"account_id": "acc_0000000000000000", "device_id": "dev_0000000000000000",
               "recording_id": "rec_0000000000000000", "request_id": "prq_0000000000000000"}


@dataclass
class Call:
    """One request: where, with what body, and the object id in the path (for the 404 twin)."""

    method: str
    path: str
    body: Any = None
    object_id: tuple[str, str] | None = None
    """(parameter name, value) of the tenant object the path names."""


@dataclass
class World:
    """Account A (the owner) and B (another account), an operator, and helpers for fresh objects."""

    api: Api
    tokens: dict[str, str | None] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    made: int = 0

    def _n(self) -> int:
        self.made += 1
        return self.made

    async def account(self) -> dict[str, Any]:
        return await self.api.create_account(name=f"Helga Holder {self._n()}",
                                             email=f"holder-{uuid.uuid4().hex[:10]}@example.org")

    async def recording(self, device_token: str) -> str:
        ws = await self.api.device_ws(device_token)
        try:
            await send_utterance(ws, pcm_bytes(self._n()))
            ack = await receive_json(ws)
        finally:
            await ws.close()
        assert ack["type"] == "utterance.stored", ack
        return str(ack["recording_id"])

    async def pending_request(self) -> tuple[str, str]:
        """A signed-in access request waiting for an operator: (request_id, account_id)."""
        acc = await self.account()
        _, body = await self.api.call("POST", "/v1/privacy/requests", token=acc["user_token"],
                                      json_body={"kind": "access"}, expect=201)
        assert body["status"] == "pending", body
        return body["request_id"], acc["account_id"]

    async def complete_request(self, user_token: str) -> dict[str, Any]:
        _, body = await self.api.call("POST", "/v1/privacy/requests", token=user_token,
                                      json_body={"kind": "access"}, expect=201)
        rid = body["request_id"]
        await self.api.call("POST", f"/v1/ops/requests/{rid}/approve",
                            token=self.tokens["operator"], expect=200)
        _, st = await self.api.call("GET", f"/v1/privacy/requests/{rid}?wait=30",
                                    token=user_token, expect=200)
        assert st["status"] == "complete", st
        return dict(st)

    async def email_request(self) -> tuple[str, str, str]:
        """An email-path request awaiting its code: (request_id, requester_token, code)."""
        acc = await self.account()
        _, me = await self.api.call("GET", f"/v1/accounts/{acc['account_id']}", expect=200)
        _, body = await self.api.call("POST", "/v1/privacy/requests", token=None,
                                      json_body={"kind": "access", "email": me["email"]},
                                      expect=201)
        _, box = await self.api.call("GET", f"/v1/outbox?to={me['email']}", expect=200)
        code = next(m["code"] for m in box["messages"] if m.get("request_id") == body["request_id"])
        return body["request_id"], body["requester_token"], code


async def build_world(api: Api) -> World:
    w = World(api)
    a, b = await w.account(), await w.account()
    da = await api.register_device(a["account_id"], "G0AUTHZ000A")
    db = await api.register_device(b["account_id"], "G0AUTHZ000B")
    _, op = await api.call("POST", "/v1/operators", json_body={"name": "Otto Operator"},
                           expect=201)
    w.tokens = {"owner": a["user_token"], "other_account": b["user_token"],
                "other_device": db["device_token"], "operator": op["operator_token"],
                "admin": ADMIN_TOKEN, "anonymous": None}
    w.ids = {"account_id": a["account_id"], "device_id": da["device_id"],
             "owner_device_token": da["device_token"], "other_account_id": b["account_id"]}
    w.ids["recording_id"] = await w.recording(da["device_token"])
    await w.recording(db["device_token"])  # B has its own, which A must never see
    done = await w.complete_request(a["user_token"])
    w.ids["request_id"] = done["request_id"]
    w.ids["download_url"] = done["download_url"]
    return w


CallMaker = Callable[[World, str], Awaitable[Call]]


def fixed(method: str, path: str, body: Any = None) -> CallMaker:
    async def make(w: World, role: str) -> Call:
        return Call(method, path, body)
    return make


def on_owner(method: str, template: str, param: str, body: Any = None) -> CallMaker:
    """The owner's object; its 404 twin swaps in an id that never existed."""
    async def make(w: World, role: str) -> Call:
        value = w.ids[param]
        return Call(method, template.replace("{" + param + "}", value), body, (param, value))
    return make


async def _new_device(w: World, role: str) -> Call:
    if role != "admin":
        return Call("DELETE", f"/v1/devices/{w.ids['device_id']}")
    dev = await w.api.register_device(w.ids["account_id"], f"G0AUTHZDEL{w._n():03d}")
    return Call("DELETE", f"/v1/devices/{dev['device_id']}")


async def _delete_recording(w: World, role: str) -> Call:
    rid = await w.recording(w.ids["owner_device_token"]) if role == "owner" else w.ids["recording_id"]
    return Call("DELETE", f"/v1/me/recordings/{rid}", object_id=("recording_id", rid))


def _ops(action: str, body: Any = None) -> CallMaker:
    async def make(w: World, role: str) -> Call:
        if role != "operator":
            return Call("POST", f"/v1/ops/requests/{w.ids['request_id']}/{action}", body)
        if action == "revoke":
            acc = await w.account()
            rid = (await w.complete_request(acc["user_token"]))["request_id"]
            return Call("POST", f"/v1/ops/requests/{rid}/revoke")
        rid, account = await w.pending_request()
        payload = {"account_id": account} if action == "assign" else body
        return Call("POST", f"/v1/ops/requests/{rid}/{action}", payload)
    return make


async def _file_request(w: World, role: str) -> Call:
    if role == "anonymous":
        acc = await w.account()
        _, me = await w.api.call("GET", f"/v1/accounts/{acc['account_id']}", expect=200)
        return Call("POST", "/v1/privacy/requests", {"kind": "access", "email": me["email"]})
    return Call("POST", "/v1/privacy/requests", {"kind": "access"})


async def _verify(w: World, role: str) -> Call:
    rid, requester, code = await w.email_request()
    if role == "owner":
        w.tokens["requester"] = requester  # the owner of an email-path request is its token
    return Call("POST", f"/v1/privacy/requests/{rid}/verify", {"code": code},
                ("request_id", rid))


async def _download(w: World, role: str) -> Call:
    return Call("GET", w.ids["download_url"])


MAKE: dict[tuple[str, str], CallMaker] = {
    ("GET", "/healthz"): fixed("GET", "/healthz"),
    ("GET", "/metrics"): fixed("GET", "/metrics"),
    ("GET", "/openapi.json"): fixed("GET", "/openapi.json"),
    ("POST", "/v1/operators"): fixed("POST", "/v1/operators", {"name": "Nora Neu"}),
    ("GET", "/v1/admin/faults"): fixed("GET", "/v1/admin/faults"),
    ("PUT", "/v1/admin/faults"): fixed("PUT", "/v1/admin/faults", {"switches": []}),
    ("GET", "/v1/admin/guards"): fixed("GET", "/v1/admin/guards"),
    ("PUT", "/v1/admin/guards"): fixed("PUT", "/v1/admin/guards", {"switches": []}),
    ("GET", "/v1/admin/clock"): fixed("GET", "/v1/admin/clock"),
    ("GET", "/v1/admin/config"): fixed("GET", "/v1/admin/config"),
    # The settings the matrix runs with, unchanged: other cells are not disturbed.
    ("PUT", "/v1/admin/config"): fixed("PUT", "/v1/admin/config", {"manual_review": ["access"]}),
    ("POST", "/v1/admin/clock"): fixed("POST", "/v1/admin/clock", {"advance_seconds": 0}),
    ("GET", "/v1/admin/audit"): fixed("GET", "/v1/admin/audit?limit=5"),
    ("GET", "/v1/admin/alerts"): fixed("GET", "/v1/admin/alerts"),
    ("GET", "/v1/outbox"): fixed("GET", "/v1/outbox?limit=5"),
    ("POST", "/v1/accounts"): lambda w, role: _async(Call("POST", "/v1/accounts", {
        "name": "Nina Neu", "email": f"nina-{uuid.uuid4().hex[:8]}@example.org",
        "locale": "de-DE"})),
    ("GET", "/v1/accounts/{account_id}"): on_owner("GET", "/v1/accounts/{account_id}",
                                                   "account_id"),
    ("GET", "/v1/accounts/{account_id}/bindings"): on_owner(
        "GET", "/v1/accounts/{account_id}/bindings", "account_id"),
    ("POST", "/v1/accounts/{account_id}/devices"): lambda w, role: _async(Call(
        "POST", f"/v1/accounts/{w.ids['account_id']}/devices",
        {"serial": f"G0AUTHZNEW{w._n():03d}", "model": "Echo Dot", "room": "Hall"})),
    ("DELETE", "/v1/devices/{device_id}"): _new_device,
    ("GET", "/v1/device/stream"): fixed("GET", "/v1/device/stream"),
    ("GET", "/v1/me/recordings"): fixed("GET", "/v1/me/recordings"),
    ("GET", "/v1/me/recordings/{recording_id}/audio"): on_owner(
        "GET", "/v1/me/recordings/{recording_id}/audio", "recording_id"),
    ("DELETE", "/v1/me/recordings/{recording_id}"): _delete_recording,
    ("GET", "/v1/ops/requests"): fixed("GET", "/v1/ops/requests"),
    ("GET", "/v1/ops/accounts"): fixed("GET", "/v1/ops/accounts?q=Helga"),
    ("POST", "/v1/ops/requests/{request_id}/assign"): _ops("assign"),
    ("POST", "/v1/ops/requests/{request_id}/approve"): _ops("approve"),
    ("POST", "/v1/ops/requests/{request_id}/deny"): _ops("deny", {"reason": "suspected_fraud"}),
    ("POST", "/v1/ops/requests/{request_id}/revoke"): _ops("revoke"),
    ("POST", "/v1/privacy/requests"): _file_request,
    ("GET", "/v1/privacy/requests/{request_id}"): on_owner(
        "GET", "/v1/privacy/requests/{request_id}", "request_id"),
    ("POST", "/v1/privacy/requests/{request_id}/verify"): _verify,
    ("GET", "/v1/privacy/downloads/{token}"): _download,
}


async def _async(call: Call) -> Call:
    return call


async def _send(w: World, call: Call, token: str | None) -> tuple[int, bytes]:
    if call.path == "/v1/device/stream":
        try:
            ws = await w.api.device_ws(token or "")
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, b""
        await ws.close()
        return 101, b""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with w.api.session.request(call.method, w.api.handle.url + call.path, json=call.body,
                                     headers=headers) as resp:
        return resp.status, await resp.read()


async def _spec(api: Api) -> dict[str, Any]:
    _, spec = await api.call("GET", "/openapi.json", token=None, expect=200)
    return dict(spec)


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}


async def test_every_operation_in_the_spec_has_an_expectation(api: Api) -> None:
    spec = await _spec(api)
    ops = _operations(spec)
    assert ops - EXPECT.keys() == set(), "operations in the spec without an authz row"
    assert EXPECT.keys() - ops == set(), "authz rows for operations the spec does not have"
    assert MAKE.keys() == EXPECT.keys()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op["x-roles"], (method, path)


@pytest.mark.slow
async def test_authorization_matrix(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", manual_review=("access",))
    async with embedded_backend(config) as handle, aiohttp.ClientSession() as session:
        api = Api(session, handle)
        w = await build_world(api)
        ops = _operations(await _spec(api))
        wrong: list[str] = []
        leaks: list[str] = []
        cells = 0
        for op in sorted(ops):
            for role in ROLES:
                call = await MAKE[op](w, role)
                token = w.tokens[role]
                if role == "owner" and "requester" in w.tokens:
                    token = w.tokens.pop("requester")
                status, body = await _send(w, call, token)
                cells += 1
                want = EXPECT[op][role]
                if status != want:
                    wrong.append(f"{op[0]} {op[1]} as {role}: {status} (want {want}) "
                                 f"{body[:160]!r}")
                if status == 404 and call.object_id is not None:
                    name, value = call.object_id
                    twin = Call(call.method, call.path.replace(value, MISSING_IDS[name]),
                                call.body)
                    twin_status, twin_body = await _send(w, twin, token)
                    if (twin_status, twin_body.replace(MISSING_IDS[name].encode(), b"ID")) != (
                            status, body.replace(value.encode(), b"ID")):
                        leaks.append(f"{op[0]} {op[1]} as {role}: {body!r} differs from a "
                                     f"missing id's {twin_status} {twin_body!r}")
        assert cells == len(ops) * len(ROLES)
        assert not wrong, "\n".join(wrong)
        assert not leaks, "\n".join(leaks)
        # The other account's own list never holds the owner's recording.
        _, mine = await api.call("GET", "/v1/me/recordings", token=w.tokens["other_account"],
                                 expect=200)
        assert w.ids["recording_id"] not in json.dumps(mine)
        assert len(mine["recordings"]) == 1


def test_every_served_route_is_in_the_spec(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path / "data"))
    # The web pages are HTML for people, not API operations: they are not in the spec.
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and not r.resource.canonical.startswith(WEB_PREFIXES)}
    documented = _operations(build_spec(app))
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
