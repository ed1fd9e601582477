"""The operator console and the privacy center in a real Chromium.

A person's hands are simulated by Playwright clicking through the pages; everything behind
the pages is real: an embedded backend on port 0, its SQLite file, the export job, the zip,
and (for the 2018 case) the scenario runner and the auditor.
"""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from browser_support import Browser, axe_violations, browser, shoot, sign_in
from conftest import ADMIN_TOKEN
from playwright.async_api import Page, expect
from privacy_support import Env, Household, add_recordings, household, privacy_env, status

from backend.web.pages import SESSIONS
from contract.audio import RATE
from simulator.scenario.interactive import Handoff
from simulator.scenario.model import bundled_dir, load_scenario
from simulator.scenario.runner import run_scenario

pytestmark = pytest.mark.browser

GUARDED = {"export.ownership_check": {}}


async def _operator(env: Env, name: str = "Operator A") -> str:
    _, body = await env.api.call("POST", "/v1/operators", json_body={"name": name}, expect=201)
    return str(body["operator_token"])


async def _file_signed_in(env: Env, h: Household) -> str:
    _, body = await env.api.call("POST", "/v1/privacy/requests", token=h.user_token,
                                 json_body={"kind": "access"}, expect=201)
    return str(body["request_id"])


async def _two_in_review(env: Env) -> tuple[Household, Household, str, str]:
    """The 2018 shape: a requester with no device and a couple's household with recordings
    from two devices, both asking at once, both waiting for an operator."""
    acc = await env.api.create_account(name="Lukas Brandt", email="lukas.brandt@example.de")
    requester = Household(acc["account_id"], acc["user_token"], "lukas.brandt@example.de",
                          "Lukas Brandt")
    stranger = await household(env, "Jonas Keller", "jonas.keller@example.de", recordings=20,
                               seed=3, samples=320)
    second = await env.api.register_device(stranger.account_id, "G0SECOND01", room="Bedroom")
    stranger.device_id, stranger.serial = second["device_id"], "G0SECOND01"
    await add_recordings(env, stranger, 15, seed=4, samples=320)
    return requester, stranger, await _file_signed_in(env, requester), \
        await _file_signed_in(env, stranger)


async def _assign(page: Page, base: str, rid: str, search: str, account_id: str) -> list[str]:
    """At the request page: search, assign the account, confirm. Returns the warnings the
    confirmation page showed for the assignment."""
    await page.goto(f"{base}/console/requests/{rid}")
    await page.get_by_label("Search accounts by name or email").fill(search)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("button", name=re.compile(f"Assign .*{account_id}")).click()
    warnings = await page.locator(".warnings li").all_inner_texts()
    await page.get_by_role("button", name="Yes, assign").click()
    await expect(page.locator(".notice")).to_contain_text("Assigned account")
    return warnings


async def _approve(page: Page, base: str, rid: str) -> None:
    """At the request page: approve, confirm."""
    await page.goto(f"{base}/console/requests/{rid}")
    await page.get_by_role("button", name="Approve…").click()
    await page.get_by_role("button", name="Yes, approve").click()
    await expect(page.locator(".notice")).to_contain_text(rid)


async def _assign_and_approve(page: Page, base: str, rid: str, search: str,
                              account_id: str) -> list[str]:
    warnings = await _assign(page, base, rid, search, account_id)
    await _approve(page, base, rid)
    return warnings


# -- the 2018 swap, by hand ---------------------------------------------------------------

async def _await_handoff(run: asyncio.Task[Any], handoffs: asyncio.Queue[Handoff]) -> Handoff:
    """The console handoff, or the run's own failure if it ends before reaching it."""
    got = asyncio.ensure_future(handoffs.get())
    done, _ = await asyncio.wait({run, got}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
    if got not in done:
        got.cancel()
        if run in done:
            run.result()  # raises what went wrong
        pytest.fail("the run never reached the operator step")
    return got.result()


async def _request_of(page: Page, base: str, *, devices: int) -> tuple[str, str]:
    """The queued request whose requester's own account has ``devices`` devices: (request
    id, requester's name), read off the console as a person would."""
    await page.goto(f"{base}/console/?view=review")
    ids = await page.locator("table.queue tbody tr td:first-child a").all_inner_texts()
    for rid in ids:
        await page.goto(f"{base}/console/requests/{rid}")
        facts = page.locator("section[aria-labelledby='req-h'] dl.facts").nth(1)
        if int(await facts.locator("dt:text-is('Devices') + dd").inner_text()) == devices:
            name = await facts.locator("dt:text-is('Name') + dd").inner_text()
            return rid, name
    raise AssertionError(f"no request in review has a requester with {devices} devices")


async def test_operator_reproduces_the_2018_swap_by_hand_and_the_auditor_finds_it(
        tmp_path: Path) -> None:
    """``run --interactive`` on the 2018 case: the person at the console attaches the
    stranger couple's account to the requester's request and approves; the run carries on
    by itself once the queue is empty, and the report finds 1,700 recordings of 2 people."""
    scenario = load_scenario(bundled_dir() / "alexa-2018-by-hand.toml")
    handoffs: asyncio.Queue[Handoff] = asyncio.Queue()

    async def announce(h: Handoff) -> None:
        await handoffs.put(h)

    run = asyncio.create_task(run_scenario(scenario, tmp_path / "run", progress=False,
                                           interactive=announce))
    try:
        h = await _await_handoff(run, handoffs)
        base = h.console_url.removesuffix("/console/")
        async with browser(tmp_path) as b:
            page = b.page
            await sign_in(page, base, "console", h.operator_token)
            await expect(page.locator("h1")).to_have_text("Review queue")
            await expect(page.locator(".banner")).to_contain_text("waiting for you")
            mine, _ = await _request_of(page, base, devices=0)
            theirs, stranger = await _request_of(page, base, devices=2)
            stranger_account = await page.locator(
                "section[aria-labelledby='req-h'] dl.facts").nth(1).locator(
                "dt:text-is('Account') + dd a").inner_text()
            warnings = await _assign(page, base, mine, stranger.split()[-1], stranger_account)
            assert ("this requester has no devices; the account you are assigning holds "
                    "1,700 recordings from 2 devices") in warnings
            assert any(w.startswith("name mismatch") for w in warnings)
            assert any(w.startswith("email mismatch") for w in warnings)
            assert any(w.startswith("this is not the requester's own account") for w in warnings)
            assert any(w.startswith("the account you are assigning is also the subject")
                       for w in warnings)
            await page.goto(f"{base}/console/requests/{mine}")
            await expect(page.locator(".warnings")).to_contain_text("1,700 recordings")
            await shoot(page, "console-request-2018")
            await _approve(page, base, mine)
            # The stranger's own request is approved as it should be: the queue empties and
            # the run carries on without anyone pressing Done.
            await _approve(page, base, theirs)
            assert b.watch.dialogs == [] and b.watch.csp_violations() == []
        result = await asyncio.wait_for(run, 300)
    finally:
        if not run.done():
            run.cancel()
    assert result.verdict == "fail"
    [leak] = json.loads((tmp_path / "run" / "report.json").read_text())["leaks"]
    assert leak["from_household"] == "stranger" and leak["to_household"] == "requester"
    assert leak["recordings"] == 1700 and leak["data_subjects"] == 2
    assert any(t.what.startswith(f"Operator A: ops.request.assigned {mine}")
               and "account_id stranger's account" in t.what for t in result.timeline)


# -- the guard in the console --------------------------------------------------------------

async def test_with_the_ownership_guard_the_console_shows_the_warning_and_the_alert(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",), guards=GUARDED) as env:
        requester, stranger, mine, _theirs = await _two_in_review(env)
        token = await _operator(env)
        base = env.handle.url
        async with browser(tmp_path) as b:
            page = b.page
            # The one-time link an interactive run prints: it signs in once.
            nonce = env.app[SESSIONS].one_time("console", token)
            await page.goto(f"{base}/console/signin/once/{nonce}")
            await expect(page.locator("h1")).to_have_text("Review queue")
            warnings = await _assign_and_approve(page, base, mine, "Keller",
                                                 stranger.account_id)
            assert ("this requester has no devices; the account you are assigning holds 35 "
                    "recordings from 2 devices") in warnings
            settled = await status(env, mine, requester.user_token, wait=30)
            assert settled["status"] == "pending"  # quarantined: back to review
            await page.goto(f"{base}/console/requests/{mine}")
            alerts = page.locator(".alerts [role=alert]")
            await expect(alerts).to_have_count(1)
            await expect(alerts).to_contain_text("export.ownership_check")
            await expect(alerts).to_contain_text("quarantined")
            await page.goto(f"{base}/console/")
            row = page.locator("table.queue tr", has_text=mine)
            await expect(row.locator(".badge")).to_have_text("1")
            assert b.watch.dialogs == []


# -- the privacy center ---------------------------------------------------------------------

async def _code_from_outbox(b: Browser, base: str, email: str) -> str:
    """Read the newest code sent to ``email`` off the console's outbox page (as admin)."""
    page = await b.new_page()
    await sign_in(page, base, "console", ADMIN_TOKEN)
    await page.goto(f"{base}/console/admin/outbox?to={email}")
    code = await page.locator(".mail .code").first.inner_text()
    await page.close()
    return code


async def test_privacy_center_email_code_status_download_and_voice_history(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        erika = await household(env, "Erika Mustermann", "erika@example.de", recordings=12,
                                seed=9, samples=RATE)
        base = env.handle.url
        async with browser(tmp_path) as b:
            page = b.page
            await page.goto(f"{base}/privacy/")
            await expect(page).to_have_url(f"{base}/privacy/signin")
            await page.get_by_label("Email address of the account").fill(erika.email)
            await page.get_by_label("Your name").fill(erika.name)
            await page.get_by_label(re.compile("a copy of my data")).check()
            await page.get_by_role("button", name="Send me a code").click()
            await expect(page.locator("h2", has_text="Confirm it is you")).to_be_visible()
            rid = page.url.rsplit("/", 1)[-1]
            code = await _code_from_outbox(b, base, erika.email)
            await page.get_by_label("The 6-digit code from the email").fill(code)
            await page.get_by_role("button", name="Confirm").click()
            await expect(page.locator(".notice")).to_contain_text("Confirmed")
            for _ in range(50):  # the export job runs in the backend; bounded
                await page.reload()
                if await page.get_by_role("button", name="Download the package").count():
                    break
                await asyncio.sleep(0.1)
            async with page.expect_download() as dl:
                await page.get_by_role("button", name="Download the package").click()
            path = tmp_path / "package.zip"
            await (await dl.value).save_as(path)
            with zipfile.ZipFile(path) as zf:
                manifest = json.loads(zf.read("manifest.json"))
                wavs = [n for n in zf.namelist() if n.endswith(".wav")]
            assert manifest["account_id"] == erika.account_id
            assert len(wavs) == 12
            await page.goto(f"{base}/privacy/requests/{rid}")
            released = page.locator("section[aria-labelledby='rel-h']")
            await expect(released).to_contain_text("12 recordings")
            await expect(released).to_contain_text("Download attempt at")
            await expect(released).to_contain_text("served")
            await shoot(page, "privacy-center-request")
            # Signing in with the account's token keeps the request and adds the history.
            await sign_in(page, base, "privacy", erika.user_token)
            await expect(page.locator("table")).to_contain_text(rid)
            await page.get_by_role("link", name="My voice history").click()
            await expect(page.locator(".transcript")).to_have_count(12)
            await shoot(page, "privacy-center-voice-history")
            audio = await page.request.get(
                base + await page.locator("audio").first.get_attribute("src"))
            assert audio.status == 200 and (await audio.body())[:4] == b"RIFF"
            assert b.watch.dialogs == [] and b.watch.csp_violations() == []


# -- CSRF, cookies, CSP ---------------------------------------------------------------------

async def test_a_form_post_without_its_csrf_token_is_refused(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        requester, _stranger, mine, _ = await _two_in_review(env)
        token = await _operator(env)
        base = env.handle.url
        async with browser(tmp_path) as b:
            await sign_in(b.page, base, "console", token)
            csrf = await b.page.locator("input[name=csrf]").first.get_attribute("value")
            api = b.context.request  # shares the browser's cookies: a signed-in session
            for form in ({"confirm": "yes"}, {"confirm": "yes", "csrf": "forged"},
                         {"confirm": "yes", "csrf": ""}):
                resp = await api.post(f"{base}/console/requests/{mine}/approve", form=form)
                assert resp.status == 403, form
                assert "CSRF" in await resp.text()
            for path, form in (("/console/signin", {"token": token}),
                               ("/privacy/signin", {"token": requester.user_token}),
                               ("/privacy/email", {"email": requester.email, "kind": "access"})):
                resp = await api.post(base + path, form=form)
                assert resp.status == 403, path
            _, queue = await env.api.call("GET", "/v1/ops/requests?status=pending",
                                          token=token, expect=200)
            assert mine in [r["request_id"] for r in queue["requests"]]  # nothing happened
            # The same post with the session's token goes through.
            resp = await api.post(f"{base}/console/requests/{mine}/approve",
                                  form={"confirm": "yes", "csrf": str(csrf)})
            assert resp.status == 200
            settled = await status(env, mine, requester.user_token, wait=30)
            assert settled["status"] == "complete"


async def test_session_cookie_flags_csp_and_sign_out(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        base = env.handle.url
        async with browser(tmp_path) as b:
            page = b.page
            resp = await page.goto(f"{base}/console/signin")
            assert resp is not None
            csp = resp.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert resp.headers["cache-control"] == "no-store"
            before = {c["name"]: c for c in await b.context.cookies()}["overheard_console"]
            await sign_in(page, base, "console", ADMIN_TOKEN)
            cookies = {c["name"]: c for c in await b.context.cookies()}
            after = cookies["overheard_console"]
            assert after["httpOnly"] is True and after["sameSite"] == "Strict"
            assert after["path"] == "/console/"
            assert after["value"] != before["value"]  # a new id at sign-in: no fixation
            assert await page.evaluate("document.cookie") == ""  # out of reach of scripts
            await page.goto(f"{base}/console/admin/health")
            await expect(page.locator(".notice")).to_contain_text("ok")
            await page.get_by_role("button", name="Sign out").click()
            await expect(page).to_have_url(f"{base}/console/signin")
            # The old session id is dead on the server, not just forgotten by the browser.
            replay = await b.context.request.get(
                f"{base}/console/admin/health", max_redirects=0,
                headers={"Cookie": f"overheard_console={after['value']}"})
            assert replay.status == 303 and replay.headers["location"] == "/console/signin"
            assert b.watch.csp_violations() == []


# -- hostile text ---------------------------------------------------------------------------

HOSTILE_NAME = "<script>alert('name')</script> Müller"
HOSTILE_TRANSCRIPT = "<img src=x onerror=alert('transcript')> wie wird das Wetter"
HOSTILE_TYPED = "\"><svg onload=alert('typed')>"


async def test_hostile_names_and_transcripts_render_as_text_and_nothing_runs(
        tmp_path: Path) -> None:
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        victim = await household(env, HOSTILE_NAME, "mueller@example.de", recordings=2,
                                 seed=21, samples=320, transcripts=[HOSTILE_TRANSCRIPT] * 2)
        rid = await _file_signed_in(env, victim)
        _, typed = await env.api.call("POST", "/v1/privacy/requests", token=None, json_body={
            "kind": "access", "email": "someone@example.de", "name": HOSTILE_TYPED}, expect=201)
        token = await _operator(env)
        base = env.handle.url
        async with browser(tmp_path) as b:
            page = b.page
            await sign_in(page, base, "console", token)
            await expect(page.locator("table.queue")).to_contain_text(HOSTILE_NAME)
            await expect(page.locator("table.queue")).to_contain_text(HOSTILE_TYPED)
            await page.goto(f"{base}/console/requests/{rid}?q=M%C3%BCller")
            await expect(page.locator("section[aria-labelledby='req-h']")).to_contain_text(
                HOSTILE_NAME)
            await expect(page.locator("table")).to_contain_text(HOSTILE_NAME)
            await page.goto(f"{base}/console/requests/{typed['request_id']}")
            await expect(page.locator("section[aria-labelledby='req-h']")).to_contain_text(
                HOSTILE_TYPED)
            privacy = await b.new_page()
            await sign_in(privacy, base, "privacy", victim.user_token)
            await privacy.goto(f"{base}/privacy/recordings")
            await expect(privacy.locator(".transcript").first).to_have_text(HOSTILE_TRANSCRIPT)
            for p in (page, privacy):
                assert await p.locator("script:not([src]), img[src=x], svg").count() == 0
            assert b.watch.dialogs == []
            assert b.watch.csp_violations() == []


# -- accessibility --------------------------------------------------------------------------

async def test_main_pages_have_no_serious_accessibility_violations(tmp_path: Path) -> None:
    """axe-core (vendored) over the main pages, at desktop and phone width."""
    async with privacy_env(tmp_path, manual_review=("access",)) as env:
        _requester, stranger, mine, theirs = await _two_in_review(env)
        token = await _operator(env)
        base = env.handle.url
        # axe is injected as a script: the CSP (rightly) forbids that, so this context skips it.
        async with browser(tmp_path, bypass_csp=True) as b:
            page = b.page
            found: dict[str, list[dict[str, Any]]] = {}

            async def check(label: str) -> None:
                for size in ({"width": 1280, "height": 900}, {"width": 390, "height": 844}):
                    await page.set_viewport_size(size)
                    bad = await axe_violations(page)
                    if bad:
                        found[f"{label} @{size['width']}"] = bad

            await page.goto(f"{base}/console/signin")
            await check("console sign-in")
            await sign_in(page, base, "console", token)
            await check("queue")
            await page.goto(f"{base}/console/requests/{mine}?q=Keller")
            await check("request page")
            await page.get_by_role("button", name=re.compile(
                f"Assign .*{stranger.account_id}")).click()
            await check("confirmation")
            await page.goto(f"{base}/console/accounts?q=Keller")
            await check("account search")
            await sign_in(page, base, "console", ADMIN_TOKEN)
            for path in ("", "alerts", "audit?verify=1", "outbox", "health"):
                await page.goto(f"{base}/console/admin/{path}")
                await check(f"admin {path or 'switches'}")
            await page.goto(f"{base}/privacy/signin")
            await check("privacy sign-in")
            await sign_in(page, base, "privacy", stranger.user_token)
            await check("privacy home")
            await page.goto(f"{base}/privacy/recordings")
            await check("voice history")
            await page.goto(f"{base}/privacy/requests/{theirs}")
            await check("privacy request")
            assert found == {}, found
