"""Editing, reacting and deleting, by keyboard, seen live in another person's tab."""

import pytest
from playwright.async_api import expect

from tests.browser.support import focused, press

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

MORE = "More actions for this message"


async def open_menu(person, message):
    """Arrow to the message in the log, Tab to its More button, Enter."""
    await person.page.locator("#messages").focus()
    await press(person.page, "ArrowUp")
    while (await focused(person.page))["name"] != MORE:
        await press(person.page, "Tab")
    await press(person.page, "Enter")
    await expect(message.locator(".message-menu")).to_be_visible()
    # Until htmx has taken over the menu's controls, Enter on one would follow its plain link.
    await person.page.wait_for_function(
        """() => [...document.querySelectorAll(".message-menu [hx-get], .message-menu [hx-post]")]
            .every((control) => control["htmx-internal-data"])"""
    )


async def test_edit_react_and_delete_by_keyboard_reach_the_other_tab_live(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "helo evryone")
    for person in (alice, bob):
        await person.page.goto(f"/rooms/{room_id}")
    alice.page.on("dialog", lambda dialog: dialog.accept())
    message = alice.messages().first

    # Alice edits her message: More → Edit, type, Enter.
    await open_menu(alice, message)
    await message.get_by_role("link", name="Edit").focus()
    await press(alice.page, "Enter")
    field = alice.page.get_by_role("textbox", name="Edit your message")
    await expect(field).to_be_focused()
    await field.fill("hello everyone")
    await press(alice.page, "Enter")
    await expect(alice.messages().locator(".body")).to_have_text(["hello everyone"])
    await expect(bob.messages().locator(".body")).to_have_text(["hello everyone"])
    await expect(bob.messages().locator(".edited")).to_have_text(["(edited)"])

    # Bob's menu on alice's message offers reactions, not Edit or Delete.
    await open_menu(bob, bob.messages().first)
    menu = bob.messages().first.locator(".message-menu")
    await expect(menu.get_by_role("link", name="Edit")).to_have_count(0)
    await expect(menu.get_by_role("button", name="Delete")).to_have_count(0)
    await bob.assert_accessible()
    # The first control has focus; Enter reacts with a thumbs up.
    assert (await focused(bob.page))["name"] == "React with thumbs up"
    await press(bob.page, "Enter")
    for person, pressed in ((bob, "true"), (alice, "false")):
        reaction = person.messages().first.locator(".reactions .reaction")
        await expect(reaction).to_have_accessible_name("👍 1: bob. Toggle your reaction")
        await expect(reaction).to_have_attribute("aria-pressed", pressed)

    # Alice deletes it; it stays in its place for bob, as "Message deleted".
    await open_menu(alice, message)
    await message.get_by_role("button", name="Delete").focus()
    await press(alice.page, "Enter")
    await expect(bob.messages().locator(".body")).to_have_text(["Message deleted"])
    await expect(alice.messages().locator(".body")).to_have_text(["Message deleted"])
    await expect(bob.messages().locator(".reactions")).to_have_count(0)
    for person in (alice, bob):
        await person.assert_nothing_executed()
        await person.assert_accessible()


async def test_a_reaction_whose_frame_comes_before_its_own_reply_keeps_the_focus(browse):
    """Under load the stream's frame of a change can reach the tab that made it before
    the answer to its request: the open menu moves into the fresh message, and the
    focus it holds must come along."""
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "react to this")
    await bob.page.goto(f"/rooms/{room_id}")
    reaction = bob.messages().first.locator(".reactions .reaction")

    async def answer_after_the_frame(route):
        response = await route.fetch()
        await expect(reaction).to_have_count(1)  # the frame is in
        await route.fulfill(response=response)

    await bob.page.route("**/reactions", answer_after_the_frame)
    await open_menu(bob, bob.messages().first)
    assert (await focused(bob.page))["name"] == "React with thumbs up"
    await bob.page.keyboard.press("Enter")
    await expect(reaction).to_have_count(1)
    assert (await focused(bob.page))["name"] == "React with thumbs up"
    await bob.page.wait_for_load_state("networkidle")
    await expect(reaction).to_have_attribute("aria-pressed", "true")
    focus = await focused(bob.page)
    assert (
        await bob.page.evaluate("document.activeElement.closest('.message')?.id") == "message-1"
    ), focus


async def test_the_log_is_one_tab_stop_and_arrows_move_between_messages(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("general")
    for n in range(1, 6):
        await alice.say(room_id, f"message {n}")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await page.get_by_role("textbox", name="Message").focus()
    # Back from the composer: the newest message's links, then the log itself.
    stops = [(await press(page, "Shift+Tab"))["name"] for _ in range(4)]
    assert stops == ["Reply to alice", MORE, "Link to this message", "Messages in general"]
    await press(page, "ArrowUp")
    await press(page, "ArrowUp")
    assert await page.evaluate("document.activeElement.dataset.seq") == "4"
    await press(page, "ArrowDown")
    assert await page.evaluate("document.activeElement.dataset.seq") == "5"
    await press(page, "ArrowUp")
    await press(page, "Tab")
    await press(page, "Tab")
    assert (await focused(page))["name"] == MORE
    await press(page, "Enter")
    await expect(alice.messages().nth(3).locator(".message-menu")).to_be_visible()
    await press(page, "Escape")
    await expect(page.locator(".message-menu")).to_have_count(0)
    assert (await focused(page))["name"] == MORE


async def test_escape_cancels_an_edit_and_keeps_the_text(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("general")
    await alice.say(room_id, "keep me")
    await alice.page.goto(f"/rooms/{room_id}")
    message = alice.messages().first
    await message.get_by_role("button", name=MORE).click()
    await message.get_by_role("link", name="Edit").click()
    field = alice.page.get_by_role("textbox", name="Edit your message")
    await field.fill("changed my mind")
    await field.press("Escape")
    await expect(alice.messages().locator(".body")).to_have_text(["keep me"])
    await expect(alice.messages().locator(".edited")).to_have_count(0)


async def test_without_javascript_the_menu_is_a_page(browse):
    alice = await (await browse(javascript=False)).sign_up("alice")
    room_id = await alice.create_room("general")
    await alice.say(room_id, "no scripts here")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await alice.messages().first.get_by_role("link", name=MORE).click()
    await page.get_by_role("button", name="React with party").click()
    await page.goto(f"/rooms/{room_id}")
    await expect(alice.messages().locator(".reaction")).to_have_text(["🎉 1"])
    await alice.messages().first.get_by_role("link", name=MORE).click()
    await page.get_by_role("link", name="Edit").click()
    await page.get_by_role("textbox", name="Edit your message").fill("still no scripts")
    await page.get_by_role("button", name="Save").click()
    await expect(alice.messages().locator(".body")).to_have_text(["still no scripts"])


async def test_quotes_of_a_message_follow_its_edit_and_deletion_live(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "lunch at noon")
    await bob.post(f"/rooms/{room_id}/messages", {"body": "count me in", "reply_to": "1"})
    await bob.page.goto(f"/rooms/{room_id}")
    quote = bob.messages().nth(1).locator(".reply-excerpt")
    await expect(quote).to_have_text("lunch at noon")
    await alice.post(f"/rooms/{room_id}/messages/1", {"body": "lunch at one"})
    await expect(quote).to_have_text("lunch at one")
    await alice.post(f"/rooms/{room_id}/messages/1/delete")
    await expect(quote).to_have_text("message deleted")
