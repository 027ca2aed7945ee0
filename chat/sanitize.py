"""The one place that turns user text into HTML.

Message text is plain text plus a small Markdown subset (emphasis, strikethrough,
inline code, fenced code blocks, links and bare URLs). markdown-it-py renders it
with raw HTML off; nh3 (the Rust `ammonia` sanitizer) then keeps only the tags and
attributes below, whatever the renderer produced. bleach, the usual choice in older
designs, is deprecated and archived by its maintainers; nh3 is maintained, fast
and allow-list based.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {"p", "br", "em", "strong", "s", "code", "pre", "a"}
ALLOWED_ATTRIBUTES = {"a": {"href"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "nofollow noopener noreferrer"

_markdown = MarkdownIt("zero", {"html": False, "linkify": True, "breaks": True}).enable(
    ["emphasis", "strikethrough", "backticks", "fence", "link", "autolink", "linkify", "newline"]
)


def render(text: str) -> str:
    """Sanitized HTML for a message body."""
    return nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )
