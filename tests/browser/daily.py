"""One server per test module for the room page's daily-use tests (issue 22): a room of
70 messages among three people, made once, and browser contexts signed in as them."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from tests.browser.support import NARROW, WATCH_SCRIPT, Visitor
from tests.support import CSRF_META, PASSWORD, LiveServer

PEOPLE = ("alice", "bob", "carol")
HISTORY = 70  # messages in "general", more than one page (50)
WIDE, PHONE = {"width": 1280, "height": 800}, NARROW


class Seeder:
    """One person by plain HTTP: fast setup, not what is under test."""

    def __init__(self, url: str, username: str) -> None:
        self.client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=30)
        self.username = username
        self.token = ""

    def post(
        self, path: str, form: dict[str, str] | None = None, files: list | None = None
    ) -> httpx.Response:
        if not self.token:
            page = self.client.get("/login", follow_redirects=True).text
            self.token = CSRF_META.search(page).group(1)
        return self.client.post(path, data={"csrf_token": self.token, **(form or {})}, files=files)

    def sign_up(self) -> Seeder:
        response = self.post("/signup", {"username": self.username, "password": PASSWORD})
        assert response.status_code == 303, response.text
        self.token = ""  # signing in gives a new CSRF secret
        return self

    def create_room(self, name: str, visibility: str = "public") -> int:
        response = self.post("/rooms", {"name": name, "visibility": visibility})
        assert response.status_code == 303, response.text
        return int(response.headers["location"].rsplit("/", 1)[1])

    def say(self, room_id: int, body: str) -> None:
        assert self.post(f"/rooms/{room_id}/messages", {"body": body}).status_code == 303


def start_server(migrated_sqlite: Path, directory: Path) -> LiveServer:
    database = directory / "chat.db"
    shutil.copyfile(migrated_sqlite, database)
    env = {
        "CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CHAT_SECRET_KEY": "test-secret-key-not-for-production",
        "CHAT_MEDIA_DIR": str(directory / "media"),
        "CHAT_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Seeding posts faster than a person; typing notices keep their own limit.
        "CHAT_RATE_LIMITS": "off",
    }
    return LiveServer(env, log_path=directory / "server.log").start()


def room_of_three(
    people: dict[str, Seeder], name: str, messages: int = 0, visibility: str = "public"
) -> int:
    """A room of alice's that bob and carol are in, with `messages` said in turn."""
    room_id = people["alice"].create_room(name, visibility)
    for other in ("bob", "carol"):
        added = people["alice"].post(f"/rooms/{room_id}/members", {"username": other})
        assert added.status_code == 303
    for n in range(1, messages + 1):
        people[PEOPLE[n % 3]].say(room_id, f"{name} message {n}")
    return room_id


def seeded(server: LiveServer) -> Iterator[dict[str, Seeder]]:
    people = {name: Seeder(server.url, name).sign_up() for name in PEOPLE}
    room_of_three(people, "general", HISTORY)
    spread_over_days(server)
    try:
        yield people
    finally:
        for person in people.values():
            person.client.close()


def spread_over_days(server: LiveServer) -> None:
    """ "general" as if it had been going for days: its first 30 messages three days ago,
    the next 30 yesterday (the last of them at 23:59 and the next at 00:00 today, in
    the browser's time zone: UTC), the rest today. The server is restarted so that no
    message is served as it was first rendered."""
    server.stop()
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    database = sqlite3.connect(server.env["CHAT_DATABASE_URL"].split("///", 1)[1])
    with database:
        for seq in range(1, HISTORY + 1):
            if seq <= 30:
                when = midnight - timedelta(days=3) + timedelta(hours=9, minutes=seq)
            elif seq <= 60:
                when = midnight - timedelta(minutes=61 - seq)
            else:
                when = min(now, midnight + timedelta(minutes=seq - 61))
            database.execute(
                "UPDATE messages SET created_at = ? WHERE room_id = 1 AND seq = ?",
                (when.strftime("%Y-%m-%d %H:%M:%S.%f"), seq),
            )
    database.close()
    server.start()


async def sign_in(
    browser: Browser,
    server: LiveServer,
    username: str,
    *,
    viewport: dict[str, int] = WIDE,
    javascript: bool = True,
    dark: bool = False,
) -> Visitor:
    context = await browser.new_context(
        base_url=server.url,
        java_script_enabled=javascript,
        viewport=viewport,
        color_scheme="dark" if dark else "light",
        timezone_id="UTC",
        locale="en-US",
    )
    context.set_default_timeout(10_000)
    await context.add_init_script(script=WATCH_SCRIPT)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(error.stack or str(error)))
    page.script_errors = errors  # checked by the module's fixture when the test ends
    response = await page.request.get("/login")
    token = CSRF_META.search(await response.text()).group(1)
    answer = await page.request.post(
        "/login",
        form={"csrf_token": token, "username": username, "password": PASSWORD},
        headers={"Origin": server.url},
        max_redirects=0,
    )
    assert answer.status == 303, await answer.text()
    return Visitor(page, server.url, username)


def room_id_of(url: str) -> int:
    return int(re.search(r"/rooms/([0-9]+)", url).group(1))


# --- fixtures (made available to every browser test module by tests/browser/conftest.py)


@pytest.fixture(scope="module")
def daily_server(
    migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One server per test module."""
    server = start_server(migrated_sqlite, tmp_path_factory.mktemp("daily"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def daily_people(daily_server: LiveServer) -> Iterator[dict[str, Seeder]]:
    """alice, bob and carol, and their room "general" of HISTORY messages."""
    yield from seeded(daily_server)


@pytest_asyncio.fixture(loop_scope="session")
async def visit(
    browser: Browser, daily_server: LiveServer, daily_people: dict[str, Seeder]
) -> AsyncIterator[Callable[..., Awaitable[Visitor]]]:
    """visit("alice", viewport=PHONE, dark=True) → alice signed in, in a context of her
    own, on the module's server. Any uncaught script error fails the test."""
    visitors: list[Visitor] = []

    async def open_as(username: str, **options: object) -> Visitor:
        visitor = await sign_in(browser, daily_server, username, **options)
        visitors.append(visitor)
        return visitor

    yield open_as
    errors = [error for visitor in visitors for error in visitor.page.script_errors]
    for visitor in visitors:
        await visitor.page.context.close()
    assert not errors, "\n\n".join(errors)
