"""Unread counts, the tab title, notifications and mention marking stay right after a
room's messages were edited, reacted to and deleted (issue 22): the stream's ids are
then `SEQ.CHANGE`, and every reader of them takes the message's seq from the SEQ part."""

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Page, expect

from tests.browser.daily import PHONE, WIDE, Seeder, room_of_three

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Notifications recorded instead of shown, permission granted; the tab's visibility is
# the test's to set (a headless tab is always "visible").
FAKE_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = function (title, options) {
  window.__notifications.push({ title: title, body: options && options.body });
};
window.Notification.permission = "granted";
window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", {
  get: function () { return window.__hidden; },
});
"""


async def set_hidden(page: Page, hidden: bool) -> None:
    await page.evaluate(
        """(hidden) => {
            window.__hidden = hidden;
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def test_after_edits_reactions_and_deletes_live_messages_are_read_marked_and_notified(
    visit, daily_people
):
    alice = daily_people["alice"]
    room_id = room_of_three(daily_people, "changes", 3)
    bob = await visit("bob")
    page = bob.page
    await page.context.add_init_script(script=FAKE_NOTIFICATIONS)
    await page.goto(f"/rooms/{room_id}")
    await page.wait_for_function("document.querySelector('[sse-connect]') !== null")

    # Changes: from now on every frame's id is SEQ.CHANGE.
    assert alice.post(f"/rooms/{room_id}/messages/3", {"body": "edited, @bob"}).status_code < 400
    assert alice.post(f"/rooms/{room_id}/messages/3/reactions", {"emoji": "👍"}).status_code < 400
    assert alice.post(f"/rooms/{room_id}/messages/1/delete").status_code < 400
    await expect(page.locator("#message-1")).to_contain_text("deleted")
    # An edit that mentions the reader is marked as one.
    await expect(page.locator("#message-3.mentions-me")).to_have_count(1)

    # Seen live in a visible tab: read, so not counted unread on the rooms page.
    alice.say(room_id, "seen as it came")
    await expect(page.locator("#message-4")).to_be_visible()
    await eventually(lambda: unread_on_index(page, room_id), None)

    # In a hidden tab: counted in the title, notified once, marked as a mention.
    await set_hidden(page, True)
    alice.say(room_id, "@bob are you there?")
    await expect(page.locator("#message-5.mentions-me")).to_have_count(1)
    await expect(page).to_have_title("(1) changes · Chat")
    await eventually(lambda: page.evaluate("window.__notifications.length"), 1)
    note = (await page.evaluate("window.__notifications"))[0]
    assert note["title"] == "alice in changes" and "are you there" in note["body"]
    await expect(page.locator("#new-messages + #message-5")).to_have_count(1)

    await set_hidden(page, False)
    await expect(page).to_have_title("changes · Chat")
    await eventually(lambda: unread_on_index(page, room_id), None)


async def test_a_visible_tab_marks_read_in_a_room_that_never_pauses(visit, daily_people):
    alice = daily_people["alice"]
    room_id = room_of_three(daily_people, "busy", 1)
    bob = await visit("bob")
    page = bob.page
    await page.goto(f"/rooms/{room_id}")
    await page.wait_for_function("document.querySelector('[sse-connect]') !== null")

    # A message every half second for seven: never the one quiet second the marker
    # otherwise waits for, so only the 5 s cap marks them read while they keep coming.
    for n in range(14):
        alice.say(room_id, f"busy {n}")
        await asyncio.sleep(0.5)
        if n == 11:  # twelve sent: marked up to the fifth second's, not none of them
            assert int(await unread_on_index(page, room_id) or 0) <= 4


async def unread_on_index(page: Page, room_id: int) -> str | None:
    """What the rooms page would say of the room: its data-unread, or None."""
    html = await (await page.request.get("/")).text()
    marker = f'data-room-id="{room_id}" data-unread="'
    if marker not in html:
        return None
    return html.split(marker, 1)[1].split('"', 1)[0]


async def eventually(read: Callable[[], Awaitable[object]], expected: object) -> None:
    """Waits (up to 10 s) until read() gives `expected`: the read marker is sent a
    moment after the message shows."""
    for _ in range(100):
        value = await read()
        if value == expected:
            return
        await asyncio.sleep(0.1)
    assert value == expected


# --- live sidebars inside a room -------------------------------------------------------


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_a_rooms_sidebars_are_live_from_one_stream_of_ones_own(visit, daily_people, viewport):
    alice, carol = daily_people["alice"], daily_people["carol"]
    width = viewport["width"]
    here = room_of_three(daily_people, f"here {width}", 2)
    elsewhere = room_of_three(daily_people, f"elsewhere {width}", 2)
    bob = await visit("bob", viewport=viewport)
    page = bob.page
    await page.goto(f"/rooms/{here}")
    await page.wait_for_function("document.querySelector('[sse-connect]') !== null")
    nav = page.get_by_role("navigation", name="Rooms")
    await expect(nav.get_by_role("link", name=f"elsewhere {width}")).to_be_visible()

    # Unread and mention counts of another room.
    alice.say(elsewhere, "over here")
    alice.say(elsewhere, "@bob look")
    other = nav.locator(f'[data-room-id="{elsewhere}"]')
    await expect(other.locator("[data-unread-badge]")).to_have_text(
        "3 unread"
    )  # carol's, then these two
    await expect(other.locator("[data-mention-badge]")).to_have_text("1 @mention")

    # A room one is added to, and a new direct conversation.
    added = alice.create_room(f"added {width}", "private")
    assert alice.post(f"/rooms/{added}/members", {"username": "bob"}).status_code == 303
    await expect(nav.get_by_role("link", name=f"added {width}")).to_be_visible()
    assert carol.post("/direct/bob/messages", {"body": f"psst {width}"}).status_code == 303
    await expect(nav.locator("#direct-nav-title")).to_have_text("Direct messages")
    await expect(nav.locator("[data-room-link]", has_text="carol")).to_be_visible()
    await expect(nav.locator("[aria-current=page]")).to_have_text(re.compile(f"here {width}"))

    # Members joining and leaving, in the member list.
    dave = Seeder(bob.base_url, f"dave{width}").sign_up()
    try:
        assert dave.post(f"/rooms/{here}/join").status_code == 303
        members = page.locator("#member-list")
        await expect(members.locator("li", has_text=f"dave{width}")).to_be_visible()
        await expect(members.get_by_role("heading")).to_have_text("Members (4)")
        assert dave.post(f"/rooms/{here}/leave").status_code == 303
        await expect(members.locator("li", has_text=f"dave{width}")).to_have_count(0)
    finally:
        dave.client.close()
    await bob.assert_accessible()

    # A second tab of the same browser opens no stream of its own.
    second = await page.context.new_page()
    own_streams: list[str] = []
    second.on("request", lambda request: own_streams.append(request.url))
    await second.goto(f"/rooms/{elsewhere}")
    await second.wait_for_function("document.querySelector('[sse-connect]') !== null")
    alice.say(here, "to the first tab's room")
    await expect(second.locator(f'[data-room-id="{here}"] [data-unread-badge]')).to_have_text(
        "1 unread"
    )
    assert not [url for url in own_streams if url.endswith("/events")], own_streams
