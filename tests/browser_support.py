"""A real Chromium for the web tests: the system's ``chromium`` driven by Playwright.

Each test gets a fresh browser with an empty profile (a persistent context on a new
user-data-dir under the test's tmp dir) and a :class:`Watch` that records every JavaScript
dialog (there must never be one) and every console message (a CSP violation is one).
Screenshots for the README are written by :func:`shoot` at desktop and phone width.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Dialog, Page, async_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DOCS = Path(__file__).resolve().parent.parent / "docs"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def chromium_path() -> str:
    """The system Chromium; a missing one fails the test with what to install."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser tests need Chromium: apt-get install chromium")
    return path


@dataclass
class Watch:
    """What the page did that a test must see: dialogs and console messages."""

    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@dataclass
class Browser:
    """One browser context, its first page, and the watch over both."""

    context: BrowserContext
    page: Page
    watch: Watch

    async def new_page(self) -> Page:
        page = await self.context.new_page()
        self._observe(page)
        return page

    def _observe(self, page: Page) -> None:
        page.on("dialog", self.watch.on_dialog)
        page.on("console", lambda m: self.watch.console.append(f"{m.type}: {m.text}"))


@asynccontextmanager
async def browser(tmp_path: Path, **context: Any) -> AsyncIterator[Browser]:
    """A fresh Chromium (empty profile) with one page, at desktop width."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    async with async_playwright() as pw:
        ctx = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport=DESKTOP, accept_downloads=True, **context)
        ctx.set_default_timeout(15_000)
        try:
            watch = Watch()
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            b = Browser(ctx, page, watch)
            b._observe(page)
            yield b
        finally:
            await ctx.close()


async def shoot(page: Page, name: str) -> list[Path]:
    """Screenshots of the current page at 1280 px and at phone width, into ``docs/``.

    Ids and times differ between runs; the images are for people, not compared by tests.
    """
    DOCS.mkdir(exist_ok=True)
    out = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        path = DOCS / f"{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        out.append(path)
    await page.set_viewport_size(DESKTOP)
    return out


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))")
    return [v for v in result if v["impact"] in ("serious", "critical")]


async def sign_in(page: Page, base: str, area: str, token: str) -> None:
    """Type a token into the area's sign-in form and submit it, as a person would."""
    await page.goto(f"{base}/{area}/signin")
    await page.get_by_label(re.compile("token", re.I)).fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
