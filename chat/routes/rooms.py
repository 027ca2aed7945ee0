"""Rooms: the list, creating, the room page, joining, leaving and membership."""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

import structlog
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat import page_cache, rate_limits
from chat.auth import login_required
from chat.broker import BrokerUnavailable, user_channel
from chat.hot_statements import run_sync_work
from chat.html_cache import csrf_field
from chat.message_path import room_state_signal
from chat.models import (
    MAX_ID,
    Listed,
    Member,
    Membership,
    Message,
    MessageContent,
    MessageHead,
    Room,
    User,
    listed_for,
    message_pages,
)
from chat.room_names import MAX_ROOM_NAME, InvalidRoomName, clean_room_name
from chat.routes.forms import read_form
from chat.sse import Cursor

log = structlog.get_logger("chat.rooms")

# More digits than any id has: longer numbers are refused before converting them.
MAX_ID_DIGITS = len(str(MAX_ID))


def int_param(value: str | None, name: str) -> int | None:
    """An id or seq from a query or form: ASCII digits within the columns' range, or 400
    (`str.isdigit` also accepts "¹" and "٣", and `int` refuses 5,000 digits)."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
        raise HTTPException(400, f"{name} must be a whole number.")
    number = int(value)
    if number > MAX_ID:
        raise HTTPException(400, f"{name} is out of range.")
    return number


async def find_room(request: Request) -> tuple[Room, Membership | None]:
    """The room in the path as the viewer may see it: 404 when it does not exist and,
    identically, when it is private and the viewer is not a member."""
    room_id = request.path_params["room_id"]
    found = None
    if room_id == request.state.room_asked:  # read with the session (chat.auth.load_session)
        # Taken once: a second look, after the request changed something, reads again.
        request.state.room_asked = None
        found = request.state.visible_room
    elif room_id <= MAX_ID:
        found = await run_sync_work(
            request.app.state.db,
            lambda db: Room.visible_to(db, request.state.user, room_id),
            autocommit=True,
        )
    if found is None:
        raise HTTPException(404, "There is no such room, or it is private.")
    structlog.contextvars.bind_contextvars(room_id=room_id)
    return found


async def find_membership(request: Request) -> tuple[Room, Membership]:
    room, membership = await find_room(request)
    if membership is None:
        raise HTTPException(403, "Join this room first.")
    return room, membership


ARCHIVED = "This room is archived: it is read-only. An owner can unarchive it in its settings."


async def find_writable_membership(request: Request) -> tuple[Room, Membership]:
    """As find_membership, for a change to the room's messages: 409 while it is archived."""
    room, membership = await find_membership(request)
    if room.is_archived:
        raise HTTPException(409, ARCHIVED)
    return room, membership


async def _index_page(
    request: Request, *, error: str = "", name: str = "", status: int = 200
) -> Response:
    user = request.state.user
    navigation, joinable = await run_sync_work(
        request.app.state.db,
        lambda db: (navigation_lists(db, user), Room.joinable_by(db, user)),
        autocommit=True,
    )
    return request.app.state.templates.TemplateResponse(
        request,
        "rooms/index.html",
        {**navigation, "joinable": joinable, "error": error, "name": name},
        status_code=status,
    )


def navigation_lists(db: Session, user: User, current: Room | None = None) -> dict[str, object]:
    """The viewer's rooms and, apart, their direct conversations, with unread counts,
    as the items of rooms/_mine.html (in rooms/_nav.html, beside `current`)."""
    rooms, directs = listed_for(db, user)

    def items(listed: list[Listed]) -> list[dict[str, Hashable]]:
        return [
            {"listed": each, "current": current is not None and each.id == current.id}
            for each in listed
        ]

    return {"my_rooms": items(rooms), "my_directs": items(directs)}


@login_required
async def index(request: Request) -> Response:
    return await request.app.state.page_cache.respond(
        request, page_cache.ROOM_INDEX, lambda: _index_page(request)
    )


@login_required
async def to_index(request: Request) -> Response:
    """The rooms are listed at /; /rooms, typed or trimmed from a room's address, goes
    there rather than answering 405 (only its POST, creating a room, is its own)."""
    return RedirectResponse(request.url_for("index"), status_code=303)


@login_required
async def create(request: Request) -> Response:
    form = await read_form(request)
    typed = form.get("name", "")
    visibility = form.get("visibility", "public")
    if visibility not in {"public", "private"}:
        raise HTTPException(400, "visibility must be public or private.")
    try:
        name = clean_room_name(typed)
    except InvalidRoomName as exc:
        return await _index_page(request, error=str(exc), name=typed[:MAX_ROOM_NAME], status=400)
    await rate_limits.hit(request, "room", f"user:{request.state.user.id}")
    async with request.app.state.db() as db:
        room = await Room.create(db, request.state.user, name, is_private=visibility == "private")
    if room is None:
        return await _index_page(
            request, error=f"There is already a room called “{name}”.", name=name, status=400
        )
    log.info("room.created", room_id=room.id, user_id=request.state.user.id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


class PageRows(NamedTuple):
    """What a room page reads from the database, in one hop."""

    messages: list[MessageHead]
    uncached: list[MessageContent]  # those of `messages` whose HTML is not cached
    shows_newest: bool
    members: list[Member]
    read_moved: bool
    navigation: dict[str, object]


async def room_page(
    request: Request,
    room: Room,
    membership: Membership | None,
    *,
    error: str = "",
    composer_error: str = "",
    draft: str = "",
    status: int = 200,
) -> Response:
    """The room page: the newest messages; with `?at=SEQ` the messages around SEQ (a
    permalink), with `?before=SEQ` or `?after=SEQ` the history page next to SEQ.
    Only a page that shows the newest message goes live and marks the room read."""
    state = request.app.state
    page_size = state.settings.page_size
    at = int_param(request.query_params.get("at"), "at")
    after = int_param(request.query_params.get("after"), "after")
    before = int_param(request.query_params.get("before"), "before")
    reply = int_param(request.query_params.get("reply"), "reply")
    # Where the "new messages" divider goes: read before the marker moves.
    first_unread = membership.last_read_seq + 1 if membership is not None else None

    def read_page(db: Session) -> PageRows:
        if at is not None:
            messages = message_pages.heads_around(db, room.id, at, page_size)
        else:
            messages = message_pages.heads(db, room.id, before=before, after=after, limit=page_size)
        shows_newest = (messages[-1].seq if messages else 0) >= room.last_seq
        read_moved = (
            membership is not None and shows_newest and membership.mark_read(db, room.last_seq)
        )
        return PageRows(
            messages,
            state.html_cache.read_uncached(db, messages),
            shows_newest,
            room.members(db),
            read_moved,
            # After mark_read, so this room's own unread count is already zero.
            navigation_lists(db, request.state.user, room),
        )

    # One hop to the database for all of it.
    messages, uncached, shows_newest, members, read_moved, navigation = await run_sync_work(
        state.db, read_page, autocommit=True
    )
    contents = await state.html_cache.contents(state.db, messages, csrf_field(request), uncached)
    # Replying without JavaScript: the Reply link opens the page with ?reply=SEQ.
    reply_to = None
    if reply is not None:
        async with state.db() as db:
            reply_to = await Message.find(db, room.id, reply, deleted=True)
    if read_moved:
        await room_state_changed(request, membership)
    presence = request.app.state.presence
    online = await presence.online_among(member.id for member in members)
    live = membership is not None and shows_newest and not room.is_archived
    last_seq = messages[-1].seq if messages else (before or room.last_seq + 1) - 1
    return request.app.state.templates.TemplateResponse(
        request,
        "rooms/show.html",
        {
            **navigation,
            "room": room,
            "room_title": room.title_for(members, request.state.user),
            "reply_to": reply_to,
            "membership": membership,
            "members": members,
            "member_items": member_items(request, room, membership, members, online),
            "last_owner": is_last_owner(members, request.state.user),
            "typists": await presence.typists(room.id),
            "first_unread": first_unread,
            "messages": messages,
            "contents": contents,
            "at": at,
            "shows_newest": shows_newest,
            "live": live,
            # The room as the page shows it; its stream resumes from there. Read
            # before the messages were, so it never claims a change they lack.
            "stream_after": Cursor(last_seq, room.last_change),
            "error": error,
            # A message refused without JavaScript: the text comes back with why.
            "composer_error": composer_error,
            "body": draft,
        },
        status_code=status,
    )


def member_items(
    request: Request,
    room: Room,
    membership: Membership | None,
    members: list[Member],
    online: set[int],
) -> list[dict[str, Hashable]]:
    """The items of the member list (rooms/_member.html): who is online, and whom
    the viewer may message or (as an owner) make owner or remove."""
    viewer_id = request.state.user.id
    may_manage = membership is not None and membership.is_owner and not room.is_direct
    return [
        {
            "member": member,
            "online": member.id in online or member.id == viewer_id,
            "may_message": not room.is_direct and member.id != viewer_id,
            "manage_in": room.id if may_manage and member.id != viewer_id else None,
        }
        for member in members
    ]


def is_last_owner(members: list[Member], user: User) -> bool:
    """Whether `user` is the only owner among `members` (and so may not leave)."""
    return [member.id for member in members if member.is_owner] == [user.id]


@login_required
async def show(request: Request) -> Response:
    room, membership = await find_room(request)
    return await request.app.state.page_cache.respond(
        request, page_cache.room_page(room), lambda: room_page(request, room, membership)
    )


async def room_state_changed(
    request: Request, membership: Membership, *, read_seq: int | None = None
) -> None:
    """Tell the member's rooms-page streams (any tab, any worker) to recount the room;
    `read_seq` when only the read marker moved (to there), which they count themselves."""
    try:
        await request.app.state.broker.publish(
            user_channel(membership.user_id), room_state_signal(membership.room_id, read_seq)
        )
    except BrokerUnavailable:  # those pages recount when they reconnect
        log.warning("room.state_signal_lost", user_id=membership.user_id)
