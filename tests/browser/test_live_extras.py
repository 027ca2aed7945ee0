"""Presence, typing, @mentions, live unread counts and notifications, as people see them."""

import asyncio

import pytest
from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Chromium shows no notifications headless, and every headless tab counts as visible:
# record notifications instead, and let a test hide a tab.
FAKE_NOTIFICATIONS = """
window.__notified = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.__notified.push({title: title, tag: options.tag}); }
  close() {}
};
window.__hidden = false;
Object.defineProperty(document, "hidden", {get: () => window.__hidden});
Object.defineProperty(document, "visibilityState", {
  get: () => (window.__hidden ? "hidden" : "visible"),
});
"""


async def room_of_two(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    return room_id, alice, bob


async def test_others_see_who_is_typing_but_never_themselves(browse):
    room_id, alice, bob = await room_of_two(browse)
    for person in (alice, bob):
        await person.page.goto(f"/rooms/{room_id}")
    await expect(alice.page.locator('[data-presence="bob"]')).to_have_text("online")
    await bob.page.get_by_role("textbox", name="Message").press_sequentially("hel")
    await expect(alice.page.locator("#typing")).to_have_text("bob is typing…")
    await bob.page.get_by_role("textbox", name="Message").press("Enter")
    await expect(alice.page.locator("#typing")).to_have_text("")
    await expect(alice.messages().locator(".body")).to_have_text(["hel"])
    await expect(bob.page.locator("#typing")).to_have_text("")


async def test_a_mention_is_highlighted_for_the_person_mentioned_only(browse):
    room_id, alice, bob = await room_of_two(browse)
    for person in (alice, bob):
        await person.page.goto(f"/rooms/{room_id}")
    await alice.page.get_by_role("textbox", name="Message").fill("lunch, @bob?")
    await alice.page.keyboard.press("Enter")
    await expect(bob.page.locator(".message.mentions-me .mention")).to_have_text("@bob")
    await expect(alice.page.locator(".message .mention")).to_have_text("@bob")
    await expect(alice.page.locator(".mentions-me")).to_have_count(0)


async def test_rooms_page_counts_change_live(browse):
    room_id, alice, bob = await room_of_two(browse)
    await bob.page.goto("/")
    link = bob.page.locator(f'[data-room-id="{room_id}"]')
    await alice.say(room_id, "one")
    await alice.say(room_id, "two, @bob")
    await expect(link.locator("[data-unread-badge]")).to_have_text("2 unread")
    await expect(link.locator("[data-mention-badge]")).to_have_text("1 @mention")
    await expect(bob.page).to_have_title("(2) Rooms · Chat")


async def test_one_notification_per_message_however_many_hidden_tabs(browse):
    room_id, alice, bob = await room_of_two(browse)
    await bob.page.context.add_init_script(script=FAKE_NOTIFICATIONS)
    tabs = [bob.page, await bob.page.context.new_page()]
    for tab in tabs:
        await tab.goto(f"/rooms/{room_id}")
        await expect(tab.locator('[data-presence="bob"]')).to_have_text("online")
        await tab.evaluate("window.__hidden = true")
    await alice.say(room_id, "not for bob's notifications")
    await alice.say(room_id, "@bob, are you there?")
    for tab in tabs:
        await expect(tab.locator("#message-2")).to_be_visible()
        await expect(tab).to_have_title("(2) general · Chat")
    notified = []
    for _ in range(50):  # until one tab has shown it
        notified = [n for tab in tabs for n in await tab.evaluate("window.__notified")]
        if notified:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # the other tab decides 0.3 s after its frame arrived
    notified = [n for tab in tabs for n in await tab.evaluate("window.__notified")]
    assert notified == [{"title": "alice in general", "tag": f"chat-{room_id}:2"}]
