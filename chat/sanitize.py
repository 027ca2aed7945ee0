"""The one place that turns user text into HTML.

Message text is plain text plus a small Markdown subset (emphasis, strikethrough,
inline code, fenced code blocks, links and bare URLs). markdown-it-py renders it
with raw HTML off; nh3 (the Rust `ammonia` sanitizer) then keeps only the tags and
attributes below, whatever the renderer produced. bleach, the usual choice in older
designs, is deprecated and archived by its maintainers; nh3 is maintained, fast
and allow-list based.

@mentions: a markdown-it core rule turns `@name` in plain text (never in code, links
or the middle of a word or e-mail address) into `<span class="mention">` when `name`
is one of the room's members. It makes tokens, not HTML, so user text stays text;
nh3 then lets `span` through with that one class and a `data-username` only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

ALLOWED_TAGS = {"p", "br", "em", "strong", "s", "code", "pre", "a", "span"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "span": {"data-username"}}
ALLOWED_CLASSES = {"span": {"mention"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "nofollow noopener noreferrer"

# Usernames are [A-Za-z0-9][A-Za-z0-9_-]{2,31}. Not after a word character, "@" or "."
# (e-mail addresses, "@@x") and not followed by more name characters or "@".
MENTION = re.compile(r"(?<![A-Za-z0-9_@.+-])@([A-Za-z0-9][A-Za-z0-9_-]{2,31})(?![A-Za-z0-9_@-])")


def _mentions(state: StateCore) -> None:
    """Split plain-text tokens at @mentions of members (state.env["members"] maps each
    lower-cased username to its spelling); every candidate name goes to env["found"]."""
    members: Mapping[str, str] = state.env.get("members", {})
    found: set[str] | None = state.env.get("found")
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        link_depth = 0
        for token in block.children:
            link_depth += token.type == "link_open"
            link_depth -= token.type == "link_close"
            if token.type != "text" or link_depth:
                children.append(token)
                continue
            start = 0
            for match in MENTION.finditer(token.content):
                name = match.group(1).lower()
                if found is not None:
                    found.add(name)
                if name not in members:
                    continue
                children.append(Token("text", "", 0, content=token.content[start : match.start()]))
                children.append(
                    Token(
                        "mention_open",
                        "span",
                        1,
                        attrs={"class": "mention", "data-username": members[name]},
                    )
                )
                children.append(Token("text", "", 0, content=match.group(0)))
                children.append(Token("mention_close", "span", -1))
                start = match.end()
            children.append(Token("text", "", 0, content=token.content[start:]))
        block.children = children


_markdown = MarkdownIt("zero", {"html": False, "linkify": True, "breaks": True}).enable(
    ["emphasis", "strikethrough", "backticks", "fence", "link", "autolink", "linkify", "newline"]
)
_markdown.core.ruler.push("mentions", _mentions)


def mention_candidates(text: str) -> set[str]:
    """Every lower-cased name written as an @mention (outside code and links)."""
    found: set[str] = set()
    _markdown.parse(text, {"found": found})
    return found


# Text that no enabled rule can turn into markup: no emphasis, code, link, URL or
# @mention character, a "." only before a space or at the end (so never a domain
# name), no line break, no space at either end. Most chat lines are like this; the
# Markdown parse and the sanitizer cost a post more than the rest of its rendering.
# tests/test_sanitize.py checks it against the full path, byte for byte.
_PLAIN_TEXT = re.compile(r"(?! )(?:[ A-Za-z0-9,!?'\"&<>()#%+=;-]|\.(?= |\Z))+(?<! )")


# Bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069): a
# message keeps them as typed, but they are left out of everything shown, where an
# override would reverse the text after it ("txt.exe" shown as "exe.txt").
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def without_bidi_controls(text: str) -> str:
    return _BIDI_CONTROLS.sub("", text)


def render(text: str, members: Mapping[str, str] | None = None) -> str:
    """Sanitized HTML for a message body; `members` (lower-cased name → username) are
    the names that may be mentioned."""
    text = without_bidi_controls(text)
    if _PLAIN_TEXT.fullmatch(text):
        return f"<p>{html.escape(text, quote=False)}</p>\n"
    return _render_markdown(text, members)


def _render_markdown(text: str, members: Mapping[str, str] | None = None) -> str:
    env = {"members": members or {}}
    return nh3.clean(
        _markdown.renderer.render(_markdown.parse(text, env), _markdown.options, env),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )


INLINE_TAGS = {"em", "strong", "s", "code", "a"}


def render_inline(text: str) -> str:
    """Sanitized HTML for one line (a room's topic): emphasis, code and links, no
    paragraphs or mentions."""
    text = without_bidi_controls(text)
    return nh3.clean(
        _markdown.renderInline(text, {"members": {}}),
        tags=INLINE_TAGS,
        attributes={"a": {"href"}},
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )
