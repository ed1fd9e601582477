"""The account holder's voice history: pagination, WAV download, delete, and isolation."""

from __future__ import annotations

import hashlib
import io
import wave
from typing import Any

from conftest import Api, pcm_bytes, receive_json, send_utterance

from backend.keys import STORE
from contract.audio import CHANNELS, RATE, WIDTH


async def record(api: Api, device_token: str, seeds: list[int], *,
                 times: list[str] | None = None) -> list[str]:
    """Stream one utterance per seed; their recording ids in order."""
    ws = await api.device_ws(device_token)
    out = []
    for n, seed in enumerate(seeds):
        at = times[n] if times else f"2024-05-{1 + n:02d}T08:00:00Z"
        await send_utterance(ws, pcm_bytes(seed), recorded_at=at, transcript=f"Satz {seed}")
        ack = await receive_json(ws)
        assert ack["type"] == "utterance.stored", ack
        out.append(ack["recording_id"])
    await ws.close()
    return out


async def household(api: Api, serial: str) -> tuple[dict[str, Any], dict[str, Any]]:
    acc = await api.create_account()
    return acc, await api.register_device(acc["account_id"], serial)


async def test_pagination_walks_every_recording_once_in_order(api: Api) -> None:
    acc, dev = await household(api, "SN-A")
    # Two share a timestamp, so the recording id must break the tie.
    times = ["2024-05-03T08:00:00Z", "2024-05-01T08:00:00Z", "2024-05-02T08:00:00Z",
             "2024-05-02T08:00:00Z", "2024-05-05T08:00:00Z", "2024-05-04T08:00:00Z",
             "2024-05-06T08:00:00Z"]
    ids = await record(api, dev["device_token"], list(range(7)), times=times)
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        path = "/v1/me/recordings?limit=3" + (f"&cursor={cursor}" if cursor else "")
        _, body = await api.call("GET", path, token=acc["user_token"], expect=200)
        pages.append(body["recordings"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [r for p in pages for r in p]
    assert sorted(r["recording_id"] for r in flat) == sorted(ids)
    keys = [(r["recorded_at"], r["recording_id"]) for r in flat]
    assert keys == sorted(keys)
    first = flat[0]
    assert first["recorded_at"] == "2024-05-01T08:00:00.000Z"
    assert first["duration_ms"] == 200 and first["transcript"] == "Satz 1"
    assert first["device_id"] == dev["device_id"]
    assert set(first) == {"recording_id", "device_id", "recorded_at", "duration_ms", "transcript"}


async def test_default_page_and_limit_validation(api: Api) -> None:
    acc, _ = await household(api, "SN-A")
    _, body = await api.call("GET", "/v1/me/recordings", token=acc["user_token"], expect=200)
    assert body == {"recordings": [], "next_cursor": None}
    for query in ("limit=0", "limit=501", "limit=abc"):
        status, out = await api.call("GET", f"/v1/me/recordings?{query}",
                                     token=acc["user_token"])
        assert (status, out["error"]) == (400, "invalid_query")
    for cursor in ("!!!", "bm9wZQ", "WzFd"):
        status, out = await api.call("GET", f"/v1/me/recordings?cursor={cursor}",
                                     token=acc["user_token"])
        assert (status, out["error"]) == (400, "invalid_cursor")


async def test_audio_is_a_valid_wav_of_the_stored_pcm(api: Api) -> None:
    acc, dev = await household(api, "SN-A")
    (rid,) = await record(api, dev["device_token"], [42])
    async with api.session.get(f"{api.handle.url}/v1/me/recordings/{rid}/audio",
                               headers={"Authorization": f"Bearer {acc['user_token']}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/wav"
        assert rid in resp.headers["Content-Disposition"]
        body = await resp.read()
    with wave.open(io.BytesIO(body), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (CHANNELS, WIDTH, RATE)
        assert wav.getnframes() == len(pcm_bytes(42)) // 2
        frames = wav.readframes(wav.getnframes())
    assert hashlib.sha256(frames).hexdigest() == hashlib.sha256(pcm_bytes(42)).hexdigest()


async def test_another_accounts_recording_is_404_like_a_missing_one(api: Api) -> None:
    alice, alice_dev = await household(api, "SN-A")
    bob, bob_dev = await household(api, "SN-B")
    (alice_rec,) = await record(api, alice_dev["device_token"], [1])
    (bob_rec,) = await record(api, bob_dev["device_token"], [2])
    _, listing = await api.call("GET", "/v1/me/recordings", token=bob["user_token"])
    assert [r["recording_id"] for r in listing["recordings"]] == [bob_rec]

    foreign = await api.call("GET", f"/v1/me/recordings/{alice_rec}/audio",
                             token=bob["user_token"])
    missing = await api.call("GET", "/v1/me/recordings/rec_00000000000000000000/audio",
                             token=bob["user_token"])
    assert foreign[0] == missing[0] == 404
    assert foreign[1] == missing[1]
    foreign_del = await api.call("DELETE", f"/v1/me/recordings/{alice_rec}",
                                 token=bob["user_token"])
    missing_del = await api.call("DELETE", "/v1/me/recordings/rec_00000000000000000000",
                                 token=bob["user_token"])
    assert foreign_del == missing_del and foreign_del[0] == 404
    # Alice's recording is untouched.
    status, _ = await api.call("GET", f"/v1/me/recordings/{alice_rec}/audio",
                               token=alice["user_token"])
    assert status == 200


async def test_delete_removes_row_and_audio(api: Api) -> None:
    acc, dev = await household(api, "SN-A")
    keep, drop = await record(api, dev["device_token"], [1, 2])
    status, _ = await api.call("DELETE", f"/v1/me/recordings/{drop}", token=acc["user_token"])
    assert status == 204
    _, body = await api.call("GET", "/v1/me/recordings", token=acc["user_token"])
    assert [r["recording_id"] for r in body["recordings"]] == [keep]
    status, _ = await api.call("GET", f"/v1/me/recordings/{drop}/audio", token=acc["user_token"])
    assert status == 404
    left = await api.handle.app[STORE].read(  # type: ignore[index]
        lambda db: (db.execute("SELECT recording_id FROM recordings").fetchall(),
                    db.execute("SELECT recording_id FROM audio").fetchall()))
    assert left == ([(keep,)], [(keep,)])
    status, _ = await api.call("DELETE", f"/v1/me/recordings/{drop}", token=acc["user_token"])
    assert status == 404
    _, audit = await api.call("GET", "/v1/admin/audit")
    deleted = [e for e in audit["entries"] if e["action"] == "recording.deleted"]
    assert [e["object_id"] for e in deleted] == [drop]


async def test_voice_routes_need_a_user_token(api: Api) -> None:
    _, dev = await household(api, "SN-A")
    assert (await api.call("GET", "/v1/me/recordings", token=None))[0] == 401
    assert (await api.call("GET", "/v1/me/recordings"))[0] == 403  # admin
    with_device = await api.call("GET", "/v1/me/recordings", token=dev["device_token"])
    assert with_device[0] == 403


async def test_voice_routes_are_documented(api: Api) -> None:
    _, spec = await api.call("GET", "/openapi.json", token=None)
    assert "get" in spec["paths"]["/v1/me/recordings"]
    assert "get" in spec["paths"]["/v1/me/recordings/{recording_id}/audio"]
    assert "delete" in spec["paths"]["/v1/me/recordings/{recording_id}"]
