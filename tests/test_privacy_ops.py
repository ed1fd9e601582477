"""The operator console: queue, account search, assign/approve/deny, the audit trail of each
step, and the operator faults with the guards that stop them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privacy_support import (
    Env,
    audit_entries,
    code_for,
    download,
    email_request,
    household,
    privacy_env,
    read_package,
    status,
)


async def _operator(env: Env, name: str = "Ops One") -> tuple[str, str]:
    _, op = await env.api.call("POST", "/v1/operators", json_body={"name": name}, expect=201)
    return op["operator_id"], op["operator_token"]


async def _file(env: Env, token: str, kind: str = "access") -> str:
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=token,
                                 json_body={"kind": kind}, expect=201)
    assert body["status"] == "pending"
    return str(body["request_id"])


async def test_manual_review_queue_assign_approve(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=3, seed=1)
        op_id, op = await _operator(env)
        rid = await _file(env, alice.user_token)
        _, queue = await env.api.call("GET", "/v1/ops/requests?status=pending", token=op,
                                      expect=200)
        [item] = queue["requests"]
        assert item["request_id"] == rid
        assert item["requester"] == {"account_id": alice.account_id, "name": "Alice Wagner",
                                     "email": "alice@example.org"}
        assert item["subject_account_id"] == alice.account_id
        _, found = await env.api.call("GET", "/v1/ops/accounts?q=wagner", token=op, expect=200)
        assert [a["account_id"] for a in found["accounts"]] == [alice.account_id]
        assert found["accounts"][0]["recordings"] == 3
        await env.api.call("POST", f"/v1/ops/requests/{rid}/assign", token=op,
                           json_body={"account_id": alice.account_id}, expect=200)
        _, body = await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op,
                                     expect=200)
        assert body["status"] == "approved"
        st = await status(env, rid, alice.user_token, wait=30)
        assert st["status"] == "complete"
        again = await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op)
        assert (again[0], again[1]["error"]) == (409, "wrong_status")
        actors = {e["action"]: e["actor"] for e in await audit_entries(env)
                  if e["action"].startswith("ops.")}
        assert actors == {"ops.accounts.searched": f"operator:{op_id}",
                          "ops.request.assigned": f"operator:{op_id}",
                          "ops.request.approved": f"operator:{op_id}"}


async def test_deny_and_roles(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access", "erasure")) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        op_id, op = await _operator(env)
        rid = await _file(env, alice.user_token, "erasure")
        for token in (alice.user_token, None):
            st, _ = await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=token)
            assert st in (401, 403)
        st, _ = await env.api.call("GET", "/v1/ops/accounts?q=alice", token=alice.user_token)
        assert st == 403
        bad = await env.api.call("POST", f"/v1/ops/requests/{rid}/deny", token=op,
                                 json_body={"reason": "because"})
        assert (bad[0], bad[1]["field"]) == (400, "reason")
        await env.api.call("POST", f"/v1/ops/requests/{rid}/deny", token=op,
                           json_body={"reason": "suspected_fraud"}, expect=200)
        st = await status(env, rid, alice.user_token)
        assert (st["status"], st["reason"]) == ("denied", "suspected_fraud")
        [entry] = await audit_entries(env, "ops.request.denied")
        assert entry["actor"] == f"operator:{op_id}"
        missing = await env.api.call("POST", "/v1/ops/requests/prq_nope/approve", token=op)
        assert missing[0] == 404
        unknown = await env.api.call("POST", f"/v1/ops/requests/{rid}/assign", token=op,
                                     json_body={"account_id": "acc_nope"})
        assert unknown[0] == 409  # denied already
        short = await env.api.call("GET", "/v1/ops/accounts?q=a", token=op)
        assert short[0] == 400


async def test_email_request_shows_match_only_after_verification(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        _, op = await _operator(env)
        rid, rtok = await email_request(env, alice.email, name="Alice Wagner")
        _, queue = await env.api.call("GET", "/v1/ops/requests", token=op, expect=200)
        assert queue["requests"][0]["matched_account_id"] is None
        code = await code_for(env, alice.email, rid)
        await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                           json_body={"code": code}, expect=200)
        _, queue = await env.api.call("GET", "/v1/ops/requests", token=op, expect=200)
        assert queue["requests"][0]["matched_account_id"] == alice.account_id
        assert queue["requests"][0]["status"] == "pending"
        await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op, expect=200)
        assert (await status(env, rid, rtok, wait=30))["status"] == "complete"


async def _two_in_flight(env: Env) -> tuple[Any, Any, str, str, str]:
    requester = await household(env, "Martin Requester", "martin@example.org", recordings=2,
                                seed=1)
    stranger = await household(env, "Sven Stranger", "sven@example.org", recordings=5, seed=2)
    _, op = await _operator(env)
    a = await _file(env, requester.user_token)
    b = await _file(env, stranger.user_token)
    return requester, stranger, op, a, b


async def test_operator_swap_fault_leaks_the_strangers_recordings(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           faults={"export.operator_swap": {}}) as env:
        requester, stranger, op, a, _b = await _two_in_flight(env)
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        st = await status(env, a, requester.user_token, wait=30)
        _, data, _ = await download(env, st["download_url"])
        _, manifest = read_package(data)
        wavs = {f["recording_id"] for f in manifest["files"] if f["recording_id"]}
        assert wavs == set(stranger.recordings)  # the 2018 case, in small


async def test_ownership_guard_quarantines_the_swapped_package(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           faults={"export.operator_swap": {}},
                           guards={"export.ownership_check": {}}) as env:
        requester, _stranger, op, a, _b = await _two_in_flight(env)
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        # The package of the wrong account never gets a link: held for review instead.
        st = await status(env, a, requester.user_token, wait=30)
        assert st["status"] == "pending" and "download_url" not in st
        _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
        assert [x["guard"] for x in alerts["alerts"]] == ["export.ownership_check"]
        assert list((tmp_path / "data" / "packages").iterdir()) == []


async def test_voice_mixup_puts_the_strangers_voice_history_into_the_requesters_own_package(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           faults={"export.operator_voice_mixup": {}}) as env:
        requester, stranger, op, a, b = await _two_in_flight(env)
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        st = await status(env, a, requester.user_token, wait=30)
        zf, manifest = read_package((await download(env, st["download_url"]))[1])
        wavs = {f["recording_id"] for f in manifest["files"] if f["recording_id"]}
        assert wavs == set(stranger.recordings)  # his voice history, none of the requester's
        # ... in the requester's own package: profile, devices and subject are his
        assert manifest["subject"]["account_id"] == requester.account_id
        assert manifest["subject"]["email"] == "martin@example.org"
        owners = {f["path"]: f["account_id"] for f in manifest["files"]}
        assert owners["account/profile.json"] == requester.account_id
        assert {owners[f["path"]] for f in manifest["files"] if f["recording_id"]} == {
            stranger.account_id}
        # the stranger is named nowhere in it
        text = b"".join(zf.read(n) for n in zf.namelist() if not n.endswith(".wav"))
        assert b"Sven" not in text and b"sven@example.org" not in text
        # the audit log names the operator's act, once
        acts = await audit_entries(env, "ops.package.assembled")
        assert [(e["object_id"], e["detail"]["voice_history_of"]) for e in acts] == [(a, b)]
        assert acts[0]["actor"].startswith("operator:")


async def test_voice_mixup_into_and_from_pick_the_direction(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",), faults={
            "export.operator_voice_mixup": {"into": "acc_none"}}) as env:
        requester, _stranger, op, a, _b = await _two_in_flight(env)
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        st = await status(env, a, requester.user_token, wait=30)
        _, manifest = read_package((await download(env, st["download_url"]))[1])
        wavs = {f["recording_id"] for f in manifest["files"] if f["recording_id"]}
        assert wavs == set(requester.recordings)  # not the package named by ``into``


async def test_ownership_guard_quarantines_the_mixed_up_package_and_the_retry_is_clean(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           faults={"export.operator_voice_mixup": {}},
                           guards={"export.ownership_check": {}}) as env:
        requester, _stranger, op, a, _b = await _two_in_flight(env)
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        st = await status(env, a, requester.user_token, wait=30)
        assert st["status"] == "pending" and "download_url" not in st
        _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
        assert [x["guard"] for x in alerts["alerts"]] == ["export.ownership_check"]
        # back in review, approved again: the mistake is not repeated
        await env.api.call("POST", f"/v1/ops/requests/{a}/approve", token=op, expect=200)
        st = await status(env, a, requester.user_token, wait=30)
        _, manifest = read_package((await download(env, st["download_url"]))[1])
        wavs = {f["recording_id"] for f in manifest["files"] if f["recording_id"]}
        assert wavs == set(requester.recordings)


async def test_four_eyes_holds_a_foreign_assignment(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           guards={"ops.four_eyes": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        other = await household(env, "Alina Wagner", "alina@example.org", recordings=1, seed=2)
        _, op1 = await _operator(env, "Ops One")
        _, op2 = await _operator(env, "Ops Two")
        rid = await _file(env, alice.user_token)
        await env.api.call("POST", f"/v1/ops/requests/{rid}/assign", token=op1,
                           json_body={"account_id": other.account_id}, expect=200)
        st, body = await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op1)
        assert (st, body["needs_second_operator"]) == (202, True)
        assert (await status(env, rid, alice.user_token))["status"] == "pending"
        # The second operator looks, and puts it right.
        await env.api.call("POST", f"/v1/ops/requests/{rid}/assign", token=op2,
                           json_body={"account_id": alice.account_id}, expect=200)
        await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op2, expect=200)
        assert (await status(env, rid, alice.user_token, wait=30))["status"] == "complete"
        _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
        assert [x["guard"] for x in alerts["alerts"]] == ["ops.four_eyes"]


async def test_wrong_account_fault_picks_a_look_alike_and_four_eyes_holds_it(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           faults={"export.operator_wrong_account": {}},
                           guards={"ops.four_eyes": {}}) as env:
        await household(env, "Alice Wagner", "alice-w@example.org", recordings=1, seed=2)
        anna = await household(env, "Anna Wagner", "anna@example.org", recordings=1, seed=1)
        _, op = await _operator(env)
        rid, rtok = await email_request(env, anna.email, name="Anna Wagner")
        code = await code_for(env, anna.email, rid)
        await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                           json_body={"code": code}, expect=200)
        st, body = await env.api.call("POST", f"/v1/ops/requests/{rid}/approve", token=op)
        assert (st, body.get("needs_second_operator")) == (202, True)
        _, queue = await env.api.call("GET", "/v1/ops/requests", token=op, expect=200)
        assert queue["requests"][0]["subject_account_id"] != anna.account_id
