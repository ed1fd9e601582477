"""kill -9 mid-stream: every acknowledged recording survives whole; nothing is half stored."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import uuid
import wave
from pathlib import Path

import aiohttp
import pytest
from conftest import ADMIN_TOKEN, Api, pcm_bytes, receive_json, send_utterance

from simulator.fleet.embedded import start_server_process

DEVICES = 4
PER_DEVICE = 150
KILL_AFTER_ACKS = 60


async def stream_until_killed(ws: aiohttp.ClientWebSocketResponse, account_id: str, n: int,
                              sent: dict[str, tuple[str, str]], acked: dict[str, str],
                              enough: asyncio.Event) -> None:
    """Pipeline utterances without waiting for acks; stop when the server dies."""
    async def read_acks() -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            assert frame["type"] == "utterance.stored", frame
            acked[frame["utterance_id"]] = frame["recording_id"]
            if len(acked) >= KILL_AFTER_ACKS:
                enough.set()

    reader = asyncio.create_task(read_acks())
    try:
        for k in range(PER_DEVICE):
            pcm = pcm_bytes(1000 * n + k, 8000)
            uid = str(uuid.UUID(int=(n << 64) + k + 1, version=4))
            # Recorded as sent before the first byte goes out: the server may commit it even
            # if the send fails half-way.
            sent[uid] = (hashlib.sha256(pcm).hexdigest(), account_id)
            await send_utterance(ws, pcm, utterance_id=uid, chunk=4000)
    except (ConnectionError, aiohttp.ClientError, RuntimeError):
        pass  # the server was killed
    await reader


@pytest.mark.slow
async def test_acknowledged_recordings_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sent: dict[str, tuple[str, str]] = {}
    acked: dict[str, str] = {}
    enough = asyncio.Event()

    server = await start_server_process(data, admin_token=ADMIN_TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.handle)
            households = []
            for n in range(DEVICES):
                acc = await api.create_account(name=f"Household {n}")
                dev = await api.register_device(acc["account_id"], f"SN-CRASH-{n}")
                households.append((acc, dev))
            # Every device is connected before the first utterance, so the kill can only
            # interrupt streams, never a handshake.
            sockets = [await api.device_ws(dev["device_token"]) for _acc, dev in households]
            tasks = [asyncio.create_task(stream_until_killed(
                ws, acc["account_id"], n, sent, acked, enough))
                for n, ((acc, _dev), ws) in enumerate(zip(households, sockets, strict=True))]
            await enough.wait()
            server.kill()
            in_flight_at_kill = len(sent) - len(acked)
            await server.wait()
            await asyncio.gather(*tasks)
    finally:
        server.kill()
        await server.wait()
    assert in_flight_at_kill > 0, "the kill must hit utterances in flight"
    assert len(acked) >= KILL_AFTER_ACKS

    # Restart on the same data dir: every acknowledged recording is there, whole.
    server = await start_server_process(data, admin_token=ADMIN_TOKEN)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.handle)
            for acc, _dev in households:
                mine = {uid: rid for uid, rid in acked.items()
                        if sent[uid][1] == acc["account_id"]}
                listed = await list_all(api, acc["user_token"])
                assert set(mine.values()) <= listed
                for uid, rid in mine.items():
                    pcm = await fetch_pcm(api, acc["user_token"], rid)
                    assert hashlib.sha256(pcm).hexdigest() == sent[uid][0]
            # A device retrying an acknowledged utterance after the crash stores nothing new.
            uid, rid = next(iter(acked.items()))
            acc, dev = next((a, d) for a, d in households if a["account_id"] == sent[uid][1])
            ws = await api.device_ws(dev["device_token"])
            await send_utterance(ws, b"\x00\x00", utterance_id=uid)
            retry = await receive_json(ws)
            assert (retry["recording_id"], retry["duplicate"]) == (rid, True)
            await ws.close()
    finally:
        server.proc.terminate()
        await server.wait()

    # Nothing is half stored, acknowledged or not; the file is sound.
    conn = sqlite3.connect(data / "overheard.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM recordings r LEFT JOIN audio a"
                            " USING (recording_id) WHERE a.recording_id IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM audio a LEFT JOIN recordings r"
                            " USING (recording_id) WHERE r.recording_id IS NULL").fetchone()[0] == 0
        stored = conn.execute("SELECT r.utterance_id, r.account_id, r.pcm_sha256, a.pcm"
                              " FROM recordings r JOIN audio a USING (recording_id)").fetchall()
    finally:
        conn.close()
    by_uid = {row[0]: row for row in stored}
    assert set(acked) <= set(by_uid)
    for uid, account_id, digest, pcm in stored:
        assert uid in sent, "a recording nobody sent"
        assert (digest, account_id) == sent[uid]
        assert hashlib.sha256(pcm).hexdigest() == digest


async def list_all(api: Api, token: str) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        path = "/v1/me/recordings?limit=500" + (f"&cursor={cursor}" if cursor else "")
        _, body = await api.call("GET", path, token=token, expect=200)
        ids |= {r["recording_id"] for r in body["recordings"]}
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


async def fetch_pcm(api: Api, token: str, recording_id: str) -> bytes:
    status, body = await api.call("GET", f"/v1/me/recordings/{recording_id}/audio", token=token)
    assert status == 200
    with wave.open(io.BytesIO(body), "rb") as wav:
        return wav.readframes(wav.getnframes())


