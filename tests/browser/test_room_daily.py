"""The room page as people use it every day (issue 22), in Chromium at a desktop's
1280x800 and a phone's 390x844, on one server per module with a room of 70 messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from tests.browser.daily import PHONE, WIDE, Seeder, seeded, sign_in, start_server
from tests.browser.support import Visitor, focused, tab_to
from tests.support import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
def server(migrated_sqlite, tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(migrated_sqlite, tmp_path_factory.mktemp("daily"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def people(server: LiveServer) -> Iterator[dict[str, Seeder]]:
    yield from seeded(server)


@pytest_asyncio.fixture(loop_scope="session")
async def visit(
    browser: Browser, server: LiveServer, people: dict[str, Seeder]
) -> AsyncIterator[Callable[..., Awaitable[Visitor]]]:
    """visit("alice", viewport=PHONE, dark=True) → alice signed in, in a context of her own.
    Any uncaught script error fails the test."""
    visitors: list[Visitor] = []

    async def open_as(username: str, **options: object) -> Visitor:
        visitor = await sign_in(browser, server, username, **options)
        visitors.append(visitor)
        return visitor

    yield open_as
    errors = [error for visitor in visitors for error in visitor.page.script_errors]
    for visitor in visitors:
        await visitor.page.context.close()
    assert not errors, "\n\n".join(errors)


def room_with_three(people: dict[str, Seeder], name: str) -> int:
    room_id = people["alice"].create_room(name, "private")
    for other in ("bob", "carol"):
        added = people["alice"].post(f"/rooms/{room_id}/members", {"username": other})
        assert added.status_code == 303
    return room_id


# --- ownership: a room always keeps an owner; Leave and Remove ask first ----------------


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_the_only_owner_is_told_to_make_someone_owner_then_may_leave(visit, people, viewport):
    room_id = room_with_three(people, f"owners {viewport['width']}")
    alice = await visit("alice", viewport=viewport)
    page = alice.page
    await page.goto(f"/rooms/{room_id}")

    # By keyboard: the Leave link opens a dialog that explains, with only Close.
    leave = page.get_by_role("link", name="Leave room")
    await leave.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("You are the only owner")
    await expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    await expect(dialog.get_by_role("button", name="Leave", exact=False)).to_have_count(0)
    await alice.assert_accessible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(leave).to_be_focused()

    # Make bob owner (a button per member, owners only), then Leave asks and leaves.
    await page.get_by_role("button", name="Make owner bob").click()
    await expect(page.locator(".members li", has_text="bob").locator(".tag")).to_have_text("owner")
    await page.get_by_role("link", name="Leave room").click()
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    assert (await focused(page))["name"].startswith("Leave owners")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")
    assert (await page.goto(f"/rooms/{room_id}")).status == 404


async def test_removing_a_member_asks_in_a_dialog_and_cancel_changes_nothing(visit, people):
    room_id = room_with_three(people, "removals")
    alice = await visit("alice")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    remove = page.get_by_role("link", name="Remove carol")
    await remove.click()
    dialog = page.get_by_role("dialog", name="Remove carol?")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(remove).to_be_focused()
    await expect(page.locator(".members li", has_text="carol")).to_have_count(1)
    await remove.press("Enter")
    await dialog.get_by_role("button", name="Remove carol").click()
    await expect(page.locator(".members li", has_text="carol")).to_have_count(0)


async def test_without_javascript_leave_and_remove_open_a_confirmation_page(visit, people):
    room_id = room_with_three(people, "no script")
    alice = await visit("alice", javascript=False)
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await page.get_by_role("link", name="Remove bob").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Remove bob from no script?")
    await page.get_by_role("button", name="Remove bob").click()
    await expect(page.locator(".members li", has_text="bob")).to_have_count(0)
    await page.get_by_role("link", name="Leave room").click()
    await expect(page.get_by_text("You are the only owner of no script")).to_be_visible()
    await tab_to(page, "Back to no script")
