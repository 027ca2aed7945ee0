"""Searching message history: the query language, the SQL it becomes, and snippets.

`parse()` is pure: any string is a valid query. Operators it does not recognise,
values it cannot read and unbalanced quotes are plain text. Text only ever reaches the
database as bound parameters, and for the full-text engines every term is quoted
(FTS5 string syntax) or passed through a plain-text tsquery constructor (PostgreSQL),
so `NEAR(`, `*`, `OR` or `^` typed by someone are words, never query syntax.

Results are the newest matches first with a limit, keyset-paged on the message id:
nothing ranks or counts every match, which keeps common words as cheap as rare ones.
Only rooms the viewer may read are searched (Room.readable_by), so a private room's
messages cannot appear in results or snippets.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import ColumnElement, Row, and_, column, func, literal_column, select, table, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from chat.models import HAS_LINK_SQL, Message, Room, User
from chat.sanitize import without_bidi_controls

MAX_QUERY_CHARS = 500
PAGE_SIZE = 25
SNIPPET_CHARS = 200
# How many of the newest messages a PostgreSQL search looks at first: of all of them
# for a phrase, of the rooms or people named for in: and from: (see _window_floor).
PHRASE_WINDOW = 20_000
SCOPED_WINDOW = 2_000

# Words as both full-text engines see them: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")
_PART = re.compile(
    r"""
    (?P<negated>-)?
    (?:
        "(?P<phrase>[^"]*)"                                         # "exact phrase"
      | (?P<operator>[A-Za-z]+):(?:"(?P<quoted>[^"]*)"|(?P<value>[^\s"]+))  # name:value
      | (?P<word>[^\s"]+)
    )
    """,
    re.VERBOSE,
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# SQLite's FTS5 index of messages.body (chat.models.SEARCH_INDEX_DDL); rowid = messages.id.
_FTS = table("messages_fts", column("rowid"))
_FTS_MATCH = text("messages_fts MATCH :fts_query")


@dataclass(frozen=True)
class Term:
    """Words that must appear one after another (a single word is a one-word phrase)."""

    text: str
    tokens: tuple[str, ...]
    prefix: bool = False  # the last token may be the start of a longer word


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()
    excluded: tuple[Term, ...] = ()
    authors: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ()
    before: date | None = None
    after: date | None = None
    has_link: bool = False
    mentions_me: bool = False

    @property
    def is_empty(self) -> bool:
        return self == Query()


def _term(text: str, prefix: bool = False) -> Term | None:
    tokens = tuple(token.lower() for token in _TOKEN.findall(text))
    return Term(text, tokens, prefix) if tokens else None


@dataclass
class _Parts:
    terms: list[Term] = field(default_factory=list)
    excluded: list[Term] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    before: date | None = None
    after: date | None = None
    has_link: bool = False
    mentions_me: bool = False
    last_word: int | None = None  # index in `terms` of the last bare word

    def add_text(self, text: str, *, negated: bool, word: bool) -> None:
        term = _term(text)
        if term is None:
            return
        if negated:
            self.excluded.append(term)
            return
        if word:
            self.last_word = len(self.terms)
        self.terms.append(term)

    def add_operator(self, name: str, value: str) -> bool:
        """Apply `name:value`; False when it is not an operator we know (then it is text)."""
        if name == "from" and value.lstrip("@"):
            self.authors.append(value.lstrip("@"))
        elif name == "in" and value.strip():
            self.rooms.append(" ".join(value.split()))
        elif name in ("before", "after") and _DATE.fullmatch(value):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                return False
            if day in (date.min, date.max):  # its day before or after is no date: text
                return False
            if name == "before":
                self.before = day if self.before is None else min(self.before, day)
            else:
                self.after = day if self.after is None else max(self.after, day)
        elif name == "has" and value.lower() == "link":
            self.has_link = True
        elif name == "is" and value.lower() == "mention":
            self.mentions_me = True
        else:
            return False
        return True


def parse(raw: str) -> Query:
    """Read a search box's text. Never raises: whatever is not an operator is text.

    Words must all appear (the last one may be the start of a word), "quoted words"
    must appear together in that order, -word or -"words" must not appear, and
    from:NAME, in:ROOM (or in:"room name"), before:YYYY-MM-DD, after:YYYY-MM-DD,
    has:link and is:mention narrow the results.
    """
    parts = _Parts()
    for match in _PART.finditer(raw):
        negated = match["negated"] is not None
        if match["phrase"] is not None:
            parts.add_text(match["phrase"], negated=negated, word=False)
        elif match["operator"] is not None:
            value = match["quoted"] if match["quoted"] is not None else match["value"]
            if negated or not parts.add_operator(match["operator"].lower(), value):
                parts.add_text(match[0].removeprefix("-"), negated=negated, word=False)
        else:
            parts.add_text(match["word"], negated=negated, word=True)
    terms = parts.terms
    # A one-letter prefix would match a large part of the vocabulary: too slow to merge.
    if parts.last_word is not None and len("".join(terms[parts.last_word].tokens)) > 1:
        last = terms[parts.last_word]
        terms[parts.last_word] = Term(last.text, last.tokens, prefix=True)
    return Query(
        terms=tuple(terms),
        excluded=tuple(parts.excluded),
        authors=tuple(parts.authors),
        rooms=tuple(parts.rooms),
        before=parts.before,
        after=parts.after,
        has_link=parts.has_link,
        mentions_me=parts.mentions_me,
    )


# --- SQL ----------------------------------------------------------------------------------


def _fts5(term: Term) -> str:
    """An FTS5 phrase: quoted, so no character in it is syntax (tokens have no quotes)."""
    return '"' + " ".join(term.tokens) + '"' + (" *" if term.prefix else "")


def _tsquery(term: Term) -> ColumnElement:
    """A tsquery for one term, from its tokens as a bound parameter."""
    simple = literal_column("'simple'::regconfig")
    if term.prefix:
        # to_tsquery reads syntax, but tokens are letters and digits only: none is syntax.
        lexemes = " <-> ".join(f"'{token}'" for token in term.tokens)
        return func.to_tsquery(simple, lexemes + ":*")
    return func.phraseto_tsquery(simple, " ".join(term.tokens))


def _all(queries: list[ColumnElement]) -> ColumnElement:
    combined = queries[0]
    for query in queries[1:]:
        combined = func.tsquery_and(combined, query)
    return combined


def _any(queries: list[ColumnElement]) -> ColumnElement:
    combined = queries[0]
    for query in queries[1:]:
        combined = func.tsquery_or(combined, query)
    return combined


@dataclass(frozen=True)
class Names:
    """The ids behind each from: and in: name. Looked up before the search itself, so
    the planner sees ids: PostgreSQL then walks (author_id, id) or (room_id, id) newest
    first instead of filtering every message that has the words."""

    authors: tuple[tuple[int, ...], ...] = ()
    rooms: tuple[tuple[int, ...], ...] = ()

    @property
    def narrow(self) -> bool:
        return bool(self.authors or self.rooms)


async def _ids_named(
    db: AsyncSession, id_column: ColumnElement[int], name_column: ColumnElement[str], name: str
) -> tuple[int, ...]:
    # lower() on both sides, as the database knows it (SQLite's folds ASCII only).
    rows = await db.scalars(select(id_column).where(func.lower(name_column) == func.lower(name)))
    return tuple(rows)


async def resolve(db: AsyncSession, query: Query) -> Names:
    authors = [await _ids_named(db, User.id, User.username, name) for name in query.authors]
    rooms = [await _ids_named(db, Room.id, Room.name, name) for name in query.rooms]
    return Names(tuple(authors), tuple(rooms))


def statement(
    query: Query,
    viewer: User,
    dialect: str,
    names: Names,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int,
    use_word_index: bool = True,
) -> Select:
    """The newest `limit` messages matching `query` that `viewer` may read (with ids
    between `after_id` and `before_id`, both excluded, when given), newest first;
    `names` is `resolve(query)`."""
    terms = list(query.terms)
    conditions: list[ColumnElement] = [
        Message.room_id.in_(Room.readable_by(viewer)),
        Message.deleted_at.is_(None),
    ]
    if query.mentions_me:
        # The index narrows to messages with the name as a word; LIKE checks the "@".
        mention = _term(viewer.username)
        if mention is not None:
            terms.append(mention)
        conditions.append(Message.body.icontains("@" + viewer.username, autoescape=True))
    conditions.extend(Message.author_id.in_(ids) for ids in names.authors)
    conditions.extend(Message.room_id.in_(ids) for ids in names.rooms)
    if query.before is not None:
        conditions.append(Message.created_at < datetime.combine(query.before, time(), UTC))
    if query.after is not None:
        next_day = query.after + timedelta(days=1)
        conditions.append(Message.created_at >= datetime.combine(next_day, time(), UTC))
    if query.has_link:
        conditions.append(text(HAS_LINK_SQL))

    order_key = Message.id
    base = select(
        Message.id,
        Message.room_id,
        Message.seq,
        Message.body,
        Message.html,
        Message.created_at,
        Room.name.label("room_name"),
        User.username.label("author"),
    )
    if dialect == "sqlite":
        if terms:
            expression = " AND ".join(_fts5(term) for term in terms)
            for term in query.excluded:
                expression = f"({expression}) NOT {_fts5(term)}"
            # The FTS5 table drives: it yields matching rowids newest first, so the
            # first `limit` readable ones end the scan.
            order_key = _FTS.c.rowid
            base = base.select_from(_FTS).join(Message, Message.id == order_key)
            conditions.append(_FTS_MATCH.bindparams(fts_query=expression))
        elif query.excluded:
            expression = " OR ".join(_fts5(term) for term in query.excluded)
            matching = select(_FTS.c.rowid).where(_FTS_MATCH.bindparams(fts_query=expression))
            conditions.append(Message.id.not_in(matching))
    else:
        vector = literal_column("messages.search_vector")
        if terms:
            tsquery = _all([_tsquery(term) for term in terms])
            if query.excluded:
                tsquery = func.tsquery_and(
                    tsquery, func.tsquery_not(_any([_tsquery(t) for t in query.excluded]))
                )
            # The function, unlike the operator, is no use to the GIN index, which
            # leaves the planner to walk the newest messages (see _window_floor).
            matches = vector.op("@@") if use_word_index else partial(func.ts_match_vq, vector)
            conditions.append(matches(tsquery))
        elif query.excluded:
            conditions.append(~vector.op("@@")(_any([_tsquery(t) for t in query.excluded])))
    if before_id is not None:
        conditions.append(order_key < before_id)
    if after_id is not None:
        conditions.append(order_key > after_id)
    return (
        base.join(Room, Room.id == Message.room_id)
        .outerjoin(User, User.id == Message.author_id)
        .where(and_(*conditions))
        .order_by(order_key.desc())
        .limit(limit)
    )


@dataclass(frozen=True)
class Hit:
    id: int
    room_id: int
    seq: int
    room_name: str
    author: str | None
    created_at: datetime
    snippet: Markup
    html: Markup  # the message as its room shows it, the matching words marked


@dataclass(frozen=True)
class Results:
    hits: list[Hit]
    older_than: int | None  # the `before` of the next page, None on the last page


async def search(
    db: AsyncSession,
    viewer: User,
    query: Query,
    *,
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
    rooms: frozenset[int] = frozenset(),
) -> Results:
    """`rooms`, when given, narrows to those rooms as in:ROOM would (an API token's)."""
    if query.is_empty:
        return Results([], None)
    dialect = db.get_bind().dialect.name
    names = await resolve(db, query)
    if rooms:
        names = Names(names.authors, (*names.rooms, tuple(sorted(rooms))))

    async def newest(limit: int, **bounds: Any) -> list[Row]:
        found = await db.execute(statement(query, viewer, dialect, names, limit=limit, **bounds))
        return list(found.all())

    rows: list[Row] = []
    if dialect == "postgresql" and query.terms:
        # Try the newest messages first, then the rest only if they held too few.
        floor = await _window_floor(db, query, names, before_id)
        if floor is not None:
            rows = await newest(
                limit + 1, before_id=before_id, after_id=floor, use_word_index=not names.narrow
            )
            before_id = floor + 1
    if len(rows) <= limit:
        rows += await newest(limit + 1 - len(rows), before_id=before_id)
    hits = [
        Hit(
            id=row.id,
            room_id=row.room_id,
            seq=row.seq,
            room_name=row.room_name,
            author=row.author,
            created_at=row.created_at,
            snippet=snippet(row.body, query),
            html=highlighted(row.html, query),
        )
        for row in rows[:limit]
    ]
    return Results(hits, hits[-1].id if len(rows) > limit else None)


async def _window_floor(
    db: AsyncSession, query: Query, names: Names, before_id: int | None
) -> int | None:
    """Where the first, cheap try of a PostgreSQL search stops (the id above which
    it looks), or None when one search of everything is as cheap.

    GIN finds the messages with every word, but only the row itself tells whether a
    phrase's words are adjacent: rechecking every candidate for the newest 25 costs
    tens of milliseconds for a common phrase, so a phrase looks at the newest
    PHRASE_WINDOW messages first (the id range and the GIN index combine before any
    row is rechecked). With from: or in:, the planner combines the person's or the
    room's messages with the GIN index of the words, which for a common word means
    reading tens of thousands of entries; walking the newest SCOPED_WINDOW of those
    messages, checking each one's words without the index, is cheaper and usually
    enough."""
    if names.narrow:
        scope = [Message.room_id.in_(ids) for ids in names.rooms]
        scope += [Message.author_id.in_(ids) for ids in names.authors]
        newest_first = select(Message.id).where(*scope).order_by(Message.id.desc())
        if before_id is not None:
            newest_first = newest_first.where(Message.id < before_id)
        return await db.scalar(newest_first.offset(SCOPED_WINDOW).limit(1))
    if any(len(term.tokens) > 1 for term in query.terms):
        if before_id is None:
            before_id = (await db.scalar(select(func.max(Message.id))) or 0) + 1
        return before_id - PHRASE_WINDOW
    return None


# --- snippets -----------------------------------------------------------------------------


def _highlighter(query: Query) -> re.Pattern[str] | None:
    words = {(token, False) for term in query.terms for token in term.tokens[:-1]}
    words |= {(term.tokens[-1], term.prefix) for term in query.terms}
    if not words:
        return None
    alternatives = sorted(
        (re.escape(token) + (r"[^\W_]*" if prefix else "") for token, prefix in words),
        key=len,
        reverse=True,
    )
    return re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")(?![^\W_])", re.IGNORECASE)


def snippet(body: str, query: Query, width: int = SNIPPET_CHARS) -> Markup:
    """Up to `width` characters of `body` around the first match, escaped, with the
    matching words in <mark> (our markup; the text itself is never trusted)."""
    text_ = " ".join(without_bidi_controls(body).split())
    pattern = _highlighter(query)
    first = pattern.search(text_) if pattern else None
    start = 0
    if first is not None and first.start() > width // 3:
        start = first.start() - width // 3
        start = text_.rfind(" ", 0, start) + 1 or start
    end = min(len(text_), start + width)
    window = text_[start:end]
    pieces: list[str] = ["…" if start > 0 else ""]
    position = 0
    for match in pattern.finditer(window) if pattern else ():
        pieces.append(escape(window[position : match.start()]))
        pieces.append(Markup("<mark>{}</mark>").format(window[match.start() : match.end()]))
        position = match.end()
    pieces.append(escape(window[position:]))
    pieces.append("…" if end < len(text_) else "")
    return Markup("").join(pieces)


_TAG = re.compile(r"(<[^>]*>)")


def highlighted(message_html: str, query: Query) -> Markup:
    """A message's HTML as chat.sanitize made it (so: well-formed, every tag allowed,
    text escaped), with the matching words in <mark> in its text only, never inside a
    tag or an attribute."""
    pattern = _highlighter(query)
    if pattern is None:
        return Markup(message_html)  # noqa: S704 (sanitized when the message was stored)
    pieces: list[str] = []
    for piece in _TAG.split(message_html):
        if piece.startswith("<"):
            pieces.append(piece)
            continue
        text_ = html.unescape(piece)
        position = 0
        for match in pattern.finditer(text_):
            pieces.append(escape(text_[position : match.start()]))
            pieces.append(Markup("<mark>{}</mark>").format(match.group()))
            position = match.end()
        pieces.append(escape(text_[position:]))
    return Markup("".join(pieces))  # noqa: S704 (sanitized tags, escaped text)
