"""Shared fixtures: a real embedded backend on port 0, an HTTP helper, a device stream helper."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend import Config
from backend.files import loose_files
from contract.audio import BYTES_PER_SECOND
from contract.stream import FORMAT
from simulator.fleet.embedded import BackendHandle, embedded_backend
from simulator.world.speech import CACHE_ENV

# Speech renders go to a cache of this session's own (subprocesses inherit it), so tests
# never read or fill the user's cache and start cold.
_RENDER_CACHE = tempfile.TemporaryDirectory(prefix="overheard-renders-")
os.environ[CACHE_ENV] = _RENDER_CACHE.name

ADMIN_TOKEN = "adm_test_0123456789"


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs under the commonest umask, whatever the shell's: every data dir it
    # leaves behind is then checked to be owner-only (:func:`data_dirs_stay_private`).
    os.umask(0o022)


@pytest.fixture(autouse=True)
def data_dirs_stay_private(tmp_path: Path) -> Iterator[None]:
    """After each test, no data dir under its ``tmp_path`` (a folder holding
    ``overheard.db``) has a file or directory that a group or other user may read."""
    yield
    loose = [entry for db in tmp_path.rglob("overheard.db") for entry in loose_files(db.parent)]
    assert not loose, "data dir entries readable beyond their owner:\n" + "\n".join(loose[:20])


def make_config(data_dir: Path, **changes: Any) -> Config:
    """The config tests run with: a fresh data dir, a known admin token, seeded ids."""
    return Config(data_dir=data_dir, admin_token=ADMIN_TOKEN, id_seed=1, **changes)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[BackendHandle]:
    """An embedded backend with SQLite in ``tmp_path/data``."""
    async with embedded_backend(make_config(tmp_path / "data")) as handle:
        yield handle


@dataclass
class Api:
    """A small JSON client for one backend; admin token unless told otherwise."""

    session: aiohttp.ClientSession
    handle: BackendHandle

    async def call(self, method: str, path: str, *, token: str | None = ADMIN_TOKEN,
                   json_body: Any = None, expect: int | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.handle.url + path, headers=headers,
                                        json=json_body) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            body: Any = json.loads(raw) if raw and ctype.startswith("application/json") else raw
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    async def create_account(self, name: str = "Erika Mustermann", email: str | None = None,
                             locale: str = "de-DE") -> dict[str, Any]:
        email = email or f"{uuid.uuid4().hex[:12]}@example.org"
        _, body = await self.call("POST", "/v1/accounts", expect=201, json_body={
            "name": name, "email": email, "locale": locale})
        return dict(body)

    async def register_device(self, account_id: str, serial: str, *, model: str = "Echo Dot",
                              room: str = "Kitchen", transfer: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"serial": serial, "model": model, "room": room}
        if transfer is not None:
            body["transfer"] = transfer
        _, out = await self.call("POST", f"/v1/accounts/{account_id}/devices", expect=201,
                                 json_body=body)
        return dict(out)

    async def device_ws(self, device_token: str) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(
            self.handle.url + "/v1/device/stream",
            headers={"Authorization": f"Bearer {device_token}"})


@pytest.fixture
async def api(backend: BackendHandle) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, backend)


def pcm_bytes(seed: int, samples: int = 3200) -> bytes:
    """Deterministic s16le noise: same seed, same bytes."""
    import random

    return random.Random(seed).randbytes(samples * 2)


async def send_utterance(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, *,
                         utterance_id: str | None = None, transcript: str = "wie wird das Wetter",
                         recorded_at: str = "2024-05-01T08:30:00Z", chunk: int = BYTES_PER_SECOND,
                         locale: str = "de-DE") -> str:
    """Send start, PCM chunks and end (without waiting for the answer); the utterance id."""
    uid = utterance_id or str(uuid.uuid4())
    await ws.send_json({"type": "utterance.start", "utterance_id": uid, "recorded_at": recorded_at,
                        "audio": FORMAT.model_dump()})
    for i in range(0, len(pcm), chunk):
        await ws.send_bytes(pcm[i:i + chunk])
    await ws.send_json({"type": "utterance.end", "utterance_id": uid, "transcript": transcript,
                        "locale": locale})
    return uid


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    """The next server frame as JSON (fails the test on close or timeout)."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    return dict(json.loads(msg.data))
