"""Chromium, launched once per test session; a fresh browser context per person per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.browser.daily import daily_people, daily_server, visit  # noqa: F401 (fixtures)
from tests.browser.support import WATCH_SCRIPT, Visitor
from tests.support import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
HAS_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def backend() -> str:
    """What a browser sees does not depend on the backend: SQLite keeps the suite fast."""
    return "sqlite"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAS_CHROMIUM:
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (`make test` installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browse(
    browser: Browser, live_server: LiveServer
) -> AsyncIterator[Callable[..., Awaitable[Visitor]]]:
    """browse() → a Visitor on the live server's login page, in a context of their own.
    Any uncaught script error on any page fails the test."""
    contexts = []
    page_errors: list[str] = []

    async def open_context(*, javascript: bool = True) -> Visitor:
        context = await browser.new_context(
            base_url=live_server.url, java_script_enabled=javascript, viewport=VIEWPORT
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        await context.add_init_script(script=WATCH_SCRIPT)
        page = await context.new_page()
        page.on("pageerror", lambda error: page_errors.append(error.stack or str(error)))
        await page.goto("/login")
        return Visitor(page, live_server.url)

    yield open_context
    for context in contexts:
        await context.close()
    assert not page_errors, "\n\n".join(page_errors)
