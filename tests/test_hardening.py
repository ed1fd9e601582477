"""Regression tests for what an outside probe of a served backend found.

One test per finding, each against a real server: code brute force and rate limits, file
modes under umask 022, the admin token's handling, inputs that used to end in a 500 or a
killed stream (non-UTF-8 credentials, huge JSON integers, unknown charsets, unicode
digits in link tokens, hostile cursors, a clock past year 9999), links used up without
delivering, tokens and forged lines in the log, an erasure that called itself verified
with its checkpoint undone, and the email rules shared by accounts and intake.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import stat
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import sqlite_utils
from conftest import ADMIN_TOKEN, Api, pcm_bytes, send_utterance
from privacy_support import (
    Env,
    access_signed_in,
    audit_entries,
    download,
    household,
    privacy_env,
    status,
)

from backend.privacy.delivery import DOWNLOAD_PATH
from backend.voice import encode_cursor
from contract.audio import RATE
from contract.stream import FORMAT
from simulator.fleet.embedded import start_server_process, stop_process


async def raw_http(env: Env, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as raw bytes (headers no client library would send); status and body."""
    host, port = env.handle.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(head.split(b" ", 2)[1]), body


def _get(path: str, headers: bytes = b"") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + headers
            + b"\r\n")


# ---- 3. a non-UTF-8 byte in Authorization ----------------------------------------------

async def test_non_utf8_authorization_is_401_everywhere(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        bad = b"Authorization: Bearer usr_\xff\xfe\r\n"
        for path in ("/v1/me/recordings", "/v1/admin/faults", "/v1/ops/requests",
                     f"/v1/privacy/requests/{st['request_id']}", st["download_url"]):
            code, body = await raw_http(env, _get(path, bad))
            assert (code, json.loads(body)["error"]) == (401, "unauthorized"), path
        upgrade = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
        code, body = await raw_http(env, b"GET /v1/device/stream HTTP/1.1\r\nHost: x\r\n"
                                    + upgrade + bad + b"\r\n")
        assert (code, json.loads(body)["error"]) == (401, "unauthorized")
        # Still serving, and the rightful token still works.
        code, _, _ = await download(env, st["download_url"])
        assert code == 200


# ---- 4. a huge JSON integer, an unknown charset ------------------------------------------

async def test_huge_integers_and_unknown_charsets_are_4xx(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        big = b'{"kind": "access", "email": "a@example.org", "x": ' + b"9" * 5000 + b"}"
        for token in (None, ADMIN_TOKEN):
            auth = f"Bearer {token}".encode() if token else b""
            for path, body in (("/v1/privacy/requests", big),
                               ("/v1/accounts", b'{"name": ' + b"1" * 4400 + b"}")):
                headers = (b"Content-Type: application/json\r\n"
                           + (b"Authorization: " + auth + b"\r\n" if auth else b"")
                           + f"Content-Length: {len(body)}\r\n".encode())
                req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                       + headers + b"\r\n" + body)
                code, answer = await raw_http(env, req)
                if (path == "/v1/accounts") == (token is None):
                    assert code in (401, 403)  # credentials are checked before the body
                    continue
                assert (code, json.loads(answer)["error"]) == (400, "malformed_json"), path
        ok = b'{"kind": "access", "email": "a@example.org"}'
        req = (b"POST /v1/privacy/requests HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Type: application/json; charset=nope\r\n"
               + f"Content-Length: {len(ok)}\r\n\r\n".encode() + ok)
        code, answer = await raw_http(env, req)
        assert (code, json.loads(answer)["error"]) == (415, "unsupported_charset")
        rows = sqlite_utils.Database(tmp_path / "data" / "overheard.db")
        try:
            assert rows.execute("SELECT COUNT(*) FROM privacy_requests").fetchone()[0] == 0
        finally:
            rows.conn.close()


# ---- 5. the same integer in a device frame -------------------------------------------------

async def test_huge_integer_in_a_device_frame_gets_an_error_frame(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", seed=1)
        dev = await env.api.register_device(alice.account_id, "G0HUGEINT01", transfer=True)
        ws = await env.api.device_ws(dev["device_token"])
        uid = "123e4567-e89b-12d3-a456-426614174000"
        await ws.send_json({"type": "utterance.start", "utterance_id": uid,
                            "recorded_at": "2024-05-01T08:30:00Z",
                            "audio": FORMAT.model_dump()})
        await ws.send_bytes(pcm_bytes(3, 800))
        await ws.send_str('{"type": "utterance.end", "n": ' + "7" * 5000 + "}")
        msg = json.loads((await ws.receive(timeout=10)).data)
        assert (msg["type"], msg["code"], msg["utterance_id"]) == ("error", "malformed_json", uid)
        # The stream stays open and takes the next utterance.
        await send_utterance(ws, pcm_bytes(4, 800))
        msg = json.loads((await ws.receive(timeout=10)).data)
        assert msg["type"] == "utterance.stored", msg
        await ws.close()


# ---- 7. unicode digits in a download token --------------------------------------------------

async def test_only_ascii_digits_are_sequence_numbers(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, faults={"delivery.unbound_link": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        assert st["download_url"] == DOWNLOAD_PATH + "1"
        for token in ("%C2%B9", "%E2%91%A0", "%D9%A1", "%EF%BC%91"):  # ¹ ① Arabic-Indic 1, fullwidth 1
            code, body, _ = await download(env, DOWNLOAD_PATH + token)
            assert (code, json.loads(body)["error"]) == (404, "not_found"), token
        code, _, _ = await download(env, DOWNLOAD_PATH + "1")
        assert code == 200


# ---- 8. hostile cursors --------------------------------------------------------------------

async def test_hostile_cursors_are_400(tmp_path: Path) -> None:
    import base64

    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=3, seed=1)
        nested = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500).decode().rstrip("=")
        surrogate = base64.urlsafe_b64encode(b'["\\ud800", "x"]').decode().rstrip("=")
        for cursor in (nested, surrogate, "", "2024-05-01T08:00:00.000Z~rec\u0661",
                       "2024-05-01T08:00:00.000Z~rec_1\n"):
            code, body = await env.api.call("GET", "/v1/me/recordings?limit=1&cursor="
                                            + _quote(cursor), token=alice.user_token)
            assert (code, body["error"]) == (400, "invalid_cursor"), cursor[:40]
        # Pages still chain, and any well-formed position works, issued or not.
        _, first = await env.api.call("GET", "/v1/me/recordings?limit=2", token=alice.user_token,
                                      expect=200)
        _, rest = await env.api.call("GET", "/v1/me/recordings?limit=2&cursor="
                                     + _quote(first["next_cursor"]), token=alice.user_token,
                                     expect=200)
        assert len(first["recordings"]) + len(rest["recordings"]) == 3
        _, none = await env.api.call("GET", "/v1/me/recordings?cursor=" + _quote(
            encode_cursor("2999-01-01T00:00:00Z", "rec_x")), token=alice.user_token, expect=200)
        assert none == {"recordings": [], "next_cursor": None}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# ---- 9. the clock past its range (year 9999 broke everything) ------------------------------------------------------------

async def test_clock_cannot_pass_its_range(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        year = 10 * 365 * 24 * 3600
        refused = None
        for _ in range(1000):
            code, body = await env.api.call("POST", "/v1/admin/clock",
                                            json_body={"advance_seconds": year})
            if code != 200:
                refused = (code, body["error"])
                break
        assert refused == (400, "clock_out_of_range")
        _, now = await env.api.call("GET", "/v1/admin/clock", expect=200)
        assert "2090" <= now["now"] < "2100"
        # Everything that computes a deadline still works.
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        st = await access_signed_in(env, alice)
        assert st["status"] == "complete"
        assert (await download(env, st["download_url"]))[0] == 200
        _, health = await env.api.call("GET", "/healthz", expect=200)
        assert health["status"] == "ok"


# ---- 15. Range edge cases --------------------------------------------------------------------

async def test_range_edge_cases_follow_rfc_9110(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        st = await access_signed_in(env, alice)
        code, whole, _ = await download(env, st["download_url"])
        assert code == 200
        for value in ("bytes=0-9,20-29", "bytes=abc", "items=0-5", "bytes=9-3"):
            code, data, _ = await download(env, st["download_url"], headers={"Range": value})
            assert (code, data == whole) == (200, True), value
        code, body, headers = await download(env, st["download_url"], headers={"Range": "bytes=-0"})
        assert (code, json.loads(body)["error"]) == (416, "range_not_satisfiable")
        code, data, headers = await download(env, st["download_url"], headers={"Range": "bytes=-10"})
        assert (code, data) == (206, whole[-10:])
        assert headers["Content-Range"] == f"bytes {len(whole) - 10}-{len(whole) - 1}/{len(whole)}"


# ---- 6. single-use links burn only when the package went out --------------------------------

async def test_refused_and_partial_attempts_do_not_burn_a_single_use_link(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, link_single_use=True) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=3, seed=1)
        st = await access_signed_in(env, alice)
        url = st["download_url"]
        size = None
        for headers in ({"Range": "bytes=999999999-"},  # 416 from the file server
                        {"Range": "bytes=-0"},           # 416 before any lookup
                        {"If-None-Match": "*"},          # 304
                        {"If-Match": '"nope"'},          # 412
                        {"Range": "bytes=0-99"}):        # a partial 206
            code, data, resp_headers = await download(env, url, headers=headers)
            assert code in (206, 304, 412, 416), (headers, code)
            if code == 206:
                size = int(resp_headers["Content-Range"].rsplit("/", 1)[1])
                head = data
            link = (await status(env, st["request_id"], alice.user_token))["link"]
            assert link["state"] == "active", headers
        assert size is not None
        # The rest in two more pieces: together they cover the file, and count once.
        _, middle, _ = await download(env, url, headers={"Range": f"bytes=100-{size // 2}"})
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "active"
        code, tail, _ = await download(env, url, headers={"Range": f"bytes={size // 2 + 1}-"})
        assert code == 206
        whole = head + middle + tail
        assert _intact(whole)
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "used"
        code, body, _ = await download(env, url)
        assert (code, json.loads(body)["error"]) == (410, "link_used")
        downloaded = await audit_entries(env, "package.downloaded")
        assert len(downloaded) == 1


async def test_a_transfer_broken_off_does_not_burn_the_link(tmp_path: Path) -> None:
    # A package of some megabytes, so the transfer cannot sit whole in the socket buffers.
    async with privacy_env(tmp_path, link_single_use=True) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=60,
                                seed=1, samples=10 * RATE)
        st = await access_signed_in(env, alice)
        host, port = env.handle.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(_get(st["download_url"]))
        await writer.drain()
        await reader.readexactly(4096)  # the transfer has started
        writer.transport.abort()         # and the client goes away
        db_path = tmp_path / "data" / "overheard.db"
        for _ in range(2000):            # until the server has recorded the attempt's end
            outcomes = _outcomes(db_path)
            if outcomes:
                break
            await asyncio.sleep(0.01)
        assert outcomes == ["incomplete"]
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "active"
        code, data, _ = await download(env, st["download_url"])
        assert code == 200 and _intact(data)
        assert (await status(env, st["request_id"], alice.user_token))["link"]["state"] == "used"


def _intact(data: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.testzip() is None and "manifest.json" in zf.namelist()


def _outcomes(db_path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT outcome FROM redemptions ORDER BY rowid")]
    finally:
        conn.close()


# ---- 1. the emailed code cannot be brute-forced -----------------------------------------

async def _file(env: Env, email: str) -> tuple[int, dict[str, Any], Any]:
    async with env.api.session.post(env.handle.url + "/v1/privacy/requests",
                                    json={"kind": "access", "email": email}) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_code_requests_per_address_are_limited_with_an_alert(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        answers = [await _file(env, email) for email in
                   ["alice@example.org", "ALICE@example.org", "alice@EXAMPLE.org",
                    "Alice@Example.Org", "alice@example.org", "alice@example.org",
                    "alice@example.org"]]
        assert [a[0] for a in answers] == [201] * 5 + [429, 429]
        code, body, headers = answers[5]
        assert body["error"] == "too_many_requests"
        wait = int(headers["Retry-After"])
        assert 0 < wait <= 3600 and body["retry_after"] == wait
        alerts = [a for a in (await env.api.call("GET", "/v1/admin/alerts", expect=200))[1]["alerts"]
                  if a["guard"] == "intake.rate_limit"]
        assert len(alerts) == 1 and alerts[0]["account_id"] == alice.account_id
        assert "alice" not in json.dumps(alerts).lower()  # the address is not in the alert
        # Another address is not affected; the limited one is admitted again once its window moved on.
        assert (await _file(env, "bob@example.org"))[0] == 201
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": wait},
                           expect=200)
        assert (await _file(env, "alice@example.org"))[0] == 201
        db = sqlite_utils.Database(tmp_path / "data" / "overheard.db")
        try:
            assert db.execute("SELECT COUNT(*) FROM privacy_requests").fetchone()[0] == 7
        finally:
            db.conn.close()


async def test_code_requests_per_client_are_limited(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, code_requests_per_client=3) as env:
        codes = [(await _file(env, f"person{i}@example.org"))[0] for i in range(5)]
        assert codes == [201, 201, 201, 429, 429]


async def test_wrong_codes_are_capped_per_address_across_requests(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        answers: list[int] = []
        for _ in range(4):  # 4 requests x 3 tries would be 12 guesses; the address allows 10
            _, filed, _ = await _file(env, "alice@example.org")
            for _ in range(3):
                code, _ = await env.api.call(
                    "POST", f"/v1/privacy/requests/{filed['request_id']}/verify",
                    token=filed["requester_token"], json_body={"code": "000000"})
                answers.append(code)
        assert answers.count(429) == 2 and answers[-2:] == [429, 429]
        # Even the right code waits: a guess is a guess.
        _, filed, _ = await _file(env, "alice@example.org")
        _, box = await env.api.call("GET", "/v1/outbox?to=alice@example.org", expect=200)
        right = box["messages"][-1]["code"]
        code, body = await env.api.call("POST", f"/v1/privacy/requests/{filed['request_id']}/verify",
                                        token=filed["requester_token"], json_body={"code": right})
        assert (code, body["error"]) == (429, "too_many_requests")


# ---- 2. personal data readable by every local user --------------------------------------

async def test_a_served_data_dir_is_owner_only_under_umask_022(tmp_path: Path) -> None:
    from backend.files import loose_files

    data = tmp_path / "data"
    # An existing data dir, as an older version (or a copy under another umask) left it.
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "packages").mkdir()
    os.chmod(data / "packages", 0o755)
    old = data / "link-secret"
    old.write_text("ab" * 32 + "\n")
    os.chmod(old, 0o644)
    previous = os.umask(0o022)
    try:
        server = await start_server_process(data, admin_token=ADMIN_TOKEN)
    finally:
        os.umask(previous)
    try:
        async with aiohttp.ClientSession() as session:
            env = Env(Api(session, server.handle), server.handle)
            alice = await env.api.create_account(name="Alice Wagner", email="alice@example.org")
            dev = await env.api.register_device(alice["account_id"], "G0MODES0001")
            ws = await env.api.device_ws(dev["device_token"])
            await send_utterance(ws, pcm_bytes(5, 1600))
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "utterance.stored"
            await ws.close()
            _, filed = await env.api.call("POST", "/v1/privacy/requests", token=alice["user_token"],
                                          json_body={"kind": "access"}, expect=201)
            st = await status(env, filed["request_id"], alice["user_token"], wait=30)
            assert (await download(env, st["download_url"]))[0] == 200
            names = {p.name for p in data.rglob("*")}
            assert {"overheard.db", "overheard.db-wal", "overheard.db-shm", "link-secret"} <= names
            assert any(n.endswith(".zip") for n in names)
            assert loose_files(data) == []
    finally:
        await stop_process(server.proc)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


async def _backend_start(tmp_path: Path, *args: str,
                         env: dict[str, str] | None = None) -> tuple[int | None, str, str]:
    """Start ``python -m backend``; (exit code or None if it came up, first stdout line, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend", "--data", str(tmp_path / "data"), "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OVERHEARD_ADMIN_TOKEN": "", **(env or {})})
    assert proc.stdout is not None and proc.stderr is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    code = None
    if line.startswith("listening on "):
        await stop_process(proc)
    else:
        code = await proc.wait()
    return code, line, (await proc.stderr.read()).decode()


async def test_admin_token_rules(tmp_path: Path) -> None:
    code, _, err = await _backend_start(tmp_path / "a", "--admin-token", "short-token")
    assert code == 2 and "at least 16" in err and err.count("\n") <= 3
    code, _, err = await _backend_start(tmp_path / "b", env={"OVERHEARD_ADMIN_TOKEN": "x" * 15})
    assert code == 2 and "at least 16" in err
    (tmp_path / "c" / "data").mkdir(parents=True)
    (tmp_path / "c" / "data" / "admin-token").write_text("tiny\n")
    code, _, err = await _backend_start(tmp_path / "c")
    assert code == 2 and "at least 16" in err
    # A good token on the command line works, with a warning about the process list.
    code, line, err = await _backend_start(tmp_path / "d", "--admin-token", "adm_" + "x" * 20)
    assert code is None and "process list" in err and "OVERHEARD_ADMIN_TOKEN" in err
    # By the environment or the data dir: no warning.
    code, line, err = await _backend_start(tmp_path / "e", env={"OVERHEARD_ADMIN_TOKEN": "adm_" + "y" * 20})
    assert code is None and "process list" not in err
    code, line, err = await _backend_start(tmp_path / "f")
    token = (tmp_path / "f" / "data" / "admin-token").read_text().strip()
    assert code is None and len(token) >= 16 and "process list" not in err


async def test_the_code_is_kept_only_as_a_keyed_hash(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        await household(env, "Alice Wagner", "alice@example.org", recordings=1, seed=1)
        _, filed, _ = await _file(env, "alice@example.org")
        _, box = await env.api.call("GET", "/v1/outbox?to=alice@example.org", expect=200)
        code = box["messages"][-1]["code"]
        db = sqlite_utils.Database(tmp_path / "data" / "overheard.db")
        try:
            row = next(db.query("SELECT * FROM privacy_requests WHERE request_id = ?",
                                [filed["request_id"]]))
            audit = [r[0] for r in db.execute("SELECT detail FROM audit_log")]
        finally:
            db.conn.close()
        assert all(code not in str(v) for v in row.values())
        assert row["code_hmac"] and len(row["code_hmac"]) == 64
        assert all(code not in d for d in audit)


# ---- 10. tokens in the log; 11. forged lines in the log ------------------------------------------

async def _logged_server(data: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend", "--data", str(data), "--port", "0", "--log-level", "INFO",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OVERHEARD_ADMIN_TOKEN": ADMIN_TOKEN})
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    assert line.startswith("listening on "), line
    return proc, line.removeprefix("listening on ")


async def _probe_log(tmp_path: Path, paths: Callable[[str, str], list[str]],
                     long_line: bool = False) -> tuple[str, str, str]:
    """A served backend (INFO log) with one complete request; ``paths(link token, user
    token)`` are requested raw, then (``long_line``) a request line too long to parse with
    the link token in it. Returns (the server's whole log, link token, user token)."""
    proc, url = await _logged_server(tmp_path / "data")
    try:
        async with aiohttp.ClientSession() as session:
            from simulator.fleet.embedded import BackendHandle

            handle = BackendHandle(url, ADMIN_TOKEN)
            env = Env(Api(session, handle), handle)
            alice = await env.api.create_account(name="Alice Wagner", email="alice@example.org")
            _, filed = await env.api.call("POST", "/v1/privacy/requests", token=alice["user_token"],
                                          json_body={"kind": "access"}, expect=201)
            st = await status(env, filed["request_id"], alice["user_token"], wait=30)
            token = st["download_url"].removeprefix(DOWNLOAD_PATH)
            user_token = alice["user_token"]
            for path in paths(token, user_token):
                req = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       f"Authorization: Bearer {user_token}x\r\n\r\n").encode()
                code, _ = await raw_http(env, req)
                assert code in (401, 404, 405), path
            if long_line:  # aiohttp's own error line quotes the request line
                host, port = url.removeprefix("http://").rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"GET {DOWNLOAD_PATH}{token}?pad={'a' * 9000} HTTP/1.1\r\n"
                             "Host: x\r\n\r\n".encode())
                await writer.drain()
                try:
                    assert (await reader.read()).split(b" ", 2)[1] == b"400"
                finally:
                    writer.close()
                    await writer.wait_closed()
            # Still serving, and the link is intact.
            assert (await download(env, st["download_url"]))[0] == 200
    finally:
        await stop_process(proc)
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode(), token, user_token


async def test_tokens_never_reach_the_log(tmp_path: Path) -> None:
    log, token, user_token = await _probe_log(tmp_path, lambda token, user: [
        "/" + DOWNLOAD_PATH + token, "/V1/privacy/downloads/" + token,
        "/v1/privacy//downloads/" + token, DOWNLOAD_PATH + token + "/x", "/v1/" + user],
        long_line=True)
    assert "<redacted>" in log and "Error handling request" in log
    nonce, _, sig = token.partition(".")
    for secret in (token, nonce, sig, user_token, user_token[4:20], ADMIN_TOKEN):
        assert secret not in log, secret


async def test_control_characters_are_escaped_in_the_log(tmp_path: Path) -> None:
    log, _, _ = await _probe_log(tmp_path, lambda token, user: [
        "/v1/nope/%0A2026-01-01%2000:00:00,000%20ERROR%20overheard:%20forged%0D%0A",
        "/%E2%80%A8forged", "/v1/%1B%5B31mred%00"])
    lines = log.splitlines()
    assert not any(line.startswith(("2026-01-01", "forged")) for line in lines)
    assert "\\x0a2026-01-01" in log and "\\u2028forged" in log and "\\x1b[31mred\\x00" in log
    assert "\x1b" not in log and "\x00" not in log


# ---- 12. an erasure whose checkpoint could not run ----------------------------------------

SECRET = "Meine Geheimzahl ist 4711 Zebra Kolibri"


async def test_erasure_is_unverified_until_its_checkpoint_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=3, seed=1,
                                transcripts=[SECRET])
        # Someone reads with a snapshot from before the erasure, and keeps it.
        reader = sqlite3.connect(data / "overheard.db", isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == 3
            st = await access_signed_in(env, alice, kind="erasure")
            assert st["status"] == "complete", st
            assert st["result"]["remaining"] == {k: 0 for k in st["result"]["remaining"]}
            assert (st["result"]["wal_checkpointed"], st["result"]["verified"]) == (False, False)
            _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
            assert [a["guard"] for a in alerts["alerts"]] == ["erasure.checkpoint"]
        finally:
            reader.execute("COMMIT")
            reader.close()
        # Finished later, once the reader let go.
        for _ in range(3000):
            st = await status(env, st["request_id"], alice.user_token)
            if st["result"]["verified"]:
                break
            await asyncio.sleep(0.01)
        assert (st["result"]["wal_checkpointed"], st["result"]["verified"]) == (True, True)
        raw = b"".join(p.read_bytes() for p in data.glob("overheard.db*"))
        assert SECRET.encode() not in raw
        assert len(await audit_entries(env, "erasure.checkpointed")) == 1


# ---- 13, 14. one email rule, one normal form ----------------------------------------------

async def test_one_email_validator_for_accounts_and_intake(tmp_path: Path) -> None:
    import re

    async with privacy_env(tmp_path) as env:
        _, spec = await env.api.call("GET", "/openapi.json", expect=200)
        schemas = spec["components"]["schemas"]
        account_email = schemas["AccountIn"]["properties"]["email"]
        request_email = next(s for s in schemas["RequestIn"]["properties"]["email"]["anyOf"]
                             if s.get("type") == "string")
        assert {k: v for k, v in account_email.items() if k != "title"} == request_email
        pattern = account_email["pattern"]
        for n, email in enumerate(["ok@example.org", "a\x00b@example.org", "a@exa\x01mple.org",
                                   "a\x85b@example.org", "a@example.org\n", "a\u2028b@x.org",
                                   "a b@example.org", "a@example", "a@@example.org",
                                   "\ufeffa@example.org", "ä@bücher.de"]):
            spec_ok = re.fullmatch(pattern, email) is not None
            code_account, _ = await env.api.call("POST", "/v1/accounts", json_body={
                "name": f"P{n}", "email": email, "locale": "de-DE"})
            code_request, body = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                                    json_body={"kind": "access", "email": email})
            expected = (201, 201) if spec_ok else (400, 400)
            assert (code_account, code_request) == expected, (repr(email), body)
            assert spec_ok == (email in ("ok@example.org", "ä@bücher.de")), repr(email)


async def test_email_addresses_are_one_account_in_any_case_or_encoding(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        first = await env.api.create_account(name="Xaver", email="x@bücher.de")
        for variant in ("x@BÜCHER.de", "x@xn--bcher-kva.de", "X@Bu\u0308cher.DE", "x@BÜCHER.DE"):
            code, body = await env.api.call("POST", "/v1/accounts", json_body={
                "name": "Xaver Zwo", "email": variant, "locale": "de-DE"})
            assert (code, body["error"]) == (409, "email_in_use"), variant
        # An emailed request naming the address in capitals finds the account on file.
        rid, rtok = await _email_request(env, "x@BÜCHER.DE")
        _, box = await env.api.call("GET", "/v1/outbox?to=x@b%C3%BCcher.de", expect=200)
        code = next(m["code"] for m in box["messages"] if m["request_id"] == rid)
        _, verified = await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                                         json_body={"code": code}, expect=200)
        assert verified["status"] == "approved"
        _, ops = await env.api.call("GET", "/v1/admin/audit?limit=5000", expect=200)
        approved = [e for e in ops["entries"] if e["action"] == "request.approved"]
        assert approved[-1]["detail"]["subject"] == first["account_id"]


async def _email_request(env: Env, email: str) -> tuple[str, str]:
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=None,
                                 json_body={"kind": "access", "email": email}, expect=201)
    return body["request_id"], body["requester_token"]


# ---- the spec as a contract: credentials before anything else ------------------------------

async def test_device_stream_checks_credentials_before_the_upgrade(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", seed=1)
        for token in (None, "dvt_" + "x" * 43, alice.user_token):
            code, body = await env.api.call("GET", "/v1/device/stream", token=token)
            assert (code, body["error"]) == (401, "unauthorized"), token
        dev = await env.api.register_device(alice.account_id, "G0ORDER0001", transfer=True)
        code, body = await env.api.call("GET", "/v1/device/stream", token=dev["device_token"])
        assert (code, body["error"]) == (400, "upgrade_required")


def test_stored_emails_are_brought_to_their_normal_form(tmp_path: Path) -> None:
    from backend.storage import Store

    path = tmp_path / "data" / "overheard.db"
    Store(path).close()
    db = sqlite_utils.Database(path)
    try:
        for n, email in enumerate(["x@BÜCHER.de", "y@xn--bcher-kva.DE", "z@bücher.de", "Z@BÜCHER.de"]):
            db.execute("INSERT INTO accounts (account_id, name, email, locale, created_at)"
                       " VALUES (?, ?, ?, 'de-DE', ?)", [f"acc_{n}", f"N{n}", email, f"2024-0{n + 1}"])
        db.execute("DELETE FROM _migrations WHERE name = 'm0004_normalised_emails'")
    finally:
        db.conn.close()
    Store(path).close()  # the migration runs again at open
    db = sqlite_utils.Database(path)
    try:
        emails = [r[0] for r in db.execute("SELECT email FROM accounts ORDER BY account_id")]
    finally:
        db.conn.close()
    # The last one would collide with an account that already holds its normal form: kept.
    assert emails == ["x@bücher.de", "y@bücher.de", "z@bücher.de", "Z@BÜCHER.de"]
