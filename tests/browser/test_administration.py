"""Administration and room settings in a browser (issue 23): by keyboard, axe-clean."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from tests.browser.support import tab_to
from tests.test_admin import make_admin

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_an_administrator_deactivates_someone_by_keyboard_and_their_tab_is_signed_out(
    browse, database_url
):
    root = await (await browse()).sign_up("root")
    bob = await (await browse()).sign_up("bob")
    await make_admin(database_url, "root")
    room_id = await bob.create_room("Bob's room")
    await bob.page.goto(f"/rooms/{room_id}")
    await expect(bob.page.locator("[data-live-room]")).to_be_visible()

    page = root.page
    await page.goto("/")
    await tab_to(page, "Administration")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Administration")
    await root.assert_accessible()
    await root.screenshot("admin")
    await tab_to(page, "Deactivate bob")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("The account is deactivated")
    await expect(page.locator('tr[data-user="bob"]')).to_contain_text("deactivated")
    await expect(page.locator('tr[data-action="user_deactivated"]')).to_contain_text("user bob")
    await root.assert_accessible()

    # Bob's open tab: its stream was ended at once, and it says so (the signed-out banner).
    await expect(bob.page.get_by_role("alert")).to_contain_text("You were signed out")
    await bob.assert_accessible()
    await bob.page.reload()
    await expect(bob.page).to_have_url(f"{bob.base_url}/login")


async def test_an_owner_sets_the_topic_and_renames_by_keyboard(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("Planning")
    await alice.create_room("Taken")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await tab_to(page, "Room settings of Planning")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Settings of Planning")
    await alice.assert_accessible()

    await tab_to(page, "Topic")
    await page.keyboard.type("Ship **v2** on Friday")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("The topic is changed.")

    await tab_to(page, "Room name")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("taken")
    await page.keyboard.press("Enter")
    await expect(page.locator("#name-error")).to_contain_text("There is already a room called")
    await alice.assert_accessible()
    await alice.screenshot("room-settings-error")

    await page.get_by_role("link", name="Back to Planning").click()
    await expect(page.locator(".room-topic strong")).to_have_text("v2")
    await alice.assert_accessible()


async def test_an_invite_link_brings_someone_new_through_sign_up_into_a_private_room(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("Hideout", "private")
    page = alice.page
    await page.goto(f"/rooms/{room_id}/settings")
    await tab_to(page, "Make an invite link")
    await page.keyboard.press("Enter")
    link = await page.get_by_role("textbox", name="Invite link").input_value()
    assert "/invites/" in link
    await alice.assert_accessible()
    await alice.screenshot("invite-made")

    newcomer = await browse()
    page = newcomer.page
    await page.goto(link)
    await expect(page.get_by_role("heading", level=1)).to_have_text("You are invited to Hideout")
    await newcomer.assert_accessible()
    await tab_to(page, "Sign up and join")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")
    await tab_to(page, "Username")
    await page.keyboard.type("dana")
    await page.keyboard.press("Tab")
    await page.keyboard.type("correct horse battery")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Join Hideout")).to_be_visible()
    await newcomer.assert_accessible()
    await tab_to(page, "Join Hideout")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hideout")
    await expect(page.locator("#composer-body")).to_be_visible()


async def test_a_profile_is_set_by_keyboard_and_times_show_in_its_time_zone(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("Tokyo desk")
    await alice.say(room_id, "konnichiwa")
    page = alice.page
    await page.goto("/account")
    await tab_to(page, "Display name")
    await page.keyboard.type("Alice Liddell")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Asia/Tokyo")  # a select picks the option typed
    await tab_to(page, "Save profile")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("Your profile is saved.")
    await expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    await alice.assert_accessible()
    await alice.screenshot("profile")

    await page.goto(f"/rooms/{room_id}")
    message = alice.messages().first
    await expect(message.locator(".author")).to_have_text("Alice Liddell")
    stamp = await message.locator("header > time").get_attribute("datetime")
    tokyo = datetime.fromisoformat(stamp).astimezone(ZoneInfo("Asia/Tokyo"))
    shown = message.locator("header > time > [aria-hidden]")
    # 12- or 24-hour as the browser's locale writes it; Tokyo's hour either way.
    hours = tokyo.strftime("(%H|%I)")
    await expect(shown).to_contain_text(re.compile(rf"\b{hours}:{tokyo:%M}\b"))
    await alice.assert_accessible()
