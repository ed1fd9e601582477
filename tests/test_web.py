"""The web pages over plain HTTP (no browser): sessions and their expiry, one-time sign-in,
the confirmation step, four-eyes review, the admin forms, the wait of an interactive run,
and the wording of the assignment warnings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from conftest import ADMIN_TOKEN
from privacy_support import Env, household, privacy_env, status

from backend.privacy.review import (
    AccountSignals,
    DeviceSignal,
    RequesterSignals,
    assignment_warnings,
)
from backend.web.interactive import await_console
from backend.web.pages import SESSIONS
from backend.web.sessions import IDLE_SECONDS


@dataclass
class Web:
    """A cookie-keeping client for one area of the pages."""

    session: aiohttp.ClientSession
    base: str
    csrf: str = ""

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path, allow_redirects=False) as resp:
            text = await resp.text()
            found = re.search(r'name="csrf" value="([^"]+)"', text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text if resp.status != 303 else resp.headers["Location"]

    async def post(self, path: str, **form: str) -> tuple[int, str]:
        async with self.session.post(self.base + path, data={"csrf": self.csrf, **form},
                                     allow_redirects=False) as resp:
            text = await resp.text()
            return resp.status, text if resp.status != 303 else resp.headers["Location"]

    async def sign_in(self, area: str, token: str) -> None:
        await self.get(f"/{area}/signin")
        status, where = await self.post(f"/{area}/signin", token=token)
        assert status == 303, (status, where)
        await self.get(where)


@asynccontextmanager
async def web_client(env: Env) -> AsyncIterator[Web]:
    # The server is 127.0.0.1: aiohttp keeps cookies for IP hosts only when told to.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield Web(s, env.handle.url)


async def _operator(env: Env, name: str) -> str:
    _, body = await env.api.call("POST", "/v1/operators", json_body={"name": name}, expect=201)
    return str(body["operator_token"])


async def _pending_request(env: Env) -> tuple[Any, str]:
    h = await household(env, "Erika Mustermann", "erika@example.de", recordings=3, seed=1,
                        samples=320)
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=h.user_token,
                                 json_body={"kind": "access"}, expect=201)
    return h, str(body["request_id"])


async def _status(env: Env, rid: str) -> str:
    _, body = await env.api.call("GET", f"/v1/privacy/requests/{rid}", expect=200)
    return str(body["status"])


async def test_a_session_ends_when_idle_and_at_sign_out(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env, web_client(env) as web:
        await web.sign_in("console", ADMIN_TOKEN)
        assert (await web.get("/console/admin/health"))[0] == 200
        store = env.app[SESSIONS]
        real = store.now
        store.now = lambda: real() + IDLE_SECONDS + 1
        assert await web.get("/console/admin/health") == (303, "/console/signin")
        store.now = real
        await web.sign_in("console", ADMIN_TOKEN)
        assert (await web.post("/console/signout"))[1] == "/console/signin"
        assert await web.get("/console/admin/health") == (303, "/console/signin")


async def test_a_one_time_sign_in_link_works_once(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env, web_client(env) as web:
        token = await _operator(env, "Operator A")
        nonce = env.app[SESSIONS].one_time("console", token)
        assert await web.get(f"/console/signin/once/{nonce}") == (303, "/console/")
        status, page = await web.get("/console/")
        assert status == 200 and "Operator A (operator)" in page
        await web.post("/console/signout")
        assert await web.get(f"/console/signin/once/{nonce}") == (303, "/console/signin")
        assert "used or has expired" in (await web.get("/console/signin"))[1]


async def test_wrong_tokens_and_roles_are_refused(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env, web_client(env) as web:
        h, _ = await _pending_request(env)
        await web.get("/console/signin")
        assert (await web.post("/console/signin", token="opt_nonsense"))[0] == 401
        assert (await web.post("/console/signin", token=h.user_token))[0] == 401
        await web.sign_in("console", await _operator(env, "Operator A"))
        status, page = await web.get("/console/admin/")
        assert status == 403 and "admin rights" in page


async def test_nothing_irreversible_happens_before_the_confirmation(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env, web_client(env) as web:
        _, rid = await _pending_request(env)
        await web.sign_in("console", await _operator(env, "Operator A"))
        status, page = await web.post(f"/console/requests/{rid}/approve")
        assert status == 200 and "Yes, approve" in page and "cannot be undone" in page
        status, page = await web.post(f"/console/requests/{rid}/deny", reason="no_match")
        assert status == 200 and "Yes, deny" in page
        status, page = await web.post(f"/console/requests/{rid}/deny", confirm="yes")
        assert status == 400 and "reason" in page  # a denial needs its reason
        assert await _status(env, rid) == "pending"
        status, where = await web.post(f"/console/requests/{rid}/deny", reason="no_match",
                                       confirm="yes")
        assert (status, where) == (303, f"/console/requests/{rid}")
        assert await _status(env, rid) == "denied"
        status, page = await web.post(f"/console/requests/{rid}/approve", confirm="yes")
        assert status == 409 and "denied" in page  # the service's error, as a page


async def test_four_eyes_needs_a_second_operator_in_the_console(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",),
                           guards={"ops.four_eyes": {}}) as env:
        h, rid = await _pending_request(env)
        other = await household(env, "Max Muster", "max@example.de", seed=2)
        async with web_client(env) as first:
            await first.sign_in("console", await _operator(env, "Operator A"))
            await first.post(f"/console/requests/{rid}/assign", account_id=other.account_id,
                             confirm="yes")
            await first.post(f"/console/requests/{rid}/approve", confirm="yes")
            page = (await first.get(f"/console/requests/{rid}"))[1]
            assert "is held" in page and "Held for a second operator" in page
            assert "ops.four_eyes" in page  # the alert, on the request it is about
            await first.post(f"/console/requests/{rid}/approve", confirm="yes")
            assert await _status(env, rid) == "pending"  # the same person twice is one pair
        async with web_client(env) as second:
            await second.sign_in("console", await _operator(env, "Operator B"))
            await second.post(f"/console/requests/{rid}/approve", confirm="yes")
        assert (await status(env, rid, h.user_token, wait=30))["status"] == "complete"


async def test_admin_forms_switch_guards_and_move_the_clock(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env, web_client(env) as web:
        await web.sign_in("console", ADMIN_TOKEN)
        status, page = await web.post("/console/admin/switches/guard", on="ops.four_eyes")
        assert status == 303
        _, guards = await env.api.call("GET", "/v1/admin/guards", expect=200)
        assert [g["name"] for g in guards["guards"] if g["enabled"]] == ["ops.four_eyes"]
        status, page = await web.post("/console/admin/switches/fault",
                                      **{"on": "export.operator_swap",
                                         "params:export.operator_swap": "{not json"})
        assert status == 400 and "JSON" in page
        _, faults = await env.api.call("GET", "/v1/admin/faults", expect=200)
        assert not any(f["enabled"] for f in faults["faults"])  # all or nothing
        _, before = await env.api.call("GET", "/v1/admin/clock", expect=200)
        await web.post("/console/admin/clock", amount="2", unit="days")
        _, after = await env.api.call("GET", "/v1/admin/clock", expect=200)
        assert before["now"].startswith("2024-06-01") and after["now"].startswith("2024-06-03")
        page = (await web.get("/console/admin/audit?verify=1"))[1]
        assert "Hash chain intact" in page and "clock.advanced" in page


async def test_an_interactive_wait_ends_when_the_queue_empties_or_at_done(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env, web_client(env) as web:
        h, rid = await _pending_request(env)
        await web.sign_in("console", await _operator(env, "Operator A"))
        waiting = asyncio.create_task(await_console(env.app))
        page = (await web.get("/console/"))[1]
        for _ in range(100):  # the task marks itself active on its first step
            if "Done: let the run carry on" in page:
                break
            await asyncio.sleep(0)
            page = (await web.get("/console/"))[1]
        assert "Done: let the run carry on" in page
        await web.post("/console/done")
        assert await asyncio.wait_for(waiting, 10) == "done"
        waiting = asyncio.create_task(await_console(env.app))
        await web.post(f"/console/requests/{rid}/approve", confirm="yes")
        assert await asyncio.wait_for(waiting, 10) == "empty"
        assert "Done: let the run carry on" not in (await web.get("/console/"))[1]
        assert (await status(env, rid, h.user_token, wait=30))["status"] == "complete"


def _account(aid: str, name: str, email: str, devices: int, recordings: int) -> AccountSignals:
    devs = [DeviceSignal(f"dev{i}", f"S{i}", "Echo", "Kitchen", "2018-01-01T00:00:00Z", 1,
                         None) for i in range(devices)]
    return AccountSignals(aid, name, email, "2018-01-01T00:00:00Z", False, devs, recordings,
                          devices, None)


def test_assignment_warnings_name_each_mismatch_and_stay_quiet_on_the_own_account() -> None:
    own = _account("acc_a", "Lena Vogel", "lena@example.de", 0, 0)
    requester = RequesterSignals("account", "Lena Vogel", "lena@example.de", True, own)
    assert assignment_warnings(requester, own, []) == []
    other = _account("acc_b", "Jonas Keller", "jonas@example.de", 3, 1234)
    warnings = assignment_warnings(requester, other, [{"request_id": "prq_x",
                                                       "status": "pending"}])
    assert warnings == [
        "this is not the requester's own account: the requester is Lena Vogel (acc_a); "
        "you are assigning Jonas Keller (acc_b)",
        "this requester has no devices; the account you are assigning holds 1,234 "
        "recordings from 3 devices",
        "name mismatch: the requester is \u201cLena Vogel\u201d; the account holder is "
        "\u201cJonas Keller\u201d",
        "email mismatch: the requester's address is lena@example.de; the address on file for "
        "the account is jonas@example.de",
        "the account you are assigning is also the subject of request prq_x (pending): two "
        "requests in review for one account at once is how packages get swapped",
    ]
    unverified = RequesterSignals("email", "LENA VOGEL ", "Lena@Example.de", False, None)
    assert assignment_warnings(unverified, own, []) == [
        "the requester's identity is not verified: the code sent to the address has not "
        "been answered"]


async def test_an_account_holder_files_an_erasure_and_reads_its_result(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env, web_client(env) as web:
        h = await household(env, "Erika Mustermann", "erika@example.de", recordings=4, seed=7,
                            samples=320)
        await web.sign_in("privacy", h.user_token)
        status_code, where = await web.post("/privacy/requests", kind="erasure")
        assert status_code == 303
        rid = where.rsplit("/", 1)[-1]
        assert (await status(env, rid, h.user_token, wait=30))["status"] == "complete"
        page = (await web.get(where))[1]
        assert "the erasure of my voice data" in page and "complete" in page
        assert "No recordings are stored" in (await web.get("/privacy/recordings"))[1]
        # Another account's request is not found from this session, like a missing one.
        other = await household(env, "Max Muster", "max@example.de", seed=8)
        _, theirs = await env.api.call("POST", "/v1/privacy/requests", token=other.user_token,
                                       json_body={"kind": "access"}, expect=201)
        assert (await web.get(f"/privacy/requests/{theirs['request_id']}"))[0] == 404
        assert (await web.get("/privacy/requests/prq_missing"))[0] == 404


def test_interactive_refuses_a_remote_backend(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simulator.cli import main
    from simulator.scenario.model import bundled_dir

    out = CliRunner().invoke(main, ["run", str(bundled_dir() / "alexa-2018-by-hand.toml"),
                                    "--interactive", "--backend", "http://127.0.0.1:9",
                                    "--admin-token", "x", "--out", str(tmp_path / "o")])
    assert out.exit_code == 2
    assert "--interactive needs the embedded backend" in out.output
