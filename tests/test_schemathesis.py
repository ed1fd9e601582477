"""Schemathesis against the live server's /openapi.json, once per role token.

Each role (admin, operator, account holder, device, anonymous) gets its own backend with a
little data in it (an account with a device and a recording, an operator, a completed
access request), and one bounded, seeded ``schemathesis run`` with every check and its
default expectations: no 5xx, status codes, content types, headers and bodies as the spec
says, schema-valid input accepted, invalid input rejected, auth not ignored, at least 30
examples per operation, and the stateful phase walking the spec's OpenAPI links (account ->
device -> request -> code -> status -> download). A failure prints schemathesis' own report
with the curl lines that reproduce it.

The device stream is left out: it is a WebSocket, which OpenAPI cannot describe beyond its
upgrade (the ingest and hostile-input tests drive it instead).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import ADMIN_TOKEN, Api, make_config, pcm_bytes, receive_json, send_utterance

from simulator.fleet.embedded import embedded_backend

MAX_EXAMPLES = 30
SEED = 20180
RUN_TIMEOUT = 600.0

# Default expectations for every check: nothing here widens an expected status. A check is
# switched off only where the spec cannot say what makes an input acceptable.
CONFIG_TOML = """\
# A link token is accepted while its link lives: a real token goes 410 once the link
# expires (the admin run moves the clock), is revoked or was used up (single use). Whether
# a token is still good is the server's state, which no schema can state; 410 is the
# documented answer. Every other check runs on this operation.
[[operations]]
include-operation-id = "get_v1_privacy_downloads_token"
checks.positive_data_acceptance.enabled = false

# The stateful phase walks the links the spec declares (account -> device -> request ->
# code -> download), not links guessed from response fields: a guessed link from an old
# outbox message to its (meanwhile expired) download is the 410 above, and this phase
# applies its checks to every operation alike.
[phases.stateful.inference]
algorithms = []
"""


async def _seed(api: Api) -> dict[str, str]:
    """An owner with a device, one stored recording and a complete access request; an operator."""
    acc = await api.create_account(name="Erika Mustermann", email="erika@example.org")
    dev = await api.register_device(acc["account_id"], "G0SCHEMA0001")
    ws = await api.device_ws(dev["device_token"])
    try:
        await send_utterance(ws, pcm_bytes(7))
        ack = await receive_json(ws)
        assert ack["type"] == "utterance.stored", ack
    finally:
        await ws.close()
    _, op = await api.call("POST", "/v1/operators", json_body={"name": "Olga Operator"},
                           expect=201)
    _, req = await api.call("POST", "/v1/privacy/requests", token=acc["user_token"],
                            json_body={"kind": "access"}, expect=201)
    _, st = await api.call("GET", f"/v1/privacy/requests/{req['request_id']}?wait=30",
                           token=acc["user_token"], expect=200)
    assert st["status"] == "complete", st
    return {"admin": ADMIN_TOKEN, "operator": op["operator_token"], "user": acc["user_token"],
            "device": dev["device_token"]}


ROLES = ("admin", "operator", "user", "device", "anonymous")


async def _run(tmp_path: Path, role: str) -> tuple[int, str]:
    """One backend, one schemathesis run with ``role``'s token; (exit code, report)."""
    async with embedded_backend(make_config(tmp_path / "data")) as handle:
        async with aiohttp.ClientSession() as session:
            tokens = await _seed(Api(session, handle))
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG_TOML)
        auth = ["-H", f"Authorization: Bearer {tokens[role]}"] if role in tokens else []
        cli = Path(sys.executable).with_name("schemathesis")
        proc = await asyncio.create_subprocess_exec(
            str(cli), "--config-file", str(config), "run", f"{handle.url}/openapi.json",
            "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
            "--exclude-path", "/v1/device/stream", "--no-shrink", "--no-color",
            "--generation-database", "none", "--request-timeout", "10",
            "--workers", "1", "--warnings", "off", *auth,
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        # The server runs in this event loop, so wait without blocking it.
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            return -1, f"did not finish in {RUN_TIMEOUT:g} s\n" + out.decode(errors="replace")
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.slow
async def test_schemathesis_finds_nothing_for_any_role(tmp_path: Path) -> None:
    # The five runs go at once (each its own backend and data dir): CI time, not coverage.
    results = await asyncio.gather(*(_run(tmp_path / role, role) for role in ROLES))
    failed = {role: report for role, (code, report) in zip(ROLES, results, strict=True) if code}
    assert not failed, "\n\n".join(
        f"===== schemathesis as {role} found problems =====\n{report[-10000:]}"
        for role, report in failed.items())
    for role, (_, report) in zip(ROLES, results, strict=True):
        # It really ran: every documented HTTP operation but the WebSocket was selected,
        # and the stateful phase followed the spec's links.
        assert "Tested: " in report and "failed" not in report.split("SUMMARY")[-1], (role, report[-2000:])
        links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", report)
        assert links and int(links[2]) >= 8, (role, report[-3000:])
        # An operator or a device can start no walk (they create no account or request).
        assert role in ("operator", "device") or int(links[1]) >= 2, (role, links[0])
