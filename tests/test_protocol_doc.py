"""docs/protocol.md against a live server: the example session and the client are read from
the document itself, so the document and the server cannot drift apart."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
from conftest import Api, pcm_bytes, receive_json

from contract.audio import RATE, pcm_to_wav
from contract.stream import (
    AudioFormat,
    ErrorMessage,
    UtteranceEnd,
    UtteranceStart,
    UtteranceStored,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
README = DOC.parent.parent / "README.md"
BINARY = re.compile(r"^\[binary frame: (\d+) bytes of PCM\]$")


def fenced(language: str) -> list[str]:
    """The bodies of the document's ```language blocks, in order."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def example_session() -> list[tuple[str, Any]]:
    """(direction, frame) pairs of the example session: JSON objects or PCM byte counts."""
    (block,) = fenced("text")
    out: list[tuple[str, Any]] = []
    for line in block.splitlines():
        direction, body = line[0], line[2:]
        binary = BINARY.match(body)
        out.append((direction, int(binary.group(1)) if binary else json.loads(body)))
    return out


def test_readme_links_the_protocol() -> None:
    assert "(docs/protocol.md)" in README.read_text(encoding="utf-8")


def test_the_doc_names_every_field_the_server_accepts() -> None:
    text = DOC.read_text(encoding="utf-8")
    for model in (UtteranceStart, UtteranceEnd, UtteranceStored, ErrorMessage):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (model.__name__, name)
    for name in AudioFormat.model_fields:
        assert f"| `audio.{name}` |" in text, name


async def test_the_documented_example_session_gets_the_documented_answers(api: Api) -> None:
    account = await api.create_account()
    device = await api.register_device(account["account_id"], "G090LF0000DOC001")
    session = example_session()
    assert [d for d, _ in session].count("←") == 4
    ws = await api.device_ws(device["device_token"])
    acks: list[str] = []
    for direction, frame in session:
        if direction == "→" and isinstance(frame, int):
            await ws.send_bytes(pcm_bytes(frame, frame // 2))
        elif direction == "→":
            await ws.send_str(json.dumps(frame))
        else:
            got = await receive_json(ws)
            assert set(got) == set(frame), (got, frame)
            same = {k: v for k, v in frame.items() if k != "recording_id"}
            assert {k: got[k] for k in same} == same
            if "recording_id" in frame:
                assert re.fullmatch(r"rec_[0-9a-f]{20}", got["recording_id"]), got
                acks.append(got["recording_id"])
    await ws.close()
    # the retry was answered with the first recording's id: stored once
    assert len(acks) == 2 and acks[0] == acks[1]
    _, body = await api.call("GET", "/v1/me/recordings", token=account["user_token"], expect=200)
    assert [r["transcript"] for r in body["recordings"]] == ["Alexa, wie wird das Wetter morgen?"]


async def test_the_documented_client_stores_an_utterance(api: Api, tmp_path: Path) -> None:
    (client_code,) = fenced("python")
    assert len(client_code.splitlines()) <= 30
    script = tmp_path / "client.py"
    script.write_text(client_code, encoding="utf-8")
    wav = tmp_path / "hello.wav"
    pcm = pcm_bytes(7, RATE * 3)  # 3 s: three binary frames
    wav.write_bytes(pcm_to_wav(pcm))
    account = await api.create_account()
    device = await api.register_device(account["account_id"], "G090LF0000DOC002")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), api.handle.url, device["device_token"], str(wav),
        "Alexa, wie spät ist es?", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["type"] == "utterance.stored" and answer["duplicate"] is False
    _, body = await api.call("GET", "/v1/me/recordings", token=account["user_token"], expect=200)
    (rec,) = body["recordings"]
    assert rec["recording_id"] == answer["recording_id"]
    assert rec["transcript"] == "Alexa, wie spät ist es?"
    assert rec["duration_ms"] == 3000
    audio = await api.call("GET", f"/v1/me/recordings/{rec['recording_id']}/audio",
                           token=account["user_token"], expect=200)
    assert pcm in audio[1]


async def test_a_device_token_is_needed(api: Api) -> None:
    async with aiohttp.ClientSession() as session:
        try:
            await session.ws_connect(api.handle.url + "/v1/device/stream")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
        else:  # pragma: no cover - the assertion below names the problem
            raise AssertionError("the upgrade without a token was accepted")
