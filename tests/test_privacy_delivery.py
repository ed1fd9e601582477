"""Download links: expiry, tampering, single use (also under 50 concurrent redemptions),
binding to the requester, revocation, and that tokens stay out of logs and records."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import sqlite_utils
from privacy_support import (
    access_by_email,
    access_signed_in,
    audit_entries,
    download,
    household,
    privacy_env,
    read_package,
    status,
)

from backend.privacy.delivery import DOWNLOAD_PATH


def _tamper(token: str) -> str:
    nonce, _, sig = token.partition(".")
    flipped = "A" if sig[5] != "A" else "B"
    return f"{nonce}.{sig[:5]}{flipped}{sig[6:]}"


async def test_link_expires_after_its_ttl(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, link_ttl_seconds=3600) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        st = await access_signed_in(env, alice)
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": 3599},
                           expect=200)
        code, _, _ = await download(env, st["download_url"])
        assert code == 200
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": 1},
                           expect=200)
        code, body, headers = await download(env, st["download_url"])
        assert code == 410
        assert b"link_expired" in body
        assert headers["Cache-Control"] == "no-store"
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "expired"


async def test_tampered_token_reveals_nothing(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        token = st["download_url"].removeprefix(DOWNLOAD_PATH)
        answers = set()
        for bad in (_tamper(token), token[:-1], token + "A", token.split(".")[0],
                    "x" * 68, "1", "..%2F..%2Foverheard.db"):
            code, body, _ = await download(env, DOWNLOAD_PATH + bad)
            assert code == 404, bad
            answers.add(body)
        # Every bad token gets the very same answer, which names nothing of the package.
        assert len(answers) == 1
        assert b"alice" not in answers.pop().lower()
        assert not await audit_entries(env, "package.download_refused")
        code, _, _ = await download(env, st["download_url"])
        assert code == 200


async def test_single_use_link_works_once(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, link_single_use=True) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        first = await download(env, st["download_url"])
        second = await download(env, st["download_url"])
        assert first[0] == 200 and read_package(first[1])[1]["account_id"] == alice.account_id
        assert second[0] == 410 and b"link_used" in second[1]
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "used"


async def test_fifty_concurrent_redemptions_one_wins(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, link_single_use=True) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        st = await access_signed_in(env, alice)
        results = await asyncio.gather(*(download(env, st["download_url"]) for _ in range(50)))
        codes = sorted(r[0] for r in results)
        assert codes == [200] + [410] * 49
        db = sqlite_utils.Database(tmp_path / "data" / "overheard.db")
        outcomes = [r[0] for r in db.execute("SELECT outcome FROM redemptions ORDER BY at")]
        db.conn.close()
        assert sorted(outcomes) == ["ok"] + ["used"] * 49


async def test_bound_link_needs_the_requester(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, guards={"delivery.bound_links": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        bob = await household(env, "Bob Wagner", "bob@example.org", recordings=1, seed=2)
        _rid, rtok, st = await access_by_email(env, alice)
        assert st["link"]["bound"] and st["link"]["single_use"]
        code, body, _ = await download(env, st["download_url"])
        assert (code, b"requester_only" in body) == (403, True)
        code, _, _ = await download(env, st["download_url"], token=bob.user_token)
        assert code == 403
        code, data, _ = await download(env, st["download_url"], token=rtok)
        assert code == 200
        code, _, _ = await download(env, st["download_url"], token=rtok)
        assert code == 410
        st = await access_signed_in(env, bob)
        code, _, _ = await download(env, st["download_url"], token=alice.user_token)
        assert code == 403
        code, _, _ = await download(env, st["download_url"], token=bob.user_token)
        assert code == 200


async def test_operator_revokes_a_link(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        _, op = await env.api.call("POST", "/v1/operators", json_body={"name": "Ops One"},
                                   expect=201)
        path = f"/v1/ops/requests/{st['request_id']}/revoke"
        _, body = await env.api.call("POST", path, token=op["operator_token"], expect=200)
        assert body["revoked"] == [st["link"]["link_id"]]
        code, body, _ = await download(env, st["download_url"])
        assert code == 410 and b"link_revoked" in body
        again = await env.api.call("POST", path, token=op["operator_token"])
        assert again[0] == 409
        revoked = await audit_entries(env, "ops.link.revoked")
        assert revoked[0]["actor"] == f"operator:{op['operator_id']}"


async def test_tokens_never_reach_logs_or_records(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with privacy_env(tmp_path, link_single_use=True) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        token = st["download_url"].removeprefix(DOWNLOAD_PATH)
        for url in (st["download_url"], st["download_url"], DOWNLOAD_PATH + _tamper(token)):
            await download(env, url, headers={"User-Agent": "pytest"})
        audit = await audit_entries(env)
    nonce, _, sig = token.partition(".")
    assert sig not in caplog.text and token not in caplog.text
    assert sig not in str(audit)
    db = sqlite_utils.Database(tmp_path / "data" / "overheard.db")
    # Only the simulated mailbox holds the link (it is the email); no table the backend keeps.
    for table in db.table_names():
        if table != "outbox":
            assert sig not in str(list(db[table].rows)), table
    rows = list(db.query("SELECT * FROM redemptions"))
    db.conn.close()
    assert [r["outcome"] for r in rows] == ["ok", "used"]
    assert rows[0]["client_ip"] == "127.0.0.1" and rows[0]["user_agent"] == "pytest"
    assert nonce not in str(rows)


async def test_unbound_link_fault_makes_links_guessable(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, faults={"delivery.unbound_link": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        bob = await household(env, "Bob Wagner", "bob@example.org", recordings=1, seed=2)
        a = await access_signed_in(env, alice)
        b = await access_signed_in(env, bob)
        assert (a["download_url"], b["download_url"]) == (DOWNLOAD_PATH + "1", DOWNLOAD_PATH + "2")
        assert a["link"]["expires_at"] is None
        code, data, _ = await download(env, DOWNLOAD_PATH + "2")  # alice guesses the next one
        assert code == 200 and read_package(data)[1]["account_id"] == bob.account_id
    async with privacy_env(tmp_path / "guarded", faults={"delivery.unbound_link": {}},
                           guards={"delivery.bound_links": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        a = await access_signed_in(env, alice)
        assert "." in a["download_url"] and a["link"]["bound"]
        code, _, _ = await download(env, DOWNLOAD_PATH + "1")
        assert code == 404


async def test_misaddressed_email_fault_sends_the_link_to_the_typed_address(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, faults={"delivery.misaddressed_email": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=alice.user_token,
                                     json_body={"kind": "access", "email": "alice@exmaple.org"},
                                     expect=201)
        st = await status(env, body["request_id"], alice.user_token, wait=30)
        _, typo = await env.api.call("GET", "/v1/outbox?to=alice@exmaple.org", expect=200)
        _, right = await env.api.call("GET", "/v1/outbox?to=alice@example.org", expect=200)
        assert [m["url"] for m in typo["messages"]] == [st["download_url"]]
        assert right["messages"] == []
