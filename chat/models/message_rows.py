"""Plain rows of messages: what pages and frames read when they need no ORM object."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from chat.models.attachments import Attachment
from chat.sanitize import without_bidi_controls

# How much of a message a reply quotes.
QUOTE_CHARS = 140

# A message's id and change number, and the change number of the message it quotes:
# its rendered HTML is the same for as long as these are. A plain tuple, which the
# garbage collector stops tracking (chat/html_cache.py keeps thousands).
MessageVersion = tuple[int, int, int | None]


def group_reactions(reactions: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(emoji, names of who reacted) in the order each emoji was first used, from
    (emoji, name) in the order of the reactions ("" for an account since deleted)."""
    groups: dict[str, list[str]] = {}
    for emoji, name in reactions:
        groups.setdefault(emoji, []).append(name or "deleted user")
    return list(groups.items())


def excerpt_of(body: str, attachments: Iterable[Attachment]) -> str:
    """The start of the text as typed, on one line (or, for a message of files alone,
    their names): what a reply quotes. Empty for a deleted message."""
    text = " ".join(without_bidi_controls(body).split()) or ", ".join(
        a.filename for a in attachments
    )
    if len(text) <= QUOTE_CHARS:
        return text
    return text[: QUOTE_CHARS - 1].rstrip() + "…"


class Quote(NamedTuple):
    """What a reply shows of the message it quotes, as that message is now."""

    author_name: str  # "" for an account since deleted
    excerpt: str  # "" once deleted
    changed: int


class MessageContent(NamedTuple):
    """What a message's content shows (messages/_content.html), as message_pages.contents
    reads it; a Message offers the template the same names."""

    id: int
    room_id: int
    seq: int
    author_name: str
    created_at: datetime
    edited_at: datetime | None
    is_deleted: bool
    html: str
    changed: int
    reply_to_seq: int | None
    quote: Quote | None
    attachments: list[Attachment]
    reaction_groups: list[tuple[str, list[str]]]
    # The author's display name ("" for none): shown beside their username.
    author_display: str = ""
    # The storage key of the author's profile picture, if any.
    author_avatar: str | None = None

    @property
    def version(self) -> MessageVersion:
        return (self.id, self.changed, self.quote.changed if self.quote is not None else None)


class MessageHead(NamedTuple):
    """What a page shows of a message around its HTML (chat/html_cache.py keeps that HTML):
    read as a plain row, since the HTML itself is rendered once per version."""

    id: int
    seq: int
    author_id: int | None
    author_name: str
    is_deleted: bool
    changed: int
    original_changed: int | None

    @property
    def version(self) -> MessageVersion:
        return (self.id, self.changed, self.original_changed)
