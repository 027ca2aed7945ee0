"""Attachments in Chromium: chosen with the composer's file field, live for everyone,
reachable by keyboard, and the same without JavaScript."""

import io
import re

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.browser.support import tab_to

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


def png(width=120, height=80):
    out = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(out, "PNG")
    return out.getvalue()


FILES = [
    {"name": "sunset.png", "mimeType": "image/png", "buffer": png()},
    {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"bring snacks"},
]


async def test_attaching_an_image_and_a_file_shows_them_live_and_by_keyboard(browse):
    alice = await (await browse()).sign_up("alice")
    bob = await (await browse()).sign_up("bob")
    room_id = await alice.create_room("Trips")
    await bob.join(room_id)
    await bob.page.goto(f"/rooms/{room_id}")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")

    await page.get_by_label("Attach files").set_input_files(FILES)
    composer = page.get_by_role("textbox", name="Message Trips")
    await composer.fill("from the hill")
    await composer.press("Enter")
    await expect(composer).to_have_value("")
    await expect(page.get_by_label("Attach files")).to_have_value("")
    for person in (alice, bob):
        await person.expect_messages(["from the hill"])
        image = person.messages().first.get_by_role("img", name="sunset.png")
        await expect(image).to_have_attribute("width", "120")
        await expect(image).to_have_attribute("height", "80")
        await expect(image).to_have_js_property("naturalWidth", 120)  # it loaded

    # The download link is a Tab stop of the newest message, reached back from the composer.
    await tab_to(page, "notes.txt", key="Shift+Tab")
    async with page.expect_download() as download:
        await page.keyboard.press("Enter")
    assert (await download.value).suggested_filename == "notes.txt"
    await alice.assert_accessible()
    await bob.assert_accessible()
    await bob.screenshot("room-attachments")
    await alice.assert_nothing_executed()


async def test_attachments_work_without_javascript(browse):
    alice = await (await browse(javascript=False)).sign_up("alice")
    room_id = await alice.create_room("Trips")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await page.get_by_label("Attach files").set_input_files(FILES[:1])
    await page.get_by_role("button", name="Send").click()
    await expect(page).to_have_url(re.compile(rf"/rooms/{room_id}#message-1$"))
    image = alice.messages().first.get_by_role("img", name="sunset.png")
    await expect(image).to_have_js_property("naturalWidth", 120)
    # Too many files: the page says why, and nothing was sent.
    await page.get_by_label("Attach files").set_input_files(FILES[:1] * 6)
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#composer-error")).to_contain_text("at most 5 files")
    await expect(alice.messages()).to_have_count(1)


DROP_AND_PASTE = """() => {
  const composer = document.getElementById("composer-body");
  const files = (name) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["some text"], name, {type: "text/plain"}));
    return transfer;
  };
  composer.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true,
                                                 dataTransfer: files("dropped.txt")}));
  composer.dispatchEvent(new ClipboardEvent("paste", {bubbles: true, cancelable: true,
                                                       clipboardData: files("pasted.txt")}));
}"""


async def test_files_dropped_or_pasted_on_the_composer_are_sent(browse):
    alice = await (await browse()).sign_up("alice")
    room_id = await alice.create_room("Trips")
    page = alice.page
    await page.goto(f"/rooms/{room_id}")
    await page.evaluate(DROP_AND_PASTE)
    await page.get_by_role("textbox", name="Message Trips").press("Enter")
    links = alice.messages().first.locator(".attachment-file a")
    await expect(links).to_have_text(["dropped.txt", "pasted.txt"])
