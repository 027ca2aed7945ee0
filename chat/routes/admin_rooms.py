"""/admin/rooms: administrators find rooms (direct conversations apart), archive and
unarchive them, make someone an owner (Room.make_owner) and delete them, after a
confirmation page. As the rest of /admin:
404 to everyone else, and every action in the audit log."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.broker import BrokerUnavailable, user_channel
from chat.message_path import leave_room_signal
from chat.models import MAX_ID, Membership, Message, Role, Room, RoomKind, User
from chat.routes.admin import MAX_QUERY, admin_required, audit
from chat.routes.forms import read_form
from chat.routes.room_settings import set_archived

log = structlog.get_logger("chat.admin")

ROOMS_SHOWN = 50
DONE = {
    "archived": "The room is archived.",
    "unarchived": "The room is unarchived.",
    "deleted": "The room is deleted, with its messages and files.",
    "owner": "That account is now an owner of the room.",
}


@admin_required
async def index(request: Request) -> Response:
    query = request.query_params.get("q", "").strip()[:MAX_QUERY]
    async with request.app.state.db() as db:
        rooms = await Room.named_like(db, query, ROOMS_SHOWN + 1)
    return request.app.state.templates.TemplateResponse(
        request,
        "admin/rooms.html",
        {
            "done": DONE.get(request.query_params.get("done", ""), ""),
            "query": query,
            "rooms": rooms[:ROOMS_SHOWN],
            "more_rooms": len(rooms) > ROOMS_SHOWN,
        },
    )


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(f"{request.url_for('admin_rooms')}?done={done}", status_code=303)


async def _target_room(request: Request) -> Room:
    room_id = request.path_params["room_id"]
    room = None
    if room_id <= MAX_ID:
        async with request.app.state.db() as db:
            room = await db.get(Room, room_id)
    # Direct conversations are their two people's own: not an administrator's to change.
    if room is None or room.kind != RoomKind.ROOM:
        raise HTTPException(404, "There is no such room.")
    return room


def _described(room: Room) -> str:
    return f"room #{room.id} {room.name}"


@admin_required
async def archive(request: Request) -> Response:
    """Field `archived`: `on` or `off`."""
    room = await _target_room(request)
    choice = (await read_form(request)).get("archived")
    if choice not in {"on", "off"}:
        raise HTTPException(400, "archived must be on or off.")
    if room.is_archived != (choice == "on"):
        await set_archived(request, room, choice == "on")
        action = "room_archived" if choice == "on" else "room_unarchived"
        await audit(request, action, _described(room), room_id=room.id)
    return _back(request, "archived" if choice == "on" else "unarchived")


@admin_required
async def confirm_delete(request: Request) -> Response:
    room = await _target_room(request)
    async with request.app.state.db() as db:
        members = len(list(await db.scalars(Membership.user_ids_of(room.id))))
    return request.app.state.templates.TemplateResponse(
        request, "admin/delete_room.html", {"room": room, "member_count": members}
    )


@admin_required
async def delete(request: Request) -> Response:
    """Field `confirm` must be `delete` (the confirmation page's button sends it)."""
    room = await _target_room(request)
    if (await read_form(request)).get("confirm") != "delete":
        raise HTTPException(400, "Confirm the deletion on its confirmation page.")
    state = request.app.state
    async with state.db() as db:
        keys = await Message.attachment_keys_of(db, room.id)
        member_ids = await room.delete(db)
    for user_id in member_ids:  # their open streams of the room close
        try:
            await state.broker.publish(user_channel(user_id), leave_room_signal(room.id))
        except BrokerUnavailable:  # the room is gone: a reconnecting stream finds nothing
            log.warning("room.leave_signal_lost", user_id=user_id)
    await state.messages.storage.delete(keys)
    await audit(
        request, "room_deleted", _described(room), f"{len(member_ids)} members", room_id=room.id
    )
    return _back(request, "deleted")


@admin_required
async def make_owner(request: Request) -> Response:
    """Field `username`: that account becomes an owner of the room (joining it first
    when it is not a member): the way to hand on a room whose owners are gone."""
    room = await _target_room(request)
    username = (await read_form(request)).get("username", "").strip()[:MAX_QUERY]
    async with request.app.state.db() as db:
        user = await User.by_username(db, username) if username else None
        if user is None or not user.is_active:
            raise HTTPException(400, f"There is no active account called “{username}”.")
        if not await room.make_owner(db, user.id):
            await room.add_member(db, user, Role.OWNER)
    await audit(request, "room_owner_made", _described(room), user.username, room_id=room.id)
    return _back(request, "owner")
