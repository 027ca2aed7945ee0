"""Errors never replace content (issue 22): a refusal is said next to what it concerns
and keeps the message and the typed text; a tab whose session or membership ended gets
a banner from its stream and keeps what was typed; typing notices never hit the limit."""

import pytest
from playwright.async_api import Page, expect

from tests.browser.daily import PHONE, WIDE, room_of_three

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def live(page: Page, path: str) -> None:
    await page.goto(path)
    await page.wait_for_function("document.querySelector('#live-status') !== null")
    await expect(page.locator("#messages > [data-seq]").first).to_be_visible()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_a_refused_reaction_is_said_beside_its_field_and_the_message_stays(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"reactions {viewport['width']}", 3)
    bob = await visit("bob", viewport=viewport)
    page = bob.page
    await live(page, f"/rooms/{room_id}")
    message = page.locator("#message-3")
    await message.get_by_role("button", name="More").click()
    field = message.get_by_label("Other emoji")
    await field.fill("not an emoji")
    await field.press("Enter")
    error = message.get_by_role("alert")
    await expect(error).to_have_text("Reactions are a single emoji.")
    await expect(field).to_have_value("not an emoji")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(message.locator(".body")).to_have_text(f"reactions {viewport['width']} message 3")
    await bob.assert_accessible()
    # Put right, it is taken, and the error goes with the menu.
    await field.fill("🎉")
    await field.press("Enter")
    await expect(message.locator(".reactions")).to_contain_text("🎉")
    await expect(page.locator(".inline-error")).to_have_count(0)


async def test_signed_out_in_another_tab_the_room_says_so_and_keeps_the_typed_text(
    visit, daily_people
):
    room_id = room_of_three(daily_people, "signing out", 3)
    carol = await visit("carol")
    page = carol.page
    await live(page, f"/rooms/{room_id}")
    other_tab = await page.context.new_page()
    await other_tab.goto("/")
    await other_tab.get_by_role("button", name="Log out").click()
    banner = page.locator("#flash")
    await expect(banner).to_have_text("You were signed out. Log in again")
    await expect(page.locator("#live-status")).to_have_text("")
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("a thought worth keeping")
    await composer.press("Enter")
    await expect(composer).to_have_value("a thought worth keeping")
    await expect(page.locator("#composer")).to_be_visible()
    await expect(page.get_by_role("heading", level=1)).to_have_text("signing out")
    await carol.assert_accessible()
    login = banner.get_by_role("link", name="Log in again")
    assert f"next=%2Frooms%2F{room_id}" in await login.get_attribute("href")


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_a_member_removed_while_the_room_is_open_is_told_and_keeps_the_typed_text(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"removed {viewport['width']}", 3, "private")
    bob = await visit("bob", viewport=viewport)
    page = bob.page
    await live(page, f"/rooms/{room_id}")
    bob_id = 2  # the module's second sign-up
    removed = daily_people["alice"].post(f"/rooms/{room_id}/members/{bob_id}/remove")
    assert removed.status_code == 303
    banner = page.locator("#flash")
    await expect(banner).to_have_text("You were removed from this room. Back to your rooms")
    await expect(page.locator("#live-status")).not_to_have_text("Connection lost. Reconnecting…")
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("still here?")
    await composer.press("Enter")
    await expect(page.locator("#composer .inline-error")).to_have_text(
        "There is no such room, or it is private."
    )
    await expect(composer).to_have_value("still here?")
    await expect(page.locator("#messages > [data-seq]")).to_have_count(3)
    await bob.assert_accessible()


async def test_typing_notices_never_hit_the_limit_however_fast_one_sends(visit, daily_people):
    room_id = room_of_three(daily_people, "quick sender", 1)
    alice = await visit("alice")
    page = alice.page
    statuses: list[int] = []
    page.on(
        "response",
        lambda response: (
            statuses.append(response.status) if response.url.endswith("/typing") else None
        ),
    )
    await live(page, f"/rooms/{room_id}")
    composer = page.get_by_role("textbox", name="Message")
    for n in range(4):
        await composer.press_sequentially(f"quick {n}")
        await composer.press("Enter")
        await expect(page.locator(f"#message-{n + 2}")).to_be_visible()
    await expect(composer).to_be_focused()
    assert statuses and 429 not in statuses, statuses


# --- the composer's helpers ------------------------------------------------------------


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_mentions_are_suggested_from_the_members_and_taken_by_keyboard(
    visit, daily_people, viewport
):
    room_id = room_of_three(daily_people, f"suggest {viewport['width']}", 1)
    alice = await visit("alice", viewport=viewport)
    page = alice.page
    await live(page, f"/rooms/{room_id}")
    composer = page.get_by_role("textbox", name="Message")
    await composer.press_sequentially("thanks @")
    suggestions = page.get_by_role("listbox", name="Members to mention")
    await expect(suggestions.get_by_role("option")).to_have_text(["@bob", "@carol"])
    await expect(composer).to_have_attribute("aria-activedescendant", "mention-option-0")
    await expect(page.locator("#mention-status")).to_contain_text("2 members to mention")
    await alice.assert_accessible()
    await composer.press("ArrowDown")
    await expect(suggestions.get_by_role("option", name="@carol")).to_have_attribute(
        "aria-selected", "true"
    )
    await composer.press("Enter")  # takes the suggestion, does not send
    await expect(composer).to_have_value("thanks @carol ")
    await expect(suggestions).to_have_count(0)
    await composer.press_sequentially("and @b")
    await expect(suggestions.get_by_role("option")).to_have_text(["@bob"])
    await composer.press("Escape")
    await expect(suggestions).to_have_count(0)
    await composer.press("Enter")
    await expect(page.locator("#message-2 .mention")).to_have_text(["@carol"])
    await expect(composer).to_be_focused()


async def test_up_in_an_empty_composer_edits_ones_last_message(visit, daily_people):
    room_id = room_of_three(daily_people, "arrow up", 3)
    bob = await visit("bob")
    page = bob.page
    await live(page, f"/rooms/{room_id}")
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("my newest")
    await composer.press("Enter")
    await expect(page.locator("#message-4")).to_be_visible()
    await expect(composer).to_be_focused()
    await composer.press("ArrowUp")
    editor = page.locator("#message-4 .edit-form textarea")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("my newest")
    await editor.fill("my newest, edited")
    await editor.press("Enter")
    await expect(page.locator("#message-4 .body")).to_have_text("my newest, edited")
