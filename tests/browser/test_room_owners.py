"""A room always keeps an owner; Leave and Remove ask first (issue 22), by keyboard, with
and without JavaScript, at a desktop's 1280x800 and a phone's 390x844."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.daily import PHONE, WIDE, room_of_three
from tests.browser.support import focused, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_the_only_owner_is_told_to_make_someone_owner_then_may_leave(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"owners {viewport['width']}", visibility="private")
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


async def test_removing_a_member_asks_in_a_dialog_and_cancel_changes_nothing(visit, daily_people):
    room_id = room_of_three(daily_people, "removals", visibility="private")
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


async def test_without_javascript_leave_and_remove_open_a_confirmation_page(visit, daily_people):
    room_id = room_of_three(daily_people, "no script", visibility="private")
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
