"""Keyboard shortcuts (static/app.js, listed in templates/_shortcuts.html)."""

import pytest
from playwright.async_api import expect

from tests.browser.support import focused
from tests.browser.test_journeys import HAS_SEARCH

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_alt_arrows_walk_the_room_list_and_alt_shift_arrows_only_unread_rooms(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    rooms = {name: await alice.create_room(name) for name in ("Alpha", "Bravo", "Charlie", "Delta")}
    for name in ("Alpha", "Charlie"):
        await bob.join(rooms[name])
        await bob.say(rooms[name], f"news in {name}")
    page = alice.page
    title = page.get_by_role("heading", level=1)

    await page.goto(f"/rooms/{rooms['Alpha']}")
    await page.get_by_role("textbox", name="Message").focus()  # they work while typing
    await page.keyboard.press("Alt+ArrowDown")
    await expect(title).to_have_text("Bravo")
    await page.keyboard.press("Alt+ArrowDown")
    await expect(title).to_have_text("Charlie")
    await page.keyboard.press("Alt+ArrowUp")
    await expect(title).to_have_text("Bravo")
    await page.keyboard.press("Alt+ArrowUp")
    await expect(title).to_have_text("Alpha")
    await bob.say(rooms["Alpha"], "more news in Alpha")  # Alpha is the one unread room now
    await page.keyboard.press("Alt+ArrowUp")  # wraps around
    await expect(title).to_have_text("Delta")

    await page.keyboard.press("Alt+Shift+ArrowDown")
    await expect(title).to_have_text("Alpha")
    await expect(alice.messages().last).to_contain_text("more news in Alpha")
    await page.keyboard.press("Alt+Shift+ArrowUp")
    await expect(title).to_have_text("Alpha")  # nothing unread anywhere: stays


async def test_help_dialog_opens_with_question_mark_and_esc_returns_focus(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("Quiet")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    composer = page.get_by_role("textbox", name="Message")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")

    await composer.focus()
    await page.keyboard.type("? and / are just text here")
    await expect(composer).to_have_value("? and / are just text here")
    await expect(dialog).to_be_hidden()

    await page.get_by_role("button", name="Keyboard shortcuts").focus()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await alice.assert_accessible()
    await alice.screenshot("shortcuts")
    await page.keyboard.press("Enter")  # on Close
    await expect(dialog).to_be_hidden()
    assert (await focused(page))["name"] == "Keyboard shortcuts"

    await page.locator("#messages").focus()
    await page.keyboard.press("?")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert (await focused(page))["id"] == "messages"

    if HAS_SEARCH:
        await page.keyboard.press("/")
        assert (await focused(page))["id"] == "search-q"
