"""Whole pages kept per reader and served again while nothing they show has changed.

What it saves: a room page reads its messages, members and the reader's room list
and renders some 90 KB of HTML around them; the sidebar, search and history pages
do the same on a smaller scale. Served again, a page costs its *stamp* (below: one
hop to the database, or none on SQLite while the database is unchanged, as
chat.kept_reads keeps it) and joining the kept pieces. `chat bench http` and the
in-process measurements behind it are in docs/performance.md; the figures for each
change are in the commit messages that made it.

How it stays right:

- **Whose.** An entry is kept for one user, under the request's method, path, query
  and the htmx headers that choose a whole page or a fragment. It is looked up only
  after the handler has checked the session (`login_required`, every request) and
  the room (`find_room`: 404 for a room the reader may not see), so authorization is
  what it is without the cache; a page is never served to anyone but its reader.
- **Fresh.** Each entry carries its stamp: the values the page is made of, as the
  database holds them at every request (in one hop, or kept while it is unchanged):
  the reader's memberships with their rooms' message and change counters, names and
  kinds (the room list and its unread counts) and whether they are an administrator;
  for a room page also that room's counters and its members with their roles, and who
  of them is online or typing (presence); for the room index the public rooms' names;
  for search every public room's counters. A commit on any
  worker changes one of those values, so the next request, on any worker, renders
  anew. The stamp is read *before* rendering: a change committed while a page
  renders makes the next stamp differ, never a stale page current. Usernames are
  taken to never change (nothing in the app changes them).
- **CSRF tokens fresh.** The body is kept split wherever the reader's CSRF token
  appears and joined with the token of the request it is served to.
- **Bounded.** At most `max_bytes` of kept pages, the least recently used dropped
  first; responses that set cookies, carry a background task or are not a 200 are
  never kept.
- **Plain path.** `enabled=False` (CHAT_FAST_PATHS=0) renders every page.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, false, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from starlette.requests import Request
from starlette.responses import Response

from chat.hot_statements import Prepared, PreparedRunner, run_prepared
from chat.models import Membership, Room, User

# A room page is about 90 KB: a few hundred busy readers' recent pages per process.
MAX_BYTES = 64 * 1024 * 1024


class _Strung(FunctionElement[str]):
    """A column's values of a group as one string, comma-separated (the separator
    written into the statement, which `Prepared` needs: SQLAlchemy's own
    aggregate_strings binds it after compiling)."""

    type = String()
    inherit_cache = True


@compiles(_Strung)
def _strung(element: _Strung, compiler: Any, **kw: Any) -> str:
    values = compiler.process(element.clauses, **kw)
    if compiler.dialect.name == "postgresql":
        return f"string_agg(CAST({values} AS TEXT), ',')"
    return f"group_concat({values}, ',')"  # SQLite turns any value into text itself


def _joined(*columns: Any) -> list[Any]:
    """One string per column: within one group every aggregate walks the rows in the
    same order, so together they are the rows."""
    return [_Strung(column) for column in columns]


VIEWER, ROOM = bindparam("viewer"), bindparam("room")
# Every column, so that one added later is in the stamp too; of users, all but the
# password hash (the stamp is kept in memory beside the page).
_USER = [column for column in User.__table__.columns if column.key != "password_hash"]
_ROOM_COLUMNS = list(Room.__table__.columns)
_COUNTERS = {"last_seq", "last_change"}
# Columns that never change once a row is written (or change with one that is in the
# stamp, as name_key with name): left out of the aggregates, which cost per value.
_FIXED = {"id", "user_id", "created_at", "joined_at", "created_by_id", "direct_key", "name_key"}


def _changing(*columns: Any) -> list[Any]:
    return [column for column in columns if column.key not in _FIXED]


# The reader, and each room they are in as the room list shows it.
_READER = Prepared(
    select(
        *_USER,
        *_joined(*_changing(*Membership.__table__.columns, *_ROOM_COLUMNS)),
    )
    .select_from(User)
    .outerjoin(Membership, Membership.user_id == User.id)
    .outerjoin(Room, Room.id == Membership.room_id)
    .where(User.id == VIEWER)
    .group_by(User.id)
)
# A room as its page shows it, with its members as its member list shows them (their
# ids and roles; usernames do not change): the first aggregate, their ids.
_ROOM = Prepared(
    select(*_ROOM_COLUMNS, *_joined(Membership.user_id, Membership.role))
    .select_from(Room)
    .outerjoin(Membership, Membership.room_id == Room.id)
    .where(Room.id == ROOM)
    .group_by(Room.id)
)
_PUBLIC_NAMES = Prepared(
    select(
        *_joined(Room.id, *(c for c in _changing(*_ROOM_COLUMNS) if c.key not in _COUNTERS))
    ).where(Room.is_private == false())
)
_PUBLIC_ACTIVITY = Prepared(
    select(*_joined(Room.id, *_changing(*_ROOM_COLUMNS))).where(Room.is_private == false())
)


class Shows(NamedTuple):
    """What a page shows besides the reader's own room list."""

    room: Room | None = None  # a room's messages (the room as the handler read it)
    members: bool = False  # and its members, online or typing
    public: Prepared | None = None  # _PUBLIC_NAMES or _PUBLIC_ACTIVITY


def room_page(room: Room) -> Shows:
    return Shows(room=room, members=True)


def history(room: Room) -> Shows:
    return Shows(room=room)


ROOM_INDEX = Shows(public=_PUBLIC_NAMES)
SEARCH = Shows(public=_PUBLIC_ACTIVITY)


class _Kept(NamedTuple):
    stamp: Hashable
    pieces: tuple[bytes, ...]
    # Its headers as a hit sends them, but for the first: content-length, then
    # content-type, then the page's own (as Response(body, media_type) and the page's
    # raw headers would make them).
    headers: tuple[tuple[bytes, bytes], ...]
    size: int


class _Served(Response):
    """A kept page as a response, with the headers made when it was kept: building them
    (Response.__init__) was a noticeable part of a hit."""

    def __init__(self, body: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode()), *headers]


class PageCache:
    def __init__(self, *, enabled: bool = True, max_bytes: int = MAX_BYTES) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    @property
    def kept_bytes(self) -> int:
        return self._bytes

    async def respond(
        self, request: Request, shows: Shows, render: Callable[[], Awaitable[Response]]
    ) -> Response:
        """The page `render` makes for this request: kept, or rendered and kept."""
        if not self.enabled or request.method != "GET":
            return await render()
        user, scope = request.state.user, request.scope
        # Not request.url, nor request.headers: building them costs more than the key.
        key = (user.id, scope.get("root_path", ""), scope["path"], scope["query_string"])
        key += _varying(scope["headers"])
        stamp = await _stamp(request, user.id, shows)
        token = request.state.csrf_token.encode()
        kept = self._kept.get(key)
        if kept is not None and kept.stamp == stamp:
            self._kept.move_to_end(key)
            self.hits += 1
            return _Served(token.join(kept.pieces), kept.headers)
        self.misses += 1
        response = await render()
        if _as_stamped(shows.room, stamp):
            self._keep(key, stamp, token, response)
        return response

    def _keep(self, key: Hashable, stamp: Hashable, token: bytes, response: Response) -> None:
        headers = tuple(
            [header for header in response.raw_headers if header[0] == b"content-type"]
            + [
                header
                for header in response.raw_headers
                if header[0] not in (b"content-length", b"content-type")
            ]
        )
        if (
            response.status_code != 200
            or response.background is not None
            or any(name == b"set-cookie" for name, _ in headers)
            or not isinstance(getattr(response, "body", None), bytes)
        ):
            return
        pieces = tuple(response.body.split(token))
        size = len(response.body)
        if size > self.max_bytes // 8:  # one page never pushes out most of the others
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._kept[key] = _Kept(stamp, pieces, headers, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= dropped.size


def _varying(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bool, bool]:
    """What of the headers a page depends on: the first Host (the links' origin), and
    whether htmx asks for a fragment (chat.htmx.is_htmx) or a whole page to restore
    (chat.htmx.is_history_restore)."""
    host, htmx, restore = None, False, False
    for name, value in headers:
        if name == b"host":
            host = value if host is None else host
        elif name == b"hx-request":
            htmx = True
        elif name == b"hx-history-restore-request":
            restore = True
    return host, htmx, restore


def _as_stamped(room: Room | None, stamp: Any) -> bool:
    """Whether the room the handler read (with the session, before the stamp) is the
    room of the stamp: a page made from an older one is served once, not kept."""
    if room is None:
        return True
    stamped = stamp[1]
    return stamped is not None and tuple(stamped[: len(_ROOM_COLUMNS)]) == tuple(
        getattr(room, column.key) for column in _ROOM_COLUMNS
    )


# The statements a stamp needs, as one (each part a one-row subquery, joined on true):
# on PostgreSQL each statement is a round trip. By (room or not, public statement).
_TOGETHER: dict[tuple[bool, Prepared | None], tuple[Prepared, tuple[int, ...]]] = {}


def _together(room: bool, public: Prepared | None) -> tuple[Prepared, tuple[int, ...]]:
    found = _TOGETHER.get((room, public))
    if found is None:
        parts = [_READER.statement.subquery()]
        if room:
            parts.append(_ROOM.statement.subquery())
        if public is not None:
            parts.append(public.statement.subquery())
        statement = select(*(column for part in parts for column in part.c)).select_from(parts[0])
        for part in parts[1:]:
            statement = statement.outerjoin(part, true())
        found = _TOGETHER[(room, public)] = (
            Prepared(statement),
            tuple(len(part.c) for part in parts),
        )
    return found


def _read_stamp(statements: PreparedRunner, viewer: int, shows: Shows) -> tuple[Any, ...]:
    """(the reader's part, the room's or None, the public rooms' or None)."""
    statement, widths = _together(shows.room is not None, shows.public)
    row = statements.first(statement, {"viewer": viewer, "room": shows.room and shows.room.id})
    parts: list[Any] = []
    start = 0
    for width in widths:
        parts.append(None if row is None else row[start : start + width])
        start += width
    reader = parts.pop(0)
    room = parts.pop(0) if shows.room is not None else None
    if room is not None and room[0] is None:  # no such room (the outer join's NULLs)
        room = None
    public = parts.pop(0) if shows.public is not None else None
    return reader, room, public


async def _stamp(request: Request, viewer: int, shows: Shows) -> Hashable:
    """The values the page is made of, as the database and presence hold them now
    (the database's part kept while it is unchanged: chat.kept_reads)."""
    state = request.app.state
    reader, room, public = await state.kept_reads.read(
        request.scope,
        ("stamp", viewer, shows.room and shows.room.id, shows.public),
        lambda: run_prepared(
            state.db, lambda statements: _read_stamp(statements, viewer, shows), autocommit=True
        ),
    )
    live: tuple[Any, ...] = ()
    member_ids = None if room is None else room[len(_ROOM_COLUMNS)]
    if shows.members and member_ids:
        presence = state.presence
        online, typists = await presence.room_live(shows.room.id, _member_ids(member_ids))
        live = (frozenset(online), tuple(typists.names), typists.version)
    return reader, room, public, live


@functools.lru_cache(maxsize=1024)
def _member_ids(joined: str) -> tuple[int, ...]:
    """A room's member ids from its stamp, parsed once per distinct list: a room page
    parsed 124 of them on every request."""
    return tuple(map(int, joined.split(",")))
