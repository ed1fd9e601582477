"""Admin routes for accounts and devices: creation, validation, re-registration, deregistration."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from conftest import ADMIN_TOKEN, Api

from backend.keys import STORE


async def audit_actions(api: Api) -> list[dict[str, Any]]:
    _, body = await api.call("GET", "/v1/admin/audit?verify=1", expect=200)
    assert body["chain"]["ok"], body["chain"]
    return list(body["entries"])


async def upgrade_status(api: Api, token: str) -> int:
    """101 when the device stream accepts ``token``, else the refusal status."""
    try:
        ws = await api.device_ws(token)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def test_create_account_returns_ids_and_stores_it(api: Api) -> None:
    status, body = await api.call("POST", "/v1/accounts", json_body={
        "name": "Erika Mustermann", "email": "erika@example.de", "locale": "de_DE",
        "address": "Musterstr. 1, 12345 Berlin"})
    assert status == 201
    assert body["account_id"].startswith("acc_")
    assert body["user_token"].startswith("usr_")
    _, acc = await api.call("GET", f"/v1/accounts/{body['account_id']}", expect=200)
    assert (acc["name"], acc["email"], acc["locale"]) == ("Erika Mustermann", "erika@example.de",
                                                          "de_DE")
    assert acc["address"] == "Musterstr. 1, 12345 Berlin"
    assert acc["devices"] == [] and acc["recordings"] == 0
    entries = await audit_actions(api)
    created = [e for e in entries if e["action"] == "account.created"]
    assert [e["object_id"] for e in created] == [body["account_id"]]
    # The append-only log must not hold personal data that an erasure could not remove.
    assert "erika@example.de" not in str(created) and "Mustermann" not in str(created)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "A", "email": "not-an-email", "locale": "de-DE"}, "email"),
    ({"name": "A", "email": "a@b", "locale": "de-DE"}, "email"),
    ({"name": "A", "email": "a@example.org", "locale": "german"}, "locale"),
    ({"name": "A", "email": "a@example.org", "locale": "de-de"}, "locale"),
    ({"name": "", "email": "a@example.org", "locale": "de-DE"}, "name"),
    ({"name": "x" * 201, "email": "a@example.org", "locale": "de-DE"}, "name"),
    ({"name": "A\nB", "email": "a@example.org", "locale": "de-DE"}, "name"),
    ({"email": "a@example.org", "locale": "de-DE"}, "name"),
    ({"name": "A", "email": "a@example.org", "locale": "de-DE", "admin": True}, "admin"),
])
async def test_invalid_account_is_refused_naming_the_field(api: Api, body: dict[str, Any],
                                                           field: str) -> None:
    status, out = await api.call("POST", "/v1/accounts", json_body=body)
    assert status == 400
    assert out["error"] == "invalid_field" and out["field"] == field, out
    count = await api.handle.app[STORE].read(  # type: ignore[index]
        lambda db: db.execute("SELECT count(*) FROM accounts").fetchone()[0])
    assert count == 0


async def test_malformed_json_body(api: Api) -> None:
    async with api.session.post(api.handle.url + "/v1/accounts", data=b"{nope",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                         "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "malformed_json"


async def test_duplicate_email_conflicts(api: Api) -> None:
    await api.create_account(email="same@example.org")
    status, out = await api.call("POST", "/v1/accounts", json_body={
        "name": "Other", "email": "SAME@example.org", "locale": "de-DE"})
    assert (status, out["error"]) == (409, "email_in_use")


async def test_admin_routes_need_the_admin_token(api: Api) -> None:
    acc = await api.create_account()
    status, out = await api.call("POST", "/v1/accounts", token=None, json_body={})
    assert (status, out["error"]) == (401, "unauthorized")
    status, out = await api.call("GET", f"/v1/accounts/{acc['account_id']}",
                                 token=acc["user_token"])
    assert (status, out["error"]) == (403, "forbidden")
    status, _ = await api.call("POST", f"/v1/accounts/{acc['account_id']}/devices",
                               token="adm_wrong", json_body={})
    assert status == 401


async def test_unknown_account_is_404(api: Api) -> None:
    status, out = await api.call("GET", "/v1/accounts/acc_nope")
    assert (status, out["error"]) == (404, "account_not_found")
    status, out = await api.call("POST", "/v1/accounts/acc_nope/devices",
                                 json_body={"serial": "SN1", "model": "Echo", "room": "Hall"})
    assert (status, out["error"]) == (404, "account_not_found")
    status, _ = await api.call("GET", "/v1/accounts/acc_nope/bindings")
    assert status == 404


async def test_register_device_binds_serial(api: Api) -> None:
    acc = await api.create_account()
    dev = await api.register_device(acc["account_id"], "G090LF1234", room="Wohnzimmer")
    assert dev["device_id"].startswith("dev_") and dev["device_token"].startswith("dvt_")
    _, out = await api.call("GET", f"/v1/accounts/{acc['account_id']}", expect=200)
    assert [(d["serial"], d["room"], d["deregistered_at"]) for d in out["devices"]] == [
        ("G090LF1234", "Wohnzimmer", None)]
    _, hist = await api.call("GET", f"/v1/accounts/{acc['account_id']}/bindings", expect=200)
    assert [(b["serial"], b["device_id"], b["bound_to"]) for b in hist["bindings"]] == [
        ("G090LF1234", dev["device_id"], None)]
    assert await upgrade_status(api, dev["device_token"]) == 101


@pytest.mark.parametrize("body", [
    {"serial": "", "model": "Echo", "room": "Hall"},
    {"serial": "SN 1", "model": "Echo", "room": "Hall"},
    {"serial": "../etc", "model": "Echo", "room": "Hall"},
    {"serial": "SN1", "model": "", "room": "Hall"},
    {"serial": "SN1", "model": "Echo", "room": "x" * 101},
    {"serial": "SN1", "model": "Echo", "room": "Hall", "owner": "acc_x"},
    {"serial": "SN1", "model": "Echo"},
])
async def test_invalid_device_is_refused(api: Api, body: dict[str, Any]) -> None:
    acc = await api.create_account()
    status, out = await api.call("POST", f"/v1/accounts/{acc['account_id']}/devices",
                                 json_body=body)
    assert (status, out["error"]) == (400, "invalid_field")
    _, got = await api.call("GET", f"/v1/accounts/{acc['account_id']}")
    assert got["devices"] == []


async def test_reregistration_moves_the_serial_and_revokes_the_old_token(api: Api) -> None:
    seller = await api.create_account(name="Seller")
    buyer = await api.create_account(name="Buyer")
    old = await api.register_device(seller["account_id"], "SN-RESOLD")
    assert await upgrade_status(api, old["device_token"]) == 101

    new = await api.register_device(buyer["account_id"], "SN-RESOLD", room="Küche")
    assert new["replaced_devices"] == [old["device_id"]]
    assert await upgrade_status(api, old["device_token"]) == 401
    assert await upgrade_status(api, new["device_token"]) == 101

    _, seller_hist = await api.call("GET", f"/v1/accounts/{seller['account_id']}/bindings")
    _, buyer_hist = await api.call("GET", f"/v1/accounts/{buyer['account_id']}/bindings")
    (closed,) = seller_hist["bindings"]
    (opened,) = buyer_hist["bindings"]
    assert closed["device_id"] == old["device_id"] and closed["bound_to"] is not None
    assert opened["device_id"] == new["device_id"] and opened["bound_to"] is None
    assert opened["bound_from"] == closed["bound_to"]
    _, seller_acc = await api.call("GET", f"/v1/accounts/{seller['account_id']}")
    assert seller_acc["devices"][0]["deregistered_at"] is not None

    entries = [e for e in await audit_actions(api) if e["action"] == "device.registered"]
    assert entries[-1]["object_id"] == new["device_id"]
    assert entries[-1]["detail"]["previous_accounts"] == [seller["account_id"]]
    assert entries[-1]["detail"]["replaced_devices"] == [old["device_id"]]


async def test_reregistration_to_the_same_account_replaces_the_device(api: Api) -> None:
    acc = await api.create_account()
    first = await api.register_device(acc["account_id"], "SN-RESET")
    second = await api.register_device(acc["account_id"], "SN-RESET")
    assert second["replaced_devices"] == [first["device_id"]]
    assert await upgrade_status(api, first["device_token"]) == 401
    _, hist = await api.call("GET", f"/v1/accounts/{acc['account_id']}/bindings")
    assert [b["bound_to"] is None for b in hist["bindings"]] == [False, True]


async def test_deregister_stops_the_token(api: Api) -> None:
    acc = await api.create_account()
    dev = await api.register_device(acc["account_id"], "SN-GONE")
    assert await upgrade_status(api, dev["device_token"]) == 101
    status, _ = await api.call("DELETE", f"/v1/devices/{dev['device_id']}")
    assert status == 204
    assert await upgrade_status(api, dev["device_token"]) == 401
    status, out = await api.call("DELETE", f"/v1/devices/{dev['device_id']}")
    assert (status, out["error"]) == (409, "deregistered")
    status, out = await api.call("DELETE", "/v1/devices/dev_nope")
    assert (status, out["error"]) == (404, "device_not_found")
    _, hist = await api.call("GET", f"/v1/accounts/{acc['account_id']}/bindings")
    assert hist["bindings"][0]["bound_to"] is not None
    actions = [e["action"] for e in await audit_actions(api)]
    assert actions.count("device.deregistered") == 1


async def set_switch(api: Api, kind: str, name: str, enabled: bool = True) -> None:
    await api.call("PUT", f"/v1/admin/{kind}s", expect=200,
                   json_body={"switches": [{"name": name, "enabled": enabled}]})


async def test_guard_refuses_silent_transfer_and_raises_an_alert(api: Api) -> None:
    await set_switch(api, "guard", "binding.revoke_on_transfer")
    seller = await api.create_account(name="Seller")
    buyer = await api.create_account(name="Buyer")
    old = await api.register_device(seller["account_id"], "SN-GUARD")

    status, out = await api.call("POST", f"/v1/accounts/{buyer['account_id']}/devices",
                                 json_body={"serial": "SN-GUARD", "model": "Echo", "room": "Hall"})
    assert (status, out["error"]) == (409, "serial_in_use")
    assert await upgrade_status(api, old["device_token"]) == 101  # nothing changed
    _, alerts = await api.call("GET", "/v1/admin/alerts")
    (alert,) = alerts["alerts"]
    assert alert["guard"] == "binding.revoke_on_transfer"
    assert alert["account_id"] == buyer["account_id"]
    assert alert["detail"]["bound_to_accounts"] == [seller["account_id"]]

    moved = await api.register_device(buyer["account_id"], "SN-GUARD", transfer=True)
    assert moved["replaced_devices"] == [old["device_id"]]
    assert await upgrade_status(api, old["device_token"]) == 401
    # The transfer the guard carried out is alerted too, with what it revoked.
    _, alerts = await api.call("GET", "/v1/admin/alerts")
    moved_alert = next(a for a in alerts["alerts"] if "from_accounts" in a["detail"])
    assert moved_alert["detail"]["from_accounts"] == [seller["account_id"]]
    assert moved_alert["detail"]["to_account"] == buyer["account_id"]
    assert moved_alert["detail"]["tokens_revoked"] == 1
    assert moved_alert["detail"]["revoked_devices"] == [old["device_id"]]


async def test_serial_collision_fault_reuses_the_first_binding(api: Api) -> None:
    await set_switch(api, "fault", "ingest.serial_collision")
    first = await api.create_account(name="First")
    second = await api.create_account(name="Second")
    a = await api.register_device(first["account_id"], "SN-TWIN")
    b = await api.register_device(second["account_id"], "SN-TWIN")
    assert b["replaced_devices"] == []
    # Both tokens work, and the second device sits under the first account.
    assert await upgrade_status(api, a["device_token"]) == 101
    assert await upgrade_status(api, b["device_token"]) == 101
    _, acc = await api.call("GET", f"/v1/accounts/{first['account_id']}")
    assert sorted(d["device_id"] for d in acc["devices"]) == sorted([a["device_id"],
                                                                     b["device_id"]])
    _, acc2 = await api.call("GET", f"/v1/accounts/{second['account_id']}")
    assert acc2["devices"] == []


async def test_guard_stops_serial_collision(api: Api) -> None:
    await set_switch(api, "fault", "ingest.serial_collision")
    await set_switch(api, "guard", "binding.revoke_on_transfer")
    first = await api.create_account(name="First")
    second = await api.create_account(name="Second")
    await api.register_device(first["account_id"], "SN-TWIN")
    status, out = await api.call("POST", f"/v1/accounts/{second['account_id']}/devices",
                                 json_body={"serial": "SN-TWIN", "model": "Echo", "room": "Hall"})
    assert (status, out["error"]) == (409, "serial_in_use")


async def test_routes_are_documented(api: Api) -> None:
    _, spec = await api.call("GET", "/openapi.json", token=None, expect=200)
    paths = spec["paths"]
    assert "post" in paths["/v1/accounts"]
    assert "get" in paths["/v1/accounts/{account_id}"]
    assert "post" in paths["/v1/accounts/{account_id}/devices"]
    assert "get" in paths["/v1/accounts/{account_id}/bindings"]
    assert "delete" in paths["/v1/devices/{device_id}"]
    schema = spec["components"]["schemas"]["DeviceIn"]
    assert set(schema["properties"]) == {"serial", "model", "room", "transfer"}
