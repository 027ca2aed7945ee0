"""Bots, tokens and webhooks in a browser (issue 24): the pages by keyboard and axe-clean,
and an incoming webhook's post appearing live in an open tab."""

import httpx
import pytest
from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def server_env(server_env):
    return {**server_env, "CHAT_BOT_CREATORS": "everyone"}


async def test_an_incoming_webhook_post_appears_live_in_an_open_tab(browse, live_server):
    alice = await (await browse()).sign_up("alice")
    room = await alice.create_room("Deploys")
    page = alice.page
    await page.goto(f"/rooms/{room}/webhooks")
    await alice.assert_accessible()
    await page.fill("#hook-name", "ci-bot")
    await page.keyboard.press("Enter")
    url = await page.locator("#new-hook-url").input_value()
    await alice.assert_accessible()
    await alice.screenshot("webhook-created")

    await page.goto(f"/rooms/{room}")
    await expect(page.locator("#messages")).to_be_attached()
    async with httpx.AsyncClient(timeout=10) as ci:
        response = await ci.post(url, json={"text": "Build **42** passed"})
    assert response.status_code == 200, response.text
    await alice.expect_messages(["Build 42 passed"])
    await expect(alice.messages().first).to_have_attribute("data-author", "ci-bot")


async def test_bots_and_tokens_pages_work_by_keyboard_and_are_accessible(browse):
    alice = await (await browse()).sign_up("alice")
    await alice.create_room("Ops")
    page = alice.page
    await page.goto("/account")
    await page.get_by_role("link", name="bots").click()
    await alice.assert_accessible()
    await page.focus("#bot-name")
    await page.keyboard.type("echo")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("The bot is made")
    await page.select_option("#add-room", label="Ops")
    await page.get_by_role("button", name="Add").click()
    await expect(page.get_by_role("status")).to_contain_text("in the room now")
    await page.focus("#token-name")
    await page.keyboard.type("deploys")
    await page.get_by_label("Read and write").check()
    await page.get_by_role("button", name="Issue token").click()
    secret = await page.locator("#new-token").input_value()
    assert secret.startswith("chat_")
    await alice.assert_accessible()
    await alice.screenshot("bot-page")

    await page.goto("/account/tokens")
    await page.focus("#token-name")
    await page.keyboard.type("my script")
    await page.get_by_label("Ops").check()
    await page.get_by_role("button", name="Issue token").click()
    await expect(page.get_by_role("row", name="my script")).to_contain_text("Ops")
    await alice.assert_accessible()
    await alice.screenshot("tokens-page")
    await page.get_by_role("button", name="Revoke my script").click()
    await expect(page.get_by_role("status")).to_contain_text("revoked")
    await alice.assert_accessible()
