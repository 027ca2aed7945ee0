"""axe-core (WCAG 2.2 A and AA) on every page, empty and with live traffic; screenshots."""

import pytest
from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_signed_out_pages_have_no_accessibility_violations(browse):
    visitor = await browse()
    await visitor.assert_accessible()
    await visitor.screenshot("login")
    await visitor.page.goto("/signup")
    await visitor.assert_accessible()
    await visitor.screenshot("signup")
    await visitor.page.fill("#username", "x")
    await visitor.page.fill("#password", "short")
    await visitor.page.click("button[type=submit]")
    await expect(visitor.page.locator("#form-error")).to_contain_text("Usernames are")
    await visitor.assert_accessible()


async def test_room_pages_have_no_accessibility_violations_empty_and_with_live_traffic(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    await alice.page.goto("/")
    await alice.assert_accessible()
    await alice.screenshot("rooms-empty")

    room_id = await alice.create_room("General chat")
    await alice.create_room("Hidden plans", "private")
    await bob.create_room("Bob's den")
    await alice.page.goto(f"/rooms/{room_id}")
    await alice.assert_accessible()
    await alice.screenshot("room-empty")

    await bob.join(room_id)
    await bob.page.goto(f"/rooms/{room_id}")
    lines = [
        "Morning! Is the **release** still on for today?",
        "Yes, after the `migrations` land. Notes: https://example.org/notes",
        "Great, I'll *watch* the dashboards.",
    ]
    for n, line in enumerate(lines):
        await (alice if n % 2 == 0 else bob).say(room_id, line)
    await expect(alice.messages()).to_have_count(3)
    await expect(bob.messages()).to_have_count(3)
    await alice.page.locator("#composer-body").fill("Shipping it now")
    await alice.page.keyboard.press("Enter")
    await expect(bob.messages()).to_have_count(4)
    await bob.assert_accessible()
    await alice.assert_accessible()
    await bob.screenshot("room-live")

    await bob.page.goto("/")
    await bob.assert_accessible()
    await bob.screenshot("rooms")


@pytest.mark.bulk
async def test_history_error_and_visitor_pages_have_no_accessibility_violations(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Long history")
    for n in range(1, 56):
        await alice.say(room_id, f"message {n}")

    await alice.page.goto(f"/rooms/{room_id}?before=6")
    await expect(alice.messages()).to_have_count(5)
    await alice.assert_accessible()

    await bob.page.goto(f"/rooms/{room_id}")
    await expect(bob.page.get_by_role("button", name="Join Long history")).to_be_visible()
    await bob.assert_accessible()

    await bob.page.goto("/rooms/999999")
    await expect(bob.page.get_by_role("heading", level=1)).to_have_text("Not found")
    await bob.assert_accessible()
    await bob.screenshot("not-found")


async def test_reply_and_direct_message_pages_have_no_accessibility_violations(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Replies")
    await bob.join(room_id)
    await bob.say(room_id, "A question worth quoting, long enough to be cut short " * 4)
    await alice.page.goto(f"/rooms/{room_id}")
    await alice.page.get_by_role("link", name="Reply to bob").click()
    await expect(alice.page.locator("[data-reply-bar]")).to_be_visible()
    await alice.assert_accessible()
    await alice.page.locator("#composer-body").fill("An answer")
    await alice.page.keyboard.press("Enter")
    await expect(alice.messages().nth(1).locator(".reply-quote")).to_be_visible()
    await alice.assert_accessible()
    await alice.screenshot("room-reply")
    await alice.page.goto(f"/rooms/{room_id}?reply=1#composer")
    await alice.assert_accessible()

    await alice.page.goto("/direct/bob")
    await expect(alice.page.get_by_role("heading", level=1)).to_have_text("bob")
    await alice.assert_accessible()
    await alice.screenshot("direct-new")
    await alice.page.locator("#composer-body").fill("Hello in private")
    await alice.page.keyboard.press("Enter")
    await expect(alice.messages()).to_have_count(1)
    await alice.assert_accessible()
    await alice.screenshot("direct-room")

    await bob.page.goto("/")
    await expect(bob.page.locator("a[data-room-link]", has_text="alice")).to_be_visible()
    await bob.assert_accessible()
    await bob.screenshot("rooms-with-direct")
