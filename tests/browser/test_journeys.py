"""What people do, in Chromium: talk live, by keyboard alone, without JavaScript, across
a server restart. Each test asserts what the person sees."""

import asyncio

import pytest
from playwright.async_api import Page, expect

from chat.routes import routes
from tests.support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

HAS_SEARCH = any(getattr(route, "name", None) == "search" for route in routes)


async def sign_up_with_the_form(page: Page, username: str) -> None:
    await page.goto("/signup")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_text(f"Signed in as {username}")).to_be_visible()


async def send(page: Page, text: str) -> None:
    await page.get_by_role("textbox", name="Message").fill(text)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("textbox", name="Message")).to_have_value("")


async def test_two_people_see_each_others_messages_live_exactly_once_in_order(browse):
    alice, bob = await browse(), await browse()
    await sign_up_with_the_form(alice.page, "alice")
    await sign_up_with_the_form(bob.page, "bob")

    await alice.page.get_by_label("Name").fill("Lunch plans")
    await alice.page.get_by_role("button", name="Create room").click()
    await expect(alice.page.get_by_role("heading", level=1)).to_have_text("Lunch plans")
    await bob.page.reload()
    await bob.page.get_by_role("button", name="Join Lunch plans").click()
    await expect(bob.page.get_by_role("heading", level=1)).to_have_text("Lunch plans")
    # A reload would lose this; the test ends by checking that nobody's page reloaded.
    for person in (alice, bob):
        await person.page.evaluate("window.__sameDocument = true")

    conversation = [
        (alice, "Noodles at noon?"),
        (bob, "Yes! The place on **Main** street?"),
        (alice, "That one."),
        (alice, "I'll book a table for two."),
        (bob, "See you there"),
    ]
    seen: list[str] = []
    for person, text in conversation:
        await send(person.page, text)
        seen.append(text.replace("**", ""))
        await alice.expect_messages(seen)
        await bob.expect_messages(seen)

    # Frames are ordered on the stream: a duplicate would arrive before this one does.
    await send(bob.page, "last")
    for person in (alice, bob):
        await person.expect_messages([*seen, "last"])
        assert await person.page.evaluate("window.__sameDocument") is True
    await expect(bob.messages().last.locator(".author")).to_have_text("bob")
    await expect(alice.page.locator(".message.mine")).to_have_count(3)


async def test_server_restart_loses_and_repeats_nothing_on_an_open_page(browse, live_server):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Ops")
    await bob.join(room_id)
    await alice.say(room_id, "before the restart")
    await bob.page.goto(f"/rooms/{room_id}")
    await bob.expect_messages(["before the restart"])
    await alice.say(room_id, "live before")
    await bob.expect_messages(["before the restart", "live before"])

    await asyncio.to_thread(live_server.stop)
    await expect(bob.page.get_by_role("status")).to_have_text("Connection lost. Reconnecting…")
    await asyncio.to_thread(live_server.start)  # same port, same database
    missed = [f"while bob was away {n}" for n in range(1, 6)]
    for text in missed:
        await alice.say(room_id, text)

    await bob.expect_messages(["before the restart", "live before", *missed])
    await expect(bob.page.get_by_role("status")).to_have_text("Reconnected.")
    await alice.say(room_id, "after")
    await bob.expect_messages(["before the restart", "live before", *missed, "after"])
