"""A corpus of XSS payloads (tests/browser/xss_payloads.txt) as message text, room name,
username and search query, in Chromium: nothing executes, and whatever is accepted is
shown back as text. Payloads set `window.__xss`, call alert/confirm/prompt or log
"__xss"; the page's CSP violations are recorded too (tests/browser/support.py)."""

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import expect

from chat import sanitize
from tests.browser.support import Visitor
from tests.browser.test_journeys import HAS_SEARCH

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

USERNAME_RULES = "Usernames are 3 to 32 letters, digits, _ or -, starting with a letter or digit."
PAYLOADS = [
    line
    for line in (Path(__file__).parent / "xss_payloads.txt").read_text().splitlines()
    if line.strip()
]

# Every element and attribute inside message bodies must be one the sanitizer allows.
ALLOWED_MARKUP_SCRIPT = """([tags, attributes]) => {
  const bad = [];
  for (const element of document.querySelectorAll("#messages .body *")) {
    const tag = element.localName;
    if (!tags.includes(tag)) bad.push(element.outerHTML);
    for (const attribute of element.attributes) {
      // app.js takes links of messages other than the current one out of the Tab order.
      if (attribute.name === "tabindex" && attribute.value === "-1") continue;
      if (!(attributes[tag] || []).includes(attribute.name)) bad.push(element.outerHTML);
    }
    // Relative links resolve to this site; what matters is the scheme a click would use.
    if (element.hasAttribute("href") && !["http:", "https:", "mailto:"].includes(
      new URL(element.href).protocol)) bad.push(element.outerHTML);
  }
  return bad;
}"""

# The text the sanitized HTML shows, parsed inertly (DOMParser runs no scripts).
SHOWN_TEXT_SCRIPT = """(html) =>
  new DOMParser().parseFromString(html, "text/html").body.textContent.replace(/\\s+/g, " ").trim()
"""


async def test_the_corpus_is_large_and_has_no_repeats():
    assert len(PAYLOADS) >= 150
    assert len(set(PAYLOADS)) == len(PAYLOADS)


async def watched(visitor: Visitor) -> list[str]:
    """Dialogs and "__xss" console lines in any of the visitor's tabs: each is an execution."""
    executions: list[str] = []

    async def dismiss(dialog) -> None:
        executions.append(f"dialog: {dialog.message}")
        await dialog.dismiss()

    visitor.page.context.on("dialog", dismiss)
    visitor.page.context.on(
        "console",
        lambda message: "__xss" in message.text and executions.append(message.text),
    )
    return executions


def allowed_markup() -> tuple[list[str], dict[str, list[str]]]:
    attributes = {tag: sorted(names) for tag, names in sanitize.ALLOWED_ATTRIBUTES.items()}
    attributes["a"] = sorted({*attributes.get("a", []), "rel"})
    for tag in getattr(sanitize, "ALLOWED_CLASSES", {}):
        attributes[tag] = sorted({*attributes.get(tag, []), "class"})
    return sorted(sanitize.ALLOWED_TAGS), attributes


@pytest.mark.bulk
async def test_payloads_in_messages_and_room_names_never_execute_and_show_as_text(browse):
    alice = await (await browse()).sign_up("alice")
    executions = await watched(alice)
    room_id = await alice.create_room("XSS lab")
    await alice.page.goto(f"/rooms/{room_id}")

    accepted = []
    for payload in PAYLOADS:
        response = await alice.post(f"/rooms/{room_id}/messages", {"body": payload})
        assert response.status in (303, 400), payload
        if response.status == 303:
            accepted.append(payload)
    assert len(accepted) >= len(PAYLOADS) - 5  # only control characters are refused

    # They arrived live, over the stream, in the page that was open.
    await expect(alice.messages()).to_have_count(len(accepted), timeout=30_000)
    shown = (
        await alice.messages()
        .locator(".body")
        .evaluate_all("bodies => bodies.map(b => b.textContent.replace(/\\s+/g, ' ').trim())")
    )
    for payload, text in zip(accepted, shown, strict=True):
        assert text == await alice.page.evaluate(SHOWN_TEXT_SCRIPT, sanitize.render(payload))
        if not any(mark in payload for mark in "*_~`[]\\&#>-!<"):
            assert text == " ".join(payload.split())
    literal_html = [p for p in accepted if p.startswith("<") and p.rstrip().endswith(">")]
    assert sum(" ".join(p.split()) in shown for p in literal_html) >= len(literal_html) * 0.8
    assert await alice.page.evaluate(ALLOWED_MARKUP_SCRIPT, allowed_markup()) == []
    await alice.assert_nothing_executed()

    # The same messages rendered by the server into a fresh page.
    await alice.page.reload()
    await expect(alice.messages()).to_have_count(50)
    assert await alice.page.evaluate(ALLOWED_MARKUP_SCRIPT, allowed_markup()) == []
    await alice.assert_nothing_executed()

    names = []
    for payload in PAYLOADS:
        response = await alice.post("/rooms", {"name": payload})
        assert response.status in (303, 400), payload
        if response.status == 303:
            names.append(" ".join(payload.split()))
    assert len(names) >= len(PAYLOADS) * 0.8
    await alice.page.goto("/")
    listed = await alice.page.locator(".room-list .room-name").all_inner_texts()
    assert sorted(listed) == sorted([*names, "XSS lab"])
    await alice.assert_nothing_executed()
    await alice.page.goto(f"/rooms/{room_id}")  # every name again, in the rooms nav
    nav = alice.page.get_by_role("navigation", name="Rooms")
    await expect(nav.locator(".room-name")).to_have_count(len(names) + 1)
    await alice.assert_nothing_executed()
    assert executions == []


async def test_payloads_as_usernames_are_refused_and_shown_back_as_text(browse):
    visitor = await browse()
    executions = await watched(visitor)
    tabs = [visitor.page, *[await visitor.page.context.new_page() for _ in range(3)]]

    async def sign_up_as_each(page, payloads: list[str]) -> None:
        await page.goto("/signup")
        for payload in payloads:
            # The page's own form; setting .value skips maxlength, as a forged post would.
            async with page.expect_navigation():
                await page.evaluate(
                    """(name) => {
                        const form = document.querySelector("#username").form;
                        form.username.value = name;
                        form.password.value = "long enough password";
                        form.requestSubmit();
                    }""",
                    payload,
                )
            seen = await page.evaluate(
                """() => [document.querySelector("#form-error").textContent,
                          document.querySelector("#username").value,
                          window.__xss, window.__cspViolations]"""
            )
            assert seen == [USERNAME_RULES, payload.strip(), 0, []], payload

    # Four tabs at once: the server refuses before hashing, so this is quick.
    await asyncio.gather(*(sign_up_as_each(tab, PAYLOADS[n::4]) for n, tab in enumerate(tabs)))
    assert executions == []


@pytest.mark.skipif(not HAS_SEARCH, reason="no /search route yet")
async def test_payloads_as_search_queries_never_execute_and_show_as_text(browse):
    from chat.search import parse

    alice = await (await browse()).sign_up("alice")
    executions = await watched(alice)
    room_id = await alice.create_room("XSS lab")
    for payload in PAYLOADS[:20]:
        await alice.say(room_id, f"{payload} __xss")
    page = alice.page
    await page.goto("/search")
    search_box = page.get_by_role("searchbox", name="Search messages")
    results = page.locator("#search-results")
    for n, payload in enumerate(PAYLOADS):
        shown = " ".join(payload.split())
        # The search page swaps in only its results (htmx); every tenth one is a full page.
        if n % 10 == 0:
            await page.goto(f"/search?q={quote(payload)}")
            assert (await search_box.input_value()).split() == payload.split()
        else:
            await search_box.fill(payload)
            await search_box.press("Enter")
        if parse(shown).is_empty:
            await expect(results).to_contain_text("Type words")
        else:
            await expect(results.get_by_role("heading")).to_have_text(f"Results for “{shown}”")
        await alice.assert_nothing_executed()
    # Results quote the messages back (snippets): text too.
    await search_box.fill("__xss")
    await search_box.press("Enter")
    await expect(page.locator(".search-hit")).to_have_count(20)
    await alice.assert_nothing_executed()
    assert executions == []
