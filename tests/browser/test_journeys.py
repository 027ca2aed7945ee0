"""What people do, in Chromium: talk live, by keyboard alone, without JavaScript, across
a server restart. Each test asserts what the person sees."""

import asyncio

import pytest
from playwright.async_api import Page, expect

from chat.routes import routes
from tests.browser.support import focused, press, tab_to
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


async def history_room(browse) -> int:
    """carol's public room of 60 messages; "zebra" is in the 3rd, beyond the first page."""
    carol = await (await browse()).sign_up("carol")
    room_id = await carol.create_room("Long history")
    for n in range(1, 61):
        await carol.say(room_id, "the zebra crossing" if n == 3 else f"history {n}")
    return room_id


@pytest.mark.bulk  # history_room posts 60 messages
async def test_the_whole_journey_works_by_keyboard_alone_with_focus_always_visible(browse):
    room_id = await history_room(browse)
    dana = await browse()
    page = dana.page
    await page.goto("/signup")
    stops = [(await press(page, "Tab"))["name"] for _ in range(6)]
    assert stops == [
        "Skip to main content",
        "Chat",
        "Username",
        "Password",
        "Sign up",
        "Already have an account? Log in",
    ]
    await page.reload()
    await press(page, "Tab")
    await page.keyboard.press("Enter")  # the skip link
    assert (await press(page, "Tab"))["name"] == "Username"
    await page.keyboard.type("dana")
    await press(page, "Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")

    await tab_to(page, "Join Long history")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Long history")
    stops = [(await press(page, "Tab"))["name"] for _ in range(2)]
    assert stops == ["Skip to message composer", "Chat"]
    await press(page, "Shift+Tab")
    await page.keyboard.press("Enter")
    assert (await focused(page))["id"] == "composer-body"
    await page.keyboard.type("Hello from the keyboard")
    await page.keyboard.press("Enter")
    await expect(dana.messages().last).to_contain_text("Hello from the keyboard")
    assert (await focused(page))["id"] == "composer-body"

    # Page Up in the log scrolls it, and at its top loads the older page.
    await expect(dana.messages()).to_have_count(51)
    # Back over the newest message's controls to the log: one Tab stop, not 50 messages' links.
    await tab_to(page, "Messages in Long history", key="Shift+Tab", limit=10)
    log = page.locator("#messages")
    for _ in range(50):
        if await log.evaluate("log => log.scrollTop < 1"):
            break
        await press(page, "PageUp")
    await press(page, "PageUp")
    await expect(dana.messages()).to_have_count(61)
    await expect(dana.messages().first).to_contain_text("history 1")
    assert (await focused(page))["id"] == "messages"

    # "?" shows the shortcuts; Esc closes them and focus goes back where it was.
    await page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(dialog).to_be_visible()
    assert (await focused(page))["name"] == "Close"
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert (await focused(page))["id"] == "messages"

    if HAS_SEARCH:
        await page.keyboard.press("/")
        assert (await focused(page))["id"] == "search-q"
        await page.keyboard.type("zebra")
        await page.keyboard.press("Enter")
        result = page.locator(".search-hit-link")
        await expect(result).to_have_count(1)
        name = await result.evaluate("(link) => link.textContent.replace(/\\s+/g, ' ').trim()")
        await tab_to(page, name)
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{dana.base_url}/rooms/{room_id}?at=3#message-3")
        await expect(page.locator("#message-3")).to_contain_text("the zebra crossing")

    await page.goto(f"/rooms/{room_id}")
    await tab_to(page, "Log out")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


@pytest.mark.bulk  # history_room posts 60 messages
async def test_the_whole_journey_works_without_javascript(browse):
    room_id = await history_room(browse)
    erin = await browse(javascript=False)
    page = erin.page
    await sign_up_with_the_form(page, "erin")
    await page.get_by_role("button", name="Join Long history").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Long history")

    await page.get_by_role("textbox", name="Message").fill("Hello without scripts")
    await page.get_by_role("button", name="Send").click()
    await expect(page).to_have_url(f"{erin.base_url}/rooms/{room_id}#message-61")
    await expect(erin.messages().last).to_contain_text("Hello without scripts")

    await page.get_by_role("link", name="Load older messages").click()
    await expect(erin.messages().first).to_contain_text("history 1")
    await page.get_by_role("link", name="Jump to the latest messages").click()
    await expect(erin.messages().last).to_contain_text("Hello without scripts")

    carol = await browse()
    await carol.page.goto("/login")
    await carol.page.get_by_label("Username").fill("carol")
    await carol.page.get_by_label("Password").fill(PASSWORD)
    await carol.page.get_by_role("button", name="Log in").click()
    await carol.say(room_id, "Did you see my zebra?")
    await page.get_by_role("link", name="Check for new messages").click()
    await expect(erin.messages().last).to_contain_text("Did you see my zebra?")

    if HAS_SEARCH:
        await page.get_by_role("searchbox", name="Search messages").fill("zebra crossing")
        await page.get_by_role("button", name="Search").click()
        await page.locator(".search-hit-link").first.click()
        await expect(page.locator("#message-3")).to_contain_text("the zebra crossing")

    await page.get_by_role("navigation", name="Rooms").get_by_role("link", name="All rooms").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


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
    await expect(bob.page.locator("#live-status")).to_have_text("Connection lost. Reconnecting…")
    await asyncio.to_thread(live_server.start)  # same port, same database
    missed = [f"while bob was away {n}" for n in range(1, 6)]
    for text in missed:
        await alice.say(room_id, text)

    await bob.expect_messages(["before the restart", "live before", *missed])
    await expect(bob.page.locator("#live-status")).to_have_text("Reconnected.")
    await alice.say(room_id, "after")
    await bob.expect_messages(["before the restart", "live before", *missed, "after"])
