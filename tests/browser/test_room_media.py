"""Search results shown as the room shows messages, and images in a viewer (issue 22)."""

import io

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.browser.daily import PHONE, WIDE, room_of_three
from tests.browser.support import focused

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


def png(width: int = 320, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_search_results_render_the_message_with_the_words_marked(
    visit, daily_people, viewport
):
    width = viewport["width"]
    room_id = room_of_three(daily_people, f"launches {width}", 0)
    daily_people["bob"].say(
        room_id, f"the **launch{width}** of `v3` is <script>window.__xss=1</script>"
    )
    alice = await visit("alice", viewport=viewport)
    page = alice.page
    await page.goto("/")
    await page.get_by_role("searchbox", name="Search messages").fill(f"launch{width}")
    await page.keyboard.press("Enter")
    hit = page.locator(".search-hit").first
    await expect(hit.locator("strong mark")).to_have_text(f"launch{width}")
    await expect(hit.locator("code")).to_have_text("v3")
    await expect(hit.locator(".search-hit-body")).to_contain_text("<script>window.__xss=1</script>")
    await alice.assert_accessible()
    await alice.assert_nothing_executed()
    await hit.get_by_role("link", name="Go to the message").click()
    await expect(page.locator("#message-1")).to_contain_text(f"launch{width}")


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_an_image_opens_in_a_viewer_that_escape_closes_giving_focus_back(
    visit, daily_people, viewport
):
    width = viewport["width"]
    room_id = room_of_three(daily_people, f"pictures {width}", 1)
    bob = daily_people["bob"]
    posted = bob.post(
        f"/rooms/{room_id}/messages",
        {"body": "a picture"},
        files=[("files", ("teal.png", png(), "image/png"))],
    )
    assert posted.status_code == 303, posted.text
    carol = await visit("carol", viewport=viewport)
    page = carol.page
    await page.goto(f"/rooms/{room_id}")
    thumbnail = page.get_by_role("link", name="teal.png")
    await thumbnail.focus()
    await page.keyboard.press("Enter")
    viewer = page.get_by_role("dialog", name="teal.png")
    await expect(viewer).to_be_visible()
    await expect(viewer.get_by_role("img", name="teal.png")).to_be_visible()
    await expect(viewer.get_by_role("link", name="Download teal.png")).to_have_attribute(
        "download", "teal.png"
    )
    assert (await focused(page))["name"] == "Close"
    await carol.assert_accessible()
    await page.keyboard.press("Escape")
    await expect(viewer).to_be_hidden()
    await expect(thumbnail).to_be_focused()
    assert page.url.endswith(f"/rooms/{room_id}")  # the chat was never replaced


async def test_without_javascript_an_image_opens_in_a_new_tab(visit, daily_people):
    room_id = room_of_three(daily_people, "pictures no script", 0)
    bob = daily_people["bob"]
    posted = bob.post(
        f"/rooms/{room_id}/messages",
        {"body": ""},
        files=[("files", ("plain.png", png(), "image/png"))],
    )
    assert posted.status_code == 303, posted.text
    carol = await visit("carol", javascript=False)
    page = carol.page
    await page.goto(f"/rooms/{room_id}")
    async with page.context.expect_page() as opened:
        await page.get_by_role("link", name="plain.png").click()
    image_tab = await opened.value
    await image_tab.wait_for_load_state()
    assert "/attachments/" in image_tab.url
    assert page.url.endswith(f"/rooms/{room_id}")
