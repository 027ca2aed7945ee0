"""The room's layout (issue 22): on a desktop the log is its own scrolling region with
the composer in view under it; the room opens at the newest message or at the "New
messages" divider; live messages keep the newest in view unless the reader scrolled up;
"load older" keeps the reader's place; without JavaScript a plain document."""

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.daily import HISTORY, PHONE, WIDE, room_of_three
from tests.browser.support import focused, press, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

GENERAL = 1  # the module's seeded room of HISTORY messages

LOG_STATE = """() => {
  const log = document.getElementById("messages");
  const composer = document.getElementById("composer-body").getBoundingClientRect();
  return {
    pageScrolls: document.scrollingElement.scrollHeight > window.innerHeight + 1,
    fromBottom: log.scrollHeight - log.scrollTop - log.clientHeight,
    scrollTop: log.scrollTop,
    composerInView: composer.top >= 0 && composer.bottom <= window.innerHeight,
  };
}"""


async def log_state(page: Page) -> dict:
    return await page.evaluate(LOG_STATE)


def top_in_log(page: Page, selector: str):
    return page.evaluate(
        """(selector) => document.querySelector(selector).getBoundingClientRect().top
             - document.getElementById("messages").getBoundingClientRect().top""",
        selector,
    )


async def test_on_a_desktop_the_log_scrolls_and_the_room_opens_at_the_newest(visit):
    alice = await visit("alice")
    page = alice.page
    await page.goto(f"/rooms/{GENERAL}")
    await expect(alice.messages()).to_have_count(50)
    state = await log_state(page)
    assert not state["pageScrolls"], state
    assert state["fromBottom"] < 2 and state["composerInView"], state
    await expect(page.locator(f"#message-{HISTORY}")).to_be_in_viewport()
    await alice.assert_accessible()


async def test_on_a_phone_the_room_opens_at_the_newest_with_the_composer_in_view(visit):
    bob = await visit("bob", viewport=PHONE)
    page = bob.page
    await page.goto(f"/rooms/{GENERAL}")
    state = await log_state(page)
    assert state["fromBottom"] < 2 and state["composerInView"], state
    await expect(page.locator(f"#message-{HISTORY}")).to_be_in_viewport()
    await bob.assert_accessible()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_with_unread_messages_the_room_opens_at_the_new_messages_divider(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"catching up {viewport['width']}", 3)
    for n in range(40):  # carol talks while bob is away
        daily_people["carol"].say(room_id, f"while you were away {n}")
    bob = await visit("bob", viewport=viewport)
    await bob.page.goto(f"/rooms/{room_id}")
    divider = bob.page.locator("#new-messages")
    await expect(divider).to_be_in_viewport()
    assert 0 <= await top_in_log(bob.page, "#new-messages") < 40
    await expect(bob.page.locator("#messages > [data-seq]").last).not_to_be_in_viewport()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_live_messages_stay_in_view_at_the_bottom_and_are_counted_when_scrolled_up(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"live view {viewport['width']}", 60)
    alice = await visit("alice", viewport=viewport)
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await expect(page.locator("#live-status")).to_have_count(1)
    await page.wait_for_function("document.querySelector('[sse-connect]') !== null")

    daily_people["bob"].say(room_id, "at the bottom you see me")
    newest = page.locator("#message-61")
    await expect(newest).to_be_in_viewport()
    assert (await log_state(page))["fromBottom"] < 2

    # Scrolled up to read: the place is kept and a control says what came below.
    await page.evaluate("document.getElementById('messages').scrollTop = 200")
    daily_people["bob"].say(room_id, "one below")
    daily_people["carol"].say(room_id, "two below")
    button = page.get_by_role("button", name="2 new messages ↓")
    await expect(button).to_be_visible()
    assert (await log_state(page))["scrollTop"] == 200
    await expect(page.locator("#message-63")).not_to_be_in_viewport()
    await alice.assert_accessible()

    # By keyboard: the control takes the reader to the first message they had not seen.
    await button.focus()
    await press(page, "Enter")
    await expect(button).to_be_hidden()
    assert (await focused(page))["id"] == "message-62"
    await expect(page.locator("#message-63")).to_be_in_viewport()
    assert (await log_state(page))["fromBottom"] < 2

    # One's own message always brings the newest into view.
    await page.evaluate("document.getElementById('messages').scrollTop = 0")
    await page.get_by_role("textbox", name="Message").fill("mine, from up there")
    await page.keyboard.press("Enter")
    await expect(page.locator("#message-64")).to_be_in_viewport()
    await expect(button).to_be_hidden()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_loading_older_messages_keeps_the_message_being_read_in_its_place(visit, viewport):
    carol = await visit("carol", viewport=viewport)
    page = carol.page
    await page.goto(f"/rooms/{GENERAL}")
    first = f"#message-{HISTORY - 49}"
    await page.evaluate("document.getElementById('messages').scrollTop = 0")
    before = await top_in_log(page, first)
    older = page.get_by_role("link", name="Load older messages")
    await older.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#message-1")).to_have_count(1)
    assert abs(await top_in_log(page, first) - before) < 2
    await expect(page.locator(first)).to_be_in_viewport()


async def test_without_javascript_the_room_is_a_plain_document_with_a_skip_link(visit):
    bob = await visit("bob", javascript=False)
    page = bob.page
    await page.goto(f"/rooms/{GENERAL}")
    assert await page.evaluate("document.scrollingElement.scrollHeight > window.innerHeight"), (
        "the page itself scrolls"
    )
    focus = await press(page, "Tab")
    assert focus["name"] == "Skip to message composer"
    await page.keyboard.press("Enter")
    assert (await focused(page))["id"] == "composer-body"


# --- days and groups -----------------------------------------------------------------------


async def day_dividers(page: Page) -> list[str]:
    return await page.locator("#messages > .day-divider").all_inner_texts()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_days_are_divided_in_the_page_in_older_pages_and_live(visit, daily_people, viewport):
    alice = await visit("alice", viewport=viewport)
    page = alice.page
    await page.goto(f"/rooms/{GENERAL}")
    # "general": messages 21-50 three days ago and yesterday, 61-70 today (tests/browser/daily.py).
    days = await day_dividers(page)
    assert days[1:] == ["Yesterday", "Today"] and days[0] not in ("Today", "Yesterday"), days
    assert await page.evaluate(
        "(label) => label === new Intl.DateTimeFormat(undefined, {weekday: 'long', day: 'numeric',"
        " month: 'long', year: 'numeric'}).format(new Date(Date.now() - 3 * 86400000))",
        days[0],
    )
    # Yesterday's 23:59 and today's 00:00 are told apart.
    await expect(page.locator("#message-60 + .day-divider + #message-61")).to_have_count(1)
    time = page.locator("#message-61 time")
    await expect(time).to_have_attribute("title", re.compile(r"^\w+day, .*12:00"))
    await expect(time.locator(".visually-hidden")).to_have_text(await time.get_attribute("title"))
    await page.get_by_role("link", name="Load older messages").click()
    await expect(page.locator("#message-1")).to_have_count(1)
    assert await day_dividers(page) == days
    await expect(page.locator("#messages > .day-divider").first).to_be_attached()
    await alice.assert_accessible()


async def test_messages_in_a_row_by_one_author_are_grouped_and_their_actions_reachable(
    visit, daily_people
):
    room_id = room_of_three(daily_people, "in a row", 2)
    carol = await visit("carol")
    page = carol.page
    await page.goto(f"/rooms/{room_id}")
    await page.wait_for_function("document.querySelector('[sse-connect]') !== null")
    for n in range(3):
        daily_people["bob"].say(room_id, f"bob again {n}")
    await expect(page.locator("#message-5")).to_be_visible()
    assert await day_dividers(page) == ["Today"]
    # 1 is bob's and 2 carol's ("in a row message N"); bob's 3, 4 and 5 follow them.
    classes = [
        await page.locator(f"#message-{seq}").get_attribute("class") for seq in (1, 2, 3, 4, 5)
    ]
    grouped = ["is-continued" in each for each in classes]
    assert grouped == [False, False, False, True, True], classes
    assert (await page.locator("#message-4 .author").bounding_box())["width"] <= 1
    await expect(page.locator("#message-4")).to_contain_text("bob")  # heard, if not seen
    # By keyboard: ↑ from the newest reaches a grouped message; Tab reaches its actions.
    await page.locator("#messages").focus()
    await page.keyboard.press("ArrowUp")
    assert (await focused(page))["id"] == "message-5"
    await page.keyboard.press("ArrowUp")
    assert (await focused(page))["id"] == "message-4"
    await tab_to(page, "More actions for this message")
    await page.keyboard.press("Enter")
    await expect(page.locator("#message-4 .message-menu")).to_be_visible()
    await carol.assert_accessible()


# --- light and dark --------------------------------------------------------------------------


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_the_room_passes_axe_in_light_and_dark_with_its_menus_and_dialogs(
    visit, viewport, dark
):
    alice = await visit("alice", viewport=viewport, dark=dark)
    page = alice.page
    await page.goto(f"/rooms/{GENERAL}")
    scheme = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert scheme is dark
    await alice.assert_accessible()
    await page.locator(f"#message-{HISTORY}").get_by_role("button", name="More").click()
    await expect(page.locator(".message-menu")).to_be_visible()
    await alice.assert_accessible()
    await page.keyboard.press("Escape")
    await page.get_by_role("link", name="Remove bob").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    await alice.assert_accessible()
    await page.keyboard.press("Escape")
    await page.goto("/")
    await alice.assert_accessible()
