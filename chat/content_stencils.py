"""A new message's content (messages/_content.html) without rendering the template:
filled into a stencil, the template's output for the same author in the same room with
stand-in values where the message's own go.

Why: a posted message's content is rendered once, for its frame, the reply and every
page after it (chat.html_cache caches it per version), and that render was the largest
single cost of a post in Python: about 110 µs of Jinja (author, avatar, time, links),
against a few µs to join the stencil's pieces. Measured on the post path in process,
interleaved with the template (figures in the commit message).

What varies between the messages of a stencil is what a fresh message of one author in
one room differs in: its id, seq, text, HTML and time. A stencil is made by rendering a
stand-in of the message twice, with two sets of marker values, and splitting the first
render at its markers; it is kept only if filling it with the second set's values gives
the second render byte for byte. So a template that uses any of these values other
than as the text the stencil fills in (a format of the time it does not know, an
escaped HTML, the text itself) makes no stencil, and the template renders as before.
Everything else the template reads is the real message's (the stand-in is a copy), and
is part of the stencil's key or fixed by the shapes stencils are used for: no reply,
file, reaction, edit or deletion. tests/test_fast_paths.py and tests/test_html_cache.py
check the bytes against the template's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm.instrumentation import manager_of_class

from chat.models import Message

MAX_STENCILS = 4096
_MANAGER = manager_of_class(Message)
# The relationships a stand-in copies: a message must have them loaded.
_LOADED = ("author", "reactions", "attachments", "reply_to")


class _Markers:
    """One set of stand-in values, and the text each is rendered as."""

    def __init__(self, number: int, when: datetime, html: str, body: str) -> None:
        self.values = {"id": number, "seq": number, "created_at": when, "html": html, "body": body}
        self.texts = fill_texts(number, when, html)


def fill_texts(seq: int, created_at: datetime, html: str, time: bool = True) -> dict[str, str]:
    """What the template makes of each value the stencil fills in, by slot name. The
    minute is cut from the ISO form, which strftime("%Y-%m-%d %H:%M") writes alike from
    the year 1000 on (strftime is the dearer of the two). Without `time`, no time (a
    stencil without its slots: a frame's article)."""
    if not time:
        return {"seq": str(seq), "html": html}
    iso = created_at.isoformat()
    if created_at.year >= 1000:
        minute = f"{iso[:10]} {iso[11:16]}"
    else:
        minute = created_at.strftime("%Y-%m-%d %H:%M")
    return {"seq": str(seq), "iso": iso, "minute": minute, "html": html}


# Values no message has: 17-digit numbers (paths take up to 18), times in the 1970s, and
# HTML that an escaping template would change.
_A = _Markers(
    73_019_486_270_051_938,
    datetime(1971, 2, 3, 4, 5, 6, 789_012, tzinfo=UTC),
    "<i data-stencil>a</i>",
    "stencil body a",
)
_B = _Markers(
    64_830_571_928_364_017,
    datetime(1978, 11, 12, 13, 14, 15, 161_718, tzinfo=UTC),
    "<b data-stencil>b</b>",
    "stencil body b",
)
_SLOTS = re.compile("|".join(re.escape(text) for text in _A.texts.values()))
_SLOT_OF_TEXT = {text: name for name, text in _A.texts.items()}

# A stencil: the template's output between the slots, and each slot's name.
Stencil = tuple[tuple[str, ...], tuple[str, ...]]


class ContentStencils:
    """Stencils by author and room, for `render(message)` (the template's render)."""

    def __init__(self, render: Callable[[Any], str]) -> None:
        self._render = render
        # None: that key makes no stencil (see the module docstring).
        self._stencils: dict[Hashable, Stencil | None] = {}

    def content(self, message: Any, html: str | None = None) -> str | None:
        """The content of `message` from its stencil, or None when it has none. `html`:
        what fills the HTML's place instead of the message's own (a frame's article is
        stencilled around its content: chat.message_path.MessagePath.render)."""
        if type(message) is not Message:
            return None
        state = message.__dict__
        if not _fits(message, state):
            return None
        author = state["author"]
        room_id, author_id = message.room_id, message.author_id
        if author is None:  # a deleted account's
            key: tuple[Any, ...] = (room_id, author_id, "", "", None)
        else:
            key = (room_id, author_id, author.username, author.display_name, author.avatar_key)
        stencil = self._stencils.get(key, False)
        if stencil is False:
            if len(self._stencils) >= MAX_STENCILS:
                self._stencils.clear()
            stencil = self._stencils[key] = self._made(message)
        if stencil is None:
            return None
        pieces, slots = stencil
        texts = fill_texts(
            message.seq,
            message.created_at,
            message.html if html is None else html,
            time="iso" in slots or "minute" in slots,
        )
        filled = [pieces[0]]
        for slot, piece in zip(slots, pieces[1:], strict=True):
            filled.append(texts[slot])
            filled.append(piece)
        return "".join(filled)

    def _made(self, message: Message) -> Stencil | None:
        first, second = (self._render(_stand_in(message, markers)) for markers in (_A, _B))
        parts = _SLOTS.split(first)
        slots = tuple(_SLOT_OF_TEXT[text] for text in _SLOTS.findall(first))
        pieces = tuple(parts)
        refilled = [pieces[0]]
        for slot, piece in zip(slots, pieces[1:], strict=True):
            refilled.append(_B.texts[slot])
            refilled.append(piece)
        if "".join(refilled) != second:
            return None
        return pieces, slots


def _fits(message: Message, state: dict[str, Any]) -> bool:
    """A fresh message's shape, with everything the template reads loaded. Read from
    its state (`__dict__`) where it is there: through the ORM's attributes these checks
    cost as much as filling the stencil."""

    def value(name: str) -> Any:
        return state[name] if name in state else getattr(message, name)

    return (
        all(name in state for name in _LOADED)
        and value("reply_to_seq") is None
        and state["reply_to"] is None
        and not state["attachments"]
        and not state["reactions"]
        and value("edited_at") is None
        and value("deleted_at") is None
        and value("created_at") is not None
    )


def _stand_in(message: Message, markers: _Markers) -> Message:
    """A copy of `message` (never in a session) with the marker values in place of its own."""
    stand_in = _MANAGER.new_instance()
    stand_in.__dict__.update(
        (name, value) for name, value in message.__dict__.items() if name != "_sa_instance_state"
    )
    stand_in.__dict__.update(markers.values)
    return stand_in
