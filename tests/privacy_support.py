"""Helpers for the privacy tests: a configured backend, seeded recordings, the request flows.

Accounts and devices are made through the API; recordings are inserted through the store
(the same rows ingest commits), so these tests do not depend on the device stream.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlite_utils
from conftest import ADMIN_TOKEN, Api, make_config

from backend.keys import IDS, STORE
from contract.audio import CHANNELS, RATE, WIDTH, duration_ms
from simulator.fleet.embedded import BackendHandle, embedded_backend

CLOCK_START = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class Env:
    """A running backend and a client for it."""

    api: Api
    handle: BackendHandle

    @property
    def app(self) -> Any:
        return self.handle.app


@asynccontextmanager
async def privacy_env(tmp_path: Path, **changes: Any) -> AsyncIterator[Env]:
    """An embedded backend (frozen clock unless told otherwise) and an API client."""
    changes.setdefault("clock_start", CLOCK_START)
    changes.setdefault("clock_frozen", True)
    async with embedded_backend(make_config(tmp_path / "data", **changes)) as handle:
        async with aiohttp.ClientSession() as session:
            yield Env(Api(session, handle), handle)


@dataclass
class Household:
    account_id: str
    user_token: str
    email: str
    name: str
    device_id: str = ""
    serial: str = ""
    recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """recording_id -> {"transcript", "pcm_sha256", "pcm"}."""


async def household(env: Env, name: str, email: str, *, recordings: int = 0, seed: int = 0,
                    transcripts: list[str] | None = None, samples: int = 1600) -> Household:
    """An account with one device and ``recordings`` recordings of ``samples`` samples."""
    acc = await env.api.create_account(name=name, email=email)
    h = Household(acc["account_id"], acc["user_token"], email, name)
    serial = f"G0{seed:04d}XYZ"
    dev = await env.api.register_device(h.account_id, serial)
    h.device_id, h.serial = dev["device_id"], serial
    if recordings:
        await add_recordings(env, h, recordings, seed=seed, transcripts=transcripts,
                             samples=samples)
    return h


async def add_recordings(env: Env, h: Household, n: int, *, seed: int,
                         transcripts: list[str] | None = None, samples: int = 1600) -> None:
    rng = random.Random(seed)
    ids = env.app[IDS]
    rows, audio = [], []
    base = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    for i in range(n):
        uid = f"utt-{seed}-{i}"
        rid = ids.derived("rec", uid)
        pcm = rng.randbytes(samples * 2)
        text = transcripts[i] if transcripts and i < len(transcripts) else f"wie wird das Wetter {seed}-{i}"
        at = (base + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
        rows.append({
            "recording_id": rid, "utterance_id": uid, "account_id": h.account_id,
            "device_id": h.device_id, "serial": h.serial, "recorded_at": at, "stored_at": at,
            "duration_ms": duration_ms(len(pcm)), "transcript": text, "locale": "de-DE",
            "rate": RATE, "width": WIDTH, "channels": CHANNELS, "pcm_bytes": len(pcm),
            "pcm_sha256": hashlib.sha256(pcm).hexdigest(),
        })
        audio.append({"recording_id": rid, "pcm": pcm})
        h.recordings[rid] = {"transcript": text, "pcm_sha256": rows[-1]["pcm_sha256"], "pcm": pcm}

    def write(db: sqlite_utils.Database) -> None:
        db["recordings"].insert_all(rows)
        db["audio"].insert_all(audio)

    await env.app[STORE].write(write)


async def outbox(env: Env, to: str) -> list[dict[str, Any]]:
    _, body = await env.api.call("GET", f"/v1/outbox?to={to}", expect=200)
    return list(body["messages"])


async def email_request(env: Env, email: str, kind: str = "access",
                        name: str | None = None) -> tuple[str, str]:
    """File by email; returns (request_id, requester_token)."""
    payload: dict[str, Any] = {"kind": kind, "email": email}
    if name:
        payload["name"] = name
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=None, json_body=payload,
                                 expect=201)
    assert body["status"] == "identity_unverified"
    return body["request_id"], body["requester_token"]


async def code_for(env: Env, to: str, request_id: str) -> str:
    msgs = [m for m in await outbox(env, to) if m.get("request_id") == request_id and "code" in m]
    assert len(msgs) == 1, msgs
    return str(msgs[0]["code"])


async def status(env: Env, request_id: str, token: str, *, wait: float = 0) -> dict[str, Any]:
    """The request status; ``wait`` long-polls until the backend stops working on it."""
    q = f"?wait={wait}" if wait else ""
    _, body = await env.api.call("GET", f"/v1/privacy/requests/{request_id}{q}", token=token,
                                 expect=200)
    return dict(body)


async def access_by_email(env: Env, h: Household) -> tuple[str, str, dict[str, Any]]:
    """The whole email path up to ``complete``: (request_id, requester_token, status)."""
    rid, rtok = await email_request(env, h.email)
    code = await code_for(env, h.email, rid)
    await env.api.call("POST", f"/v1/privacy/requests/{rid}/verify", token=rtok,
                       json_body={"code": code}, expect=200)
    st = await status(env, rid, rtok, wait=30)
    assert st["status"] == "complete", st
    return rid, rtok, st


async def access_signed_in(env: Env, h: Household, kind: str = "access") -> dict[str, Any]:
    """File as the signed-in user and wait for the backend; the final status."""
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=h.user_token,
                                 json_body={"kind": kind}, expect=201)
    return await status(env, body["request_id"], h.user_token, wait=30)


async def download(env: Env, url: str, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with env.api.session.get(env.handle.url + url, headers=hdrs) as resp:
        return resp.status, await resp.read(), resp.headers


def read_package(data: bytes) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    return zf, json.loads(zf.read("manifest.json"))


async def audit_entries(env: Env, action: str | None = None) -> list[dict[str, Any]]:
    _, body = await env.api.call("GET", "/v1/admin/audit?limit=5000", token=ADMIN_TOKEN,
                                 expect=200)
    return [e for e in body["entries"] if action is None or e["action"] == action]
