"""Replies and direct messages in Chromium: by keyboard, live, and without JavaScript."""

import re

import pytest
from playwright.async_api import expect

from tests.browser.support import focused, press, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ORIGINAL = "Shall we <b>ship</b> on Friday?"


async def test_replying_by_keyboard_quotes_the_message_live_for_both(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Plans")
    await bob.join(room_id)
    await bob.say(room_id, ORIGINAL)
    await bob.page.goto(f"/rooms/{room_id}")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")

    await tab_to(page, "Reply to bob")
    await page.keyboard.press("Enter")
    assert (await focused(page))["id"] == "composer-body"
    bar = page.locator("[data-reply-bar]")
    await expect(bar).to_be_visible()
    await expect(bar).to_contain_text(f"Replying to @bob: {ORIGINAL}")
    await page.keyboard.type("Friday it is")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("textbox", name="Message Plans")).to_have_value("")
    await expect(bar).to_be_hidden()
    for person in (alice, bob):
        await person.expect_messages([ORIGINAL, "Friday it is"])
        quote = person.messages().nth(1).locator(".reply-quote")
        await expect(quote).to_have_text(re.compile(rf"bob wrote:\s+{re.escape(ORIGINAL)}"))

    # Cancel, by keyboard: the bar sits just before the text box.
    await tab_to(page, "Reply to alice", key="Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(bar).to_contain_text("Replying to @alice: Friday it is")
    assert (await press(page, "Shift+Tab"))["name"] == "Cancel reply"
    await page.keyboard.press("Enter")
    await expect(bar).to_be_hidden()
    assert (await focused(page))["id"] == "composer-body"
    await page.keyboard.type("no quote here")
    await page.keyboard.press("Enter")
    await expect(alice.messages()).to_have_count(3)
    await expect(alice.messages().nth(2).locator(".reply-quote")).to_have_count(0)

    # The quote's link opens the original.
    await bob.messages().nth(1).get_by_role("link", name="bob wrote").click()
    await expect(bob.page).to_have_url(re.compile(rf"/rooms/{room_id}\?at=1#message-1$"))
    await alice.assert_nothing_executed()
    await bob.assert_nothing_executed()


async def test_starting_a_direct_message_from_the_member_list_and_the_rooms_page(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Lobby")
    await bob.join(room_id)
    await alice.page.goto(f"/rooms/{room_id}")

    await tab_to(alice.page, "Message bob")
    await alice.page.keyboard.press("Enter")
    await expect(alice.page.get_by_role("heading", level=1)).to_have_text("bob")
    await alice.page.get_by_role("textbox", name="Message bob").fill("Just between us")
    await alice.page.keyboard.press("Enter")
    await expect(alice.page).to_have_url(re.compile(r"/rooms/\d+#message-1$"))
    await alice.expect_messages(["Just between us"])
    direct_url = alice.page.url.split("#")[0]

    await bob.page.goto("/")
    await expect(bob.page.locator("a[data-room-link]", has_text="alice")).to_contain_text(
        "1 unread"
    )
    await bob.page.get_by_label("Person to write to").fill("alice")
    await bob.page.get_by_role("button", name="Open conversation").click()
    await expect(bob.page).to_have_url(direct_url)
    await bob.expect_messages(["Just between us"])
    await bob.page.get_by_role("textbox", name="Message alice").fill("Sure")
    await bob.page.keyboard.press("Enter")
    await alice.expect_messages(["Just between us", "Sure"])


async def test_replies_and_direct_messages_work_without_javascript(browse):
    alice = await (await browse(javascript=False)).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Quiet room")
    await bob.join(room_id)
    await bob.say(room_id, "Anyone here?")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")

    await page.get_by_role("link", name="Reply to bob").click()
    await expect(page.locator("[data-reply-bar]")).to_contain_text("Replying to @bob: Anyone here?")
    await page.get_by_role("textbox", name="Message Quiet room").fill("I am")
    await page.get_by_role("button", name="Send").click()
    await expect(alice.messages().nth(1).locator(".reply-quote")).to_contain_text(
        "bob wrote: Anyone here?"
    )
    await expect(page.locator("[data-reply-bar]")).to_be_hidden()

    await page.goto("/")
    await page.get_by_label("Person to write to").fill("bob")
    await page.get_by_role("button", name="Open conversation").click()
    await page.get_by_role("textbox", name="Message bob").fill("Psst")
    await page.get_by_role("button", name="Send").click()
    await alice.expect_messages(["Psst"])
    await expect(page.get_by_role("heading", level=1)).to_have_text("bob")
