"""Browser helpers: a person at a Chromium tab, axe-core checks, screenshots."""

from __future__ import annotations

import json
from dataclasses import dataclass

from playwright.async_api import APIResponse, Page, expect

from tests.support import CSRF_META, PASSWORD, ROOT

AXE_URL = "/static/vendor/axe-core-4.14.1.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
NARROW = {"width": 390, "height": 844}

# Installed before any page script: records what must never happen in these tests.
WATCH_SCRIPT = """
window.__xss = 0;
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@dataclass
class Visitor:
    """One person in their own browser context (cookies of their own)."""

    page: Page
    base_url: str
    username: str = ""

    # --- by HTTP, with the browser's own cookies: fast setup, not what is under test ----

    async def csrf_token(self) -> str:
        # Signed in, /login redirects to a page that carries the token too.
        response = await self.page.request.get("/login")
        return CSRF_META.search(await response.text()).group(1)

    async def post(self, path: str, form: dict[str, str] | None = None) -> APIResponse:
        return await self.page.request.post(
            path,
            form={"csrf_token": await self.csrf_token(), **(form or {})},
            headers={"Origin": self.base_url},
            max_redirects=0,
        )

    async def sign_up(self, username: str) -> Visitor:
        response = await self.post("/signup", {"username": username, "password": PASSWORD})
        assert response.status == 303, await response.text()
        self.username = username
        return self

    async def create_room(self, name: str, visibility: str = "public") -> int:
        response = await self.post("/rooms", {"name": name, "visibility": visibility})
        assert response.status == 303, await response.text()
        return int(response.headers["location"].rsplit("/", 1)[1])

    async def join(self, room_id: int) -> None:
        response = await self.post(f"/rooms/{room_id}/join")
        assert response.status == 303, await response.text()

    async def say(self, room_id: int, body: str) -> APIResponse:
        response = await self.post(f"/rooms/{room_id}/messages", {"body": body})
        assert response.status == 303, await response.text()
        return response

    # --- what the person sees ----------------------------------------------------------

    def messages(self):
        return self.page.locator("#messages > [data-seq]")

    async def message_texts(self) -> list[str]:
        return await self.messages().locator(".body").all_inner_texts()

    async def expect_messages(self, texts: list[str]) -> None:
        await expect(self.messages().locator(".body")).to_have_text(texts)

    async def assert_accessible(self) -> None:
        """axe-core finds no WCAG 2.2 A/AA violation on the page as it is now."""
        if not await self.page.evaluate("typeof window.axe !== 'undefined'"):
            # Loaded from the app's own origin: the page's CSP allows nothing else.
            await self.page.add_script_tag(url=AXE_URL)
        violations = await self.page.evaluate(
            """async (tags) => {
                const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
                return result.violations.map((v) => ({
                    rule: v.id, help: v.help,
                    nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary),
                }));
            }""",
            AXE_TAGS,
        )
        assert violations == [], f"{self.page.url}\n{json.dumps(violations, indent=2)}"

    async def assert_nothing_executed(self) -> None:
        assert await self.page.evaluate("window.__xss") == 0
        assert await self.page.evaluate("window.__cspViolations") == []

    async def screenshot(self, name: str) -> None:
        """The page as it looks now, wide and at a phone's 390px width."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        wide = self.page.viewport_size
        await self.page.screenshot(path=SCREENSHOTS / f"{name}.png")
        await self.page.set_viewport_size(NARROW)
        await self.page.screenshot(path=SCREENSHOTS / f"{name}-narrow.png", full_page=True)
        await self.page.set_viewport_size(wide)


# What has focus, as a person sees it: its name, and whether a focus ring shows on screen.
FOCUS_SCRIPT = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const label = e.labels && e.labels.length ? e.labels[0].textContent : "";
  const style = getComputedStyle(e);
  const box = e.getBoundingClientRect();
  return {
    name: (e.getAttribute("aria-label") || label || e.textContent || e.placeholder || "")
      .replace(/\\s+/g, " ").trim(),
    id: e.id,
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    onScreen: box.bottom > 0 && box.top < window.innerHeight && box.width > 0,
  };
}"""


async def focused(page: Page) -> dict:
    """The focused element; fails when focus was lost to the page or cannot be seen."""
    focus = await page.evaluate(FOCUS_SCRIPT)
    assert focus is not None, f"focus lost on {page.url}"
    assert focus["ring"] and focus["onScreen"], f"focus not visible: {focus}"
    return focus


async def press(page: Page, key: str) -> dict:
    await page.keyboard.press(key)
    return await focused(page)


async def tab_to(page: Page, name: str, *, key: str = "Tab", limit: int = 40) -> dict:
    """Presses Tab (or Shift+Tab) until the element called `name` has focus."""
    stops = []
    for _ in range(limit):
        focus = await press(page, key)
        if focus["name"] == name:
            return focus
        stops.append(focus["name"])
    raise AssertionError(f"{name!r} is not a Tab stop on {page.url}; stops: {stops}")
