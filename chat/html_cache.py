"""HTML rendered once and kept: each message's content per version, and the items of
the member and room lists per what they show.

A message renders as a shell (messages/_message.html: which reader's own it is, whether
a permalink targets it) around its content (messages/_content.html: author, time, text,
quote, files, reactions), which is the same for every reader. The content is rendered
once per `MessageVersion` and served from memory after that: a room page shows fifty
messages that rarely change, and rendering them was most of its cost. Pages read the
messages as MessageHead rows and load whole messages only for versions not kept.

The one part of the content that is a reader's own is the CSRF field of the reactions
form (for browsers without JavaScript). The content is kept with a random marker in
that place and split there; each reader's field, or nothing for a stream frame (app.js
sends the token as a header), is joined in. The marker is never sent to anyone, so no
text a user writes can produce or find it.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

from jinja2 import Environment, pass_context
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.requests import Request

from chat.hot_statements import run_sync_work
from chat.models import Message, MessageContent, MessageHead

# About 1 KB each with its key (0.7 KB of HTML on average over 2,000 seeded messages):
# enough for the recent pages of many busy rooms per process.
KEPT_VERSIONS = 20_000


NO_CSRF_FIELD = Markup("")


def csrf_field(request: Request | None) -> Markup:
    if request is None:
        return NO_CSRF_FIELD
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(
        request.state.csrf_token
    )


class KeptPieces:
    """Rendered HTML by key, kept as the plain strings around the places where each
    reader's own part goes, the least recently used going first once `capacity` are
    kept. Plain tuples of plain strings: the garbage collector stops tracking those, so
    thousands kept add nothing to its full collections."""

    def __init__(self, capacity: int) -> None:
        self._kept: OrderedDict[Hashable, tuple[str, ...]] = OrderedDict()
        self._capacity = capacity

    def get(self, key: Hashable) -> tuple[str, ...] | None:
        pieces = self._kept.get(key)
        if pieces is not None:
            self._kept.move_to_end(key)
        return pieces

    def holds(self, key: Hashable) -> bool:
        """Whether `key` is kept, without counting as a use: safe to ask from another
        thread (the database's), since it changes nothing."""
        return key in self._kept

    def keep(self, key: Hashable, pieces: tuple[str, ...]) -> tuple[str, ...]:
        self._kept[key] = pieces
        if len(self._kept) > self._capacity:
            self._kept.popitem(last=False)
        return pieces


class KeptHtml(KeptPieces):
    """KeptPieces split at a random CSRF marker (`csrf_field`, given to the template in
    place of the reader's field), joined again with each reader's field when served."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.marker = Markup.escape(secrets.token_hex(16))

    def keep_html(self, key: Hashable, html: str) -> tuple[str, ...]:
        return self.keep(key, tuple(html.split(self.marker)))


class MessageFragments:
    def __init__(self, templates: Environment, kept: int = KEPT_VERSIONS) -> None:
        self._template = templates.get_template("messages/_content.html")
        self.kept = KeptHtml(kept)
        templates.globals["message_content"] = self._content_in_template

    def content(self, message: Message, csrf: Markup = NO_CSRF_FIELD) -> Markup:
        """The content of `message` as it stands, with the reader's CSRF field."""
        return _joined(csrf, self._pieces(message))

    def read_unkept(self, db: Session, heads: list[MessageHead]) -> list[MessageContent]:
        """Within the page's own reads (one hop to the database): the messages of `heads`
        whose version is not kept, read for `contents`, which saves such a page a hop."""
        missing = [head.id for head in heads if not self.kept.holds(head.version)]
        return Message.contents(db, missing) if missing else []

    async def contents(
        self,
        db: async_sessionmaker[AsyncSession],
        heads: Iterable[MessageHead],
        csrf: Markup,
        read: Iterable[MessageContent] = (),
    ) -> dict[int, Markup]:
        """The content of each message of a page by id: rendered from `read` (what
        `read_unkept` read with the page), else kept, else loaded in one more hop (a
        version dropped from the kept ones since the page's reads)."""
        heads = list(heads)
        pieces = {message.id: self._pieces(message) for message in read}
        for head in heads:
            if head.id not in pieces and (kept := self.kept.get(head.version)) is not None:
                pieces[head.id] = kept
        missing = [head.id for head in heads if head.id not in pieces]
        if missing:
            for message in await run_sync_work(
                db, lambda session: Message.contents(session, missing), autocommit=True
            ):
                pieces[message.id] = self._pieces(message)
        return {head.id: _joined(csrf, pieces.get(head.id, ())) for head in heads}

    def _pieces(self, message: Message | MessageContent) -> tuple[str, ...]:
        version = message.version
        pieces = self.kept.get(version)
        if pieces is None:
            html = self._template.render(message=message, csrf_field=self.kept.marker)
            pieces = self.kept.keep_html(version, html)
        return pieces

    @pass_context
    def _content_in_template(self, context: Any, message: Message | MessageHead) -> Markup:
        """`message_content(message)` in messages/_message.html: from the page's
        `contents` when the handler read them, else rendered (or kept) from the message."""
        contents = context.get("contents")
        if contents is not None:
            return contents[message.id]
        return self.content(message, csrf_field(context.get("request")))  # type: ignore[arg-type]


# A few hundred bytes each: the members of a few hundred busy rooms, and their readers'
# room lists with the unread counts they saw.
KEPT_ITEMS = 20_000


class KeptItems:
    """List items that show nothing but the values they are given (and the reader's
    CSRF field, joined in as for message content), each rendered once per distinct
    values and kept: `kept_items("rooms/_member.html", request, items)` in a template,
    where each of `items` is a dict of one item's values. A room page lists every
    member and every room of the reader's; rendering those items in a template loop was
    a third of what a page cost, and even calling a template function once per item
    costs more than serving it kept, so one call serves the whole list.

    An item is rendered with a stand-in for the request that offers its links
    (`url_for`) and nothing of the reader's (session, CSRF token), so that an item that
    asked for those would fail loudly instead of being kept and shown to others.
    """

    def __init__(self, templates: Environment, kept: int = KEPT_ITEMS) -> None:
        self._templates = templates
        self.kept = KeptHtml(kept)
        templates.globals["kept_items"] = self._items

    def _items(self, name: str, request: Request, items: Iterable[dict[str, Hashable]]) -> Markup:
        base_url = str(request.base_url)
        reader_csrf = None
        html = []
        for values in items:
            key = (name, base_url, *values.items())
            pieces = self.kept.get(key)
            if pieces is None:
                rendered = self._templates.get_template(name).render(
                    request=_LinksOnly(request), csrf_field=self.kept.marker, **values
                )
                pieces = self.kept.keep_html(key, rendered)
            if len(pieces) == 1:  # most items have no form
                html.append(pieces[0])
            else:
                reader_csrf = reader_csrf or str(csrf_field(request))
                html.append(reader_csrf.join(pieces))
        return Markup("".join(html))  # noqa: S704 (autoescaped template output)


class _LinksOnly:
    """What a kept item may use of the request: what its links are made of (the
    template's `url_for`)."""

    __slots__ = ("app", "base_url")

    def __init__(self, request: Request) -> None:
        self.app = request.app
        self.base_url = request.base_url


def _joined(csrf: Markup, pieces: tuple[str, ...]) -> Markup:
    # The pieces are autoescaped template output, kept as plain strings (KeptPieces).
    return Markup(str(csrf).join(pieces))  # noqa: S704
