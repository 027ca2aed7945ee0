"""HTML rendered once and served from memory after that: one `HtmlCache` per app
(`app.state.html_cache`), the only place that knows what is cached.

- Each message's content, per version (`content`, `contents`, and `message_content` in
  templates). A message renders as a shell (messages/_message.html: which reader's own
  it is, whether a permalink targets it) around its content (messages/_content.html:
  author, time, text, quote, files, reactions), which is the same for every reader: a
  room page shows fifty messages that rarely change, and rendering them was most of its
  cost. Pages read the messages as MessageHead rows and load whole messages only for
  versions not cached (`read_uncached`).
- The items of the member and room lists, per the values they show (`cached_items` in
  templates): rendering those items in a template loop was a third of a room page.
- A new message's content, filled into a stencil of its author's messages in its room
  rather than rendered (chat/content_stencils.py).
- The empty composer every htmx post of a room is answered with, per room
  (`empty_composer`): rendering it was a tenth of a post.

The one part of each that is a reader's own is the CSRF field (or token) of its forms.
The HTML is cached with a random marker in that place and split there; each reader's
field is joined in (or nothing, for a stream frame: app.js sends the token as a header).
The marker is never sent to anyone, so no text a user writes can produce or find it.

Content cached for everyone links with root-relative paths (`RoutePaths`, given to its
templates as `url_for`): it is the same for every reader and every host name.

With CHAT_FAST_PATHS=0 (`fast=False`) nothing is cached: every call renders the
templates as an ordinary render would, which must give the same bytes
(tests/test_fast_paths.py).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from jinja2 import Environment, pass_context
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from chat.content_stencils import ContentStencils
from chat.hot_statements import run_sync_work
from chat.models import Message, MessageContent, MessageHead, Room, message_pages

# About 1 KB each with its key (0.7 KB of HTML on average over 2,000 seeded messages):
# enough for the recent pages of many busy rooms per process.
CACHED_VERSIONS = 20_000
# A few hundred bytes each: the members of a few hundred busy rooms, and their readers'
# room lists with the unread counts they saw.
CACHED_ITEMS = 20_000
CACHED_COMPOSERS = 1024
MAX_REMEMBERED_PATHS = 10_000

NO_CSRF_FIELD = Markup("")


def csrf_field(request: Request | None) -> Markup:
    if request is None:
        return NO_CSRF_FIELD
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(
        request.state.csrf_token
    )


class SplitHtml:
    """Rendered HTML by key, cached as the plain strings around the places where each
    reader's own part goes (split at `marker`), the least recently used going first once
    `capacity` are cached. Plain tuples of plain strings: the garbage collector stops
    tracking those, so thousands cached add nothing to its full collections."""

    def __init__(self, capacity: int) -> None:
        self._cached: OrderedDict[Hashable, tuple[str, ...]] = OrderedDict()
        self._capacity = capacity
        self.marker = Markup.escape(secrets.token_hex(16))

    def get(self, key: Hashable) -> tuple[str, ...] | None:
        pieces = self._cached.get(key)
        if pieces is not None:
            self._cached.move_to_end(key)
        return pieces

    def holds(self, key: Hashable) -> bool:
        """Whether `key` is cached, without counting as a use: safe to ask from another
        thread (the database's), since it changes nothing."""
        return key in self._cached

    def put(self, key: Hashable, html: str, marker: str | None = None) -> tuple[str, ...]:
        """Cache `html` split at `marker` (this cache's own by default)."""
        pieces = self._cached[key] = tuple(html.split(marker or self.marker))
        if len(self._cached) > self._capacity:
            self._cached.popitem(last=False)
        return pieces

    def clear(self) -> None:
        self._cached.clear()


class RoutePaths:
    """`url_for` for HTML that is the same for every reader and host: the root-relative
    path of a named route (Starlette's `url_path_for`), remembered."""

    def __init__(self, routes: Mapping[str, BaseRoute]) -> None:
        self._routes = routes
        self._paths: dict[tuple[Any, ...], str] = {}

    def __call__(self, name: str, /, **path_params: Any) -> str:
        key = (name, *path_params.items())
        path = self._paths.get(key)
        if path is None:
            if len(self._paths) >= MAX_REMEMBERED_PATHS:
                self._paths.clear()
            path = self._paths[key] = str(self._routes[name].url_path_for(name, **path_params))
        return path


class HtmlCache:
    def __init__(
        self, templates: Environment, routes: Mapping[str, BaseRoute], *, fast: bool = True
    ) -> None:
        self.fast = fast
        self._templates = templates
        self._content_template = templates.get_template("messages/_content.html")
        self.paths = RoutePaths(routes)
        self.versions = SplitHtml(CACHED_VERSIONS)
        self.items = SplitHtml(CACHED_ITEMS)
        self.composers = SplitHtml(CACHED_COMPOSERS)
        self.stencils = ContentStencils(
            lambda message: self._render_content(message, self.versions.marker)
        )
        templates.globals["message_content"] = self._content_in_template
        templates.globals["cached_items"] = self._items

    # Message content.

    def content(self, message: Message | MessageContent, csrf: Markup = NO_CSRF_FIELD) -> Markup:
        """The content of `message` as it stands, with the reader's CSRF field."""
        if not self.fast:
            return Markup(self._render_content(message, csrf))  # noqa: S704 (autoescaped)
        return _joined(csrf, self._pieces(message))

    def read_uncached(self, db: Session, heads: list[MessageHead]) -> list[MessageContent]:
        """Within the page's own reads (one hop to the database): the messages of `heads`
        whose version is not cached, read for `contents`, which saves such a page a hop."""
        missing = [head.id for head in heads if not self._cached(head.version)]
        return message_pages.contents(db, missing) if missing else []

    async def contents(
        self,
        db: async_sessionmaker[AsyncSession],
        heads: Iterable[MessageHead],
        csrf: Markup,
        read: Iterable[MessageContent] = (),
    ) -> dict[int, Markup]:
        """The content of each message of a page by id: rendered from `read` (what
        `read_uncached` read with the page), else cached, else loaded in one more hop (a
        version dropped from the cache since the page's reads)."""
        heads = list(heads)
        if not self.fast:
            read_by_id = {message.id: message for message in read}
            if missing := [head.id for head in heads if head.id not in read_by_id]:
                async with db() as session:
                    read_by_id.update(
                        (message.id, message)
                        for message in await session.run_sync(message_pages.contents, missing)
                    )
            return {head.id: self.content(read_by_id[head.id], csrf) for head in heads}
        pieces = {message.id: self._pieces(message) for message in read}
        for head in heads:
            if head.id not in pieces and (cached := self.versions.get(head.version)) is not None:
                pieces[head.id] = cached
        missing = [head.id for head in heads if head.id not in pieces]
        if missing:
            for message in await run_sync_work(
                db, lambda session: message_pages.contents(session, missing), autocommit=True
            ):
                pieces[message.id] = self._pieces(message)
        return {head.id: _joined(csrf, pieces.get(head.id, ())) for head in heads}

    def _cached(self, version: Hashable) -> bool:
        return self.fast and self.versions.holds(version)

    def _pieces(self, message: Message | MessageContent) -> tuple[str, ...]:
        version = message.version
        pieces = self.versions.get(version)
        if pieces is None:
            html = self.stencils.content(message)
            if html is None:
                html = self._render_content(message, self.versions.marker)
            pieces = self.versions.put(version, html)
        return pieces

    def _render_content(self, message: Message | MessageContent, csrf: Markup) -> str:
        return self._content_template.render(message=message, csrf_field=csrf, url_for=self.paths)

    @pass_context
    def _content_in_template(self, context: Any, message: Message | MessageHead) -> Markup:
        """`message_content(message)` in messages/_message.html: from the page's
        `contents` when the handler read them, else rendered (or cached) from the message."""
        contents = context.get("contents")
        if contents is not None:
            return contents[message.id]
        return self.content(message, csrf_field(context.get("request")))  # type: ignore[arg-type]

    # List items.

    def _items(self, name: str, request: Request, items: Iterable[dict[str, Hashable]]) -> Markup:
        """`cached_items("rooms/_member.html", request, items)` in a template, where each
        of `items` is a dict of one item's values: list items that show nothing but those
        values (and the reader's CSRF field), each rendered once per distinct values. Even
        calling a template function once per item costs more than serving it cached, so
        one call serves the whole list.

        An item is rendered with a stand-in for the request that offers its links
        (`url_for`) and nothing of the reader's (session, CSRF token), so that an item
        that asked for those would fail loudly instead of being cached and shown to
        others."""
        template = self._templates.get_template(name)
        if not self.fast:
            field = csrf_field(request)
            html = "".join(
                template.render(request=request, csrf_field=field, **values) for values in items
            )
            return Markup(html)  # noqa: S704 (autoescaped template output)
        base_url = str(request.base_url)
        reader_csrf = None
        html = []
        for values in items:
            key = (name, base_url, *values.items())
            pieces = self.items.get(key)
            if pieces is None:
                rendered = template.render(
                    request=_LinksOnly(request), csrf_field=self.items.marker, **values
                )
                pieces = self.items.put(key, rendered)
            if len(pieces) == 1:  # most items have no form
                html.append(pieces[0])
            else:
                reader_csrf = reader_csrf or str(csrf_field(request))
                html.append(reader_csrf.join(pieces))
        return Markup("".join(html))  # noqa: S704 (autoescaped template output)

    # The empty composer.

    def empty_composer(self, request: Request, room: Room) -> Response:
        """The empty composer of `room` (messages/_composer.html) for this reader."""
        context = {"room": room, "error": "", "body": ""}
        if not self.fast:
            return self._templates_response(request, context)
        token = request.state.csrf_token
        # Everything the template reads besides the token and the app's settings.
        key = (str(request.base_url), room.id, room.name)
        pieces = self.composers.get(key)
        if pieces is None:
            template = self._templates.get_template("messages/_composer.html")
            html = template.render(request=request, **context)
            if html.count(token) != 1:  # the token is not only in its field: never reuse
                return HTMLResponse(html)
            pieces = self.composers.put(key, html, token)
        return HTMLResponse(token.join(pieces))

    def _templates_response(self, request: Request, context: dict[str, Any]) -> Response:
        return request.app.state.templates.TemplateResponse(
            request, "messages/_composer.html", context
        )


class _LinksOnly:
    """What a cached item may use of the request: what its links are made of (the
    template's `url_for`)."""

    __slots__ = ("app", "base_url")

    def __init__(self, request: Request) -> None:
        self.app = request.app
        self.base_url = request.base_url


def _joined(csrf: Markup, pieces: tuple[str, ...]) -> Markup:
    # The pieces are autoescaped template output, cached as plain strings (SplitHtml).
    return Markup(str(csrf).join(pieces))  # noqa: S704
