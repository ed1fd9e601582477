"""Packages and links under hostile input: entry names, hostile zips, a link's whole life.

- Whatever a device or an admin sends (transcripts, names and rooms that look like paths or
  markup), a package's entry names are generated: none holds ``..``, a backslash or an
  absolute path, every one matches the layout, and markup is escaped in ``index.html``.
- The auditor refuses the zip-slip and zip-bomb samples in ``fixtures/packages`` and writes
  nothing anywhere.
- One link's life, with the clock advanced through ``POST /v1/admin/clock`` and the guard
  switched at run time through ``PUT /v1/admin/guards``: valid 1 s before its TTL, 410
  1 s after; a tampered token 404 like a random one; a single-use link replayed → 410; a
  revoked one → 410; a bound link used by another account → 403. Through all of it
  (including requests the router refuses before any handler, such as a POST or HEAD on a
  download URL) no log record at DEBUG holds the token.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
import zipfile
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, pcm_bytes, receive_json, send_utterance
from privacy_support import Env, download, privacy_env, read_package, status

from backend.privacy.delivery import DOWNLOAD_PATH
from simulator.judge.audit import HostilePackage, ZipBomb, audit_package

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "packages"
LAYOUT = re.compile(r"(manifest\.json|README\.txt|index\.html|account/profile\.json"
                    r"|devices/devices\.csv|voice/transcripts\.csv"
                    r"|voice/recordings/[A-Za-z0-9_-]+\.wav)")
HOSTILE_TEXT = [
    "../../../../etc/passwd",
    "/etc/shadow",
    "C:\\Windows\\System32\\evil.wav",
    "voice/recordings/../../../evil.wav",
    "..\\..\\evil",
    "<script>alert('x')</script>",
    "<audio src=x onerror=alert(1)>",
    "%2e%2e%2f%2e%2e%2fevil",
    "=HYPERLINK(\"http://evil.example\")",
]


async def _stream(env: Env, device_token: str, transcripts: list[str]) -> list[str]:
    ws = await env.api.device_ws(device_token)
    ids = []
    try:
        for i, text in enumerate(transcripts):
            await send_utterance(ws, pcm_bytes(500 + i, 800), transcript=text)
            ack = await receive_json(ws)
            assert ack["type"] == "utterance.stored", (text, ack)
            ids.append(ack["recording_id"])
    finally:
        await ws.close()
    return ids


async def test_package_entry_names_are_generated_whatever_the_input(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        acc = await env.api.create_account(name="../../Mallory <b>Root</b>",
                                           email="mallory@example.org")
        dev = await env.api.register_device(acc["account_id"], "G0LINKS0001",
                                            model="../../../bin/sh", room="<img src=x>")
        rec_ids = await _stream(env, dev["device_token"], HOSTILE_TEXT)
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=acc["user_token"],
                                     json_body={"kind": "access"}, expect=201)
        st = await status(env, body["request_id"], acc["user_token"], wait=30)
        assert st["status"] == "complete", st
        code, data, _ = await download(env, st["download_url"])
        assert code == 200
    zf, manifest = read_package(data)
    names = zf.namelist()
    for name in names:
        assert LAYOUT.fullmatch(name), name
        assert ".." not in name.split("/") and "\\" not in name and not name.startswith("/")
    wavs = sorted(n for n in names if n.endswith(".wav"))
    assert wavs == sorted(f"voice/recordings/{rid}.wav" for rid in rec_ids)
    assert {f["path"] for f in manifest["files"]} <= set(names)
    html = zf.read("index.html").decode()
    for raw in ("<script>", "<img src=x>", "<audio src=x", "<b>"):
        assert raw not in html, raw  # markup from input is text, never a tag
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    csv_text = zf.read("voice/transcripts.csv").decode()
    for text in HOSTILE_TEXT:  # the words are kept (they are the subject's data), as text
        assert text.replace('"', '""') in csv_text or text in csv_text, text


@pytest.mark.parametrize("sample,error", [("zip-slip.zip", HostilePackage),
                                          ("zip-bomb.zip", ZipBomb)])
def test_auditor_refuses_hostile_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         sample: str, error: type[Exception]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error):
        audit_package(FIXTURES / sample, [], subject_account="acc_x")
    assert list(tmp_path.iterdir()) == []  # nothing extracted, here or anywhere relative


def _tamper(token: str) -> str:
    nonce, _, sig = token.partition(".")
    return f"{nonce}.{sig[:10]}{'B' if sig[10] == 'A' else 'A'}{sig[11:]}"


async def _access(env: Env, token: str) -> dict[str, object]:
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=token,
                                 json_body={"kind": "access"}, expect=201)
    st = await status(env, body["request_id"], token, wait=30)
    assert st["status"] == "complete", st
    return st


@pytest.mark.slow
async def test_a_links_life_and_its_token_never_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    async with privacy_env(tmp_path, link_ttl_seconds=3600) as env:
        alice = await env.api.create_account(name="Alice Link", email="alice@example.org")
        bob = await env.api.create_account(name="Bob Link", email="bob@example.org")
        dev = await env.api.register_device(alice["account_id"], "G0LINKS0002")
        await _stream(env, dev["device_token"], ["wie wird das Wetter"])

        # TTL: valid 1 s before, gone 1 s after.
        st = await _access(env, alice["user_token"])
        url = str(st["download_url"])
        tokens.append(url.removeprefix(DOWNLOAD_PATH))
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": 3599},
                           expect=200)
        code, data, _ = await download(env, url)
        assert code == 200 and zipfile.is_zipfile(io.BytesIO(data))
        await env.api.call("POST", "/v1/admin/clock", json_body={"advance_seconds": 2},
                           expect=200)
        code, body, _ = await download(env, url)
        assert (code, json.loads(body)["error"]) == (410, "link_expired")

        # Tampered: the same 404 as a token that never existed.
        st = await _access(env, alice["user_token"])
        url = str(st["download_url"])
        token = url.removeprefix(DOWNLOAD_PATH)
        tokens.append(token)
        code, tampered, _ = await download(env, DOWNLOAD_PATH + _tamper(token))
        code2, random_, _ = await download(env, DOWNLOAD_PATH + uuid.uuid4().hex)
        assert (code, tampered) == (code2, random_) and code == 404
        # Methods and HEAD the router refuses before any handler: 405, token still unlogged.
        for method in ("POST", "HEAD", "DELETE"):
            async with env.api.session.request(method, env.handle.url + url) as resp:
                assert resp.status == 405, method
        # Revoked by an operator: 410.
        _, op = await env.api.call("POST", "/v1/operators", json_body={"name": "Ops"},
                                   expect=201)
        await env.api.call("POST", f"/v1/ops/requests/{st['request_id']}/revoke",
                           token=op["operator_token"], expect=200)
        code, body, _ = await download(env, url)
        assert (code, json.loads(body)["error"]) == (410, "link_revoked")

        # The guard, switched on while running: links bound to the requester, single use.
        _, guards = await env.api.call("PUT", "/v1/admin/guards", json_body={"switches": [
            {"name": "delivery.bound_links", "enabled": True}]}, expect=200)
        assert any(g["name"] == "delivery.bound_links" and g["enabled"] for g in guards["guards"])
        st = await _access(env, alice["user_token"])
        url = str(st["download_url"])
        tokens.append(url.removeprefix(DOWNLOAD_PATH))
        assert st["link"]["bound"] and st["link"]["single_use"]  # type: ignore[index]
        for other in (bob["user_token"], None, ADMIN_TOKEN):
            code, body, _ = await download(env, url, token=other)
            assert (code, json.loads(body)["error"]) == (403, "requester_only"), other
        code, data, _ = await download(env, url, token=alice["user_token"])
        assert code == 200
        zf, manifest = read_package(data)
        assert manifest["account_id"] == alice["account_id"]
        code, body, _ = await download(env, url, token=alice["user_token"])  # replayed
        assert (code, json.loads(body)["error"]) == (410, "link_used")
    records = list(caplog.records)
    # The flow was logged (there was something to leak into), refusals by the router too.
    assert sum(r.name == "overheard.privacy.delivery" for r in records) >= 6
    assert any(DOWNLOAD_PATH + "<redacted>" in r.getMessage() for r in records)
    for token in tokens:
        nonce, _, sig = token.partition(".")
        for record in records:
            text = record.getMessage() + repr(record.args) + (record.exc_text or "")
            assert token not in text and sig not in text and nonce not in text, (
                record.name, record.getMessage())
