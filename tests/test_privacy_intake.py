"""Intake: filing, identity verification by emailed code, duplicates, who may read a request."""

from __future__ import annotations

from pathlib import Path

from privacy_support import (
    audit_entries,
    code_for,
    email_request,
    household,
    outbox,
    privacy_env,
    status,
)


async def test_unknown_email_looks_the_same_and_ends_no_match(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        await household(env, "Alice Wagner", "alice@example.org")
        known = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                   json_body={"kind": "access", "email": "alice@example.org"})
        unknown = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                     json_body={"kind": "access", "email": "nobody@example.org"})
        # Same status code, same fields, same status: no account enumeration.
        assert known[0] == unknown[0] == 201
        assert sorted(known[1]) == sorted(unknown[1])
        assert known[1]["status"] == unknown[1]["status"] == "identity_unverified"
        assert len(await outbox(env, "nobody@example.org")) == 1
        rid, rtok = unknown[1]["request_id"], unknown[1]["requester_token"]
        code = await code_for(env, "nobody@example.org", rid)
        _, body = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                                     json_body={"code": code}, expect=200)
        assert (body["status"], body["reason"]) == ("denied", "no_match")
        st = await status(env, rid, rtok)
        assert (st["status"], st["reason"]) == ("denied", "no_match")


async def test_three_wrong_codes_deny(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        rid, rtok = await email_request(env, alice.email)
        code = await code_for(env, alice.email, rid)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        path = f"/v1/privacy/requests/{rid}/verify"
        status1, b1 = await env.api.call("POST", path, token=rtok, json_body={"code": wrong})
        status2, b2 = await env.api.call("POST", path, token=rtok, json_body={"code": wrong})
        assert (status1, b1["error"], b1["tries_left"]) == (403, "wrong_code", 2)
        assert (status2, b2["tries_left"]) == (403, 1)
        status3, b3 = await env.api.call("POST", path, token=rtok, json_body={"code": wrong})
        assert (status3, b3["error"]) == (403, "verification_failed")
        # The right code no longer helps: the request is denied for good.
        status4, b4 = await env.api.call("POST", path, token=rtok, json_body={"code": code})
        assert (status4, b4["error"]) == (409, "not_awaiting_code")
        st = await status(env, rid, rtok)
        assert (st["status"], st["reason"]) == ("denied", "insuf_verification")
        assert st.get("download_url") is None


async def test_code_expires_after_ten_minutes(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        rid, rtok = await email_request(env, alice.email)
        code = await code_for(env, alice.email, rid)
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": 601},
                           expect=200)
        st, body = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                                      json_body={"code": code})
        assert (st, body["error"]) == (410, "code_expired")
        assert (await status(env, rid, rtok))["reason"] == "insuf_verification"


async def test_malformed_code_does_not_use_a_try(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        rid, rtok = await email_request(env, alice.email)
        for bad in ("12345", "abcdef", "1234567"):
            st, body = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify",
                                          token=rtok, json_body={"code": bad})
            assert (st, body["error"], body["field"]) == (400, "invalid_field", "code")
        code = await code_for(env, alice.email, rid)
        _, body = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                                     json_body={"code": code}, expect=200)
        assert body["status"] == "approved"


async def test_only_the_requester_reads_a_request(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        bob = await household(env, "Bob Wagner", "bob@example.org")
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=alice.user_token,
                                     json_body={"kind": "access"}, expect=201)
        rid = body["request_id"]
        st, body = await env.api.call("GET", f"/v1/privacy/requests/{rid}", token=bob.user_token)
        assert (st, body["error"]) == (404, "not_found")
        missing = await env.api.call("GET", "/v1/privacy/requests/prq_nope", token=bob.user_token)
        assert missing == (st, body)  # "not yours" and "no such" look the same
        e_rid, e_tok = await email_request(env, bob.email)
        st, _ = await env.api.call("GET", f"/v1/privacy/requests/{rid}", token=e_tok)
        assert st == 404
        st, _ = await env.api.call("GET", f"/v1/privacy/requests/{e_rid}", token=alice.user_token)
        assert st == 404
        st, _ = await env.api.call("GET", f"/v1/privacy/requests/{rid}", token=None)
        assert st == 401
        assert (await status(env, rid, alice.user_token))["request_id"] == rid
        # Nor can someone else answer the code.
        code = await code_for(env, bob.email, e_rid)
        st, _ = await env.api.call("POST", f"/v1/privacy/requests/{e_rid}/verify",
                                   token=alice.user_token, json_body={"code": code})
        assert st == 404


async def test_duplicate_requests(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        _, first = await env.api.call("POST", "/v1/privacy/requests", token=alice.user_token,
                                      json_body={"kind": "access"}, expect=201)
        assert first["status"] == "pending"
        st, dup = await env.api.call("POST", "/v1/privacy/requests", token=alice.user_token,
                                     json_body={"kind": "access"})
        assert (st, dup["error"], dup["request_id"]) == (409, "duplicate_request",
                                                          first["request_id"])
        # Another kind is not a duplicate.
        await env.api.call("POST", "/v1/privacy/requests", token=alice.user_token,
                           json_body={"kind": "erasure"}, expect=201)
        # By email: only revealed once the code proves the mailbox; the new request is canceled.
        rid, rtok = await email_request(env, alice.email)
        code = await code_for(env, alice.email, rid)
        st, body = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                                      json_body={"code": code})
        assert (st, body["error"], body["request_id"]) == (409, "duplicate_request",
                                                            first["request_id"])
        assert (await status(env, rid, rtok))["status"] == "canceled"


async def test_bad_input_is_refused(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        await household(env, "Alice Wagner", "alice@example.org")
        cases = [
            (None, {"kind": "access"}, 401, "identity_required"),  # no token, no email
            (None, {"kind": "copy", "email": "a@example.org"}, 400, "invalid_field"),
            (None, {"kind": "access", "email": "not-an-email"}, 400, "invalid_field"),
            (None, {"kind": "access", "email": "a@example.org", "extra": 1}, 400, "invalid_field"),
            ("usr_unknown", {"kind": "access"}, 401, "unauthorized"),
            (env.handle.admin_token, {"kind": "access"}, 403, "forbidden"),
        ]
        for token, body, code, error in cases:
            st, out = await env.api.call("POST", "/v1/privacy/requests", token=token,
                                         json_body=body)
            assert (st, out["error"]) == (code, error), body
        assert not await audit_entries(env, "request.created")


async def test_weak_verification_fault_skips_the_code(tmp_path: Path) -> None:
    faults = {"identity.weak_verification": {}}
    async with privacy_env(tmp_path, faults=faults) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                     json_body={"kind": "access", "email": alice.email},
                                     expect=201)
        st = await status(env, body["request_id"], body["requester_token"], wait=30)
        assert st["status"] == "complete"  # nobody proved they hold alice's mailbox
    async with privacy_env(tmp_path / "guarded", faults=faults,
                           guards={"identity.verified_channel": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                     json_body={"kind": "access", "email": alice.email},
                                     expect=201)
        assert body["status"] == "identity_unverified"
