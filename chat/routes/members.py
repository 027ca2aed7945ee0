"""A room's members: adding, making owner, removing and leaving.

A room always keeps an owner (chat.models.Room.remove_member), and ending a membership
is asked twice: the Leave and Remove links open a confirmation (a page without
JavaScript, a dialog with it) whose form does the POST.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import login_required
from chat.broker import BrokerUnavailable, room_channel, user_channel
from chat.message_path import MEMBERS_CHANGED, join_room_signal, leave_room_signal
from chat.models import MAX_ID, LastOwner, Membership, Room, User
from chat.routes.forms import read_form
from chat.routes.rooms import find_membership, find_room, member_items, room_page

log = structlog.get_logger("chat.rooms")

NOT_A_MEMBER = "That person is not a member of this room."
LAST_OWNER = (
    "You are the only owner of {room}: make someone else owner (in the member list)"
    " before you leave."
)


async def _end_membership(request: Request, room: Room, user_id: int) -> bool:
    """Raises LastOwner for the room's only owner."""
    async with request.app.state.db() as db:
        removed = await room.remove_member(db, user_id)
    if removed:
        # Their open streams of this room close at once, on every worker.
        await request.app.state.broker.publish(user_channel(user_id), leave_room_signal(room.id))
        await members_changed(request, room.id)
    return removed


async def members_changed(
    request: Request, room_id: int, joined_user_id: int | None = None
) -> None:
    """Tell the room's open pages to show its member list again and, when someone
    became a member, their own room lists to show the room."""
    broker = request.app.state.broker
    try:
        await broker.publish(room_channel(room_id), MEMBERS_CHANGED)
        if joined_user_id is not None:
            await broker.publish(user_channel(joined_user_id), join_room_signal(room_id))
    except BrokerUnavailable:  # the lists are right again on the next page load
        log.warning("room.members_signal_lost", room_id=room_id)


@login_required
async def member_list(request: Request) -> Response:
    """The room's member list as its page shows it (a fragment): fetched again by the
    page when its members change."""
    room, membership = await find_room(request)
    state = request.app.state
    async with state.db() as db:
        members = await db.run_sync(room.members)
    online = await state.presence.online_among(member.id for member in members)
    return state.templates.TemplateResponse(
        request,
        "rooms/_member_list.html",
        {
            "members": members,
            "member_items": member_items(request, room, membership, members, online),
        },
    )


def _confirm_page(
    request: Request, room: Room, *, title: str, text: str, action: str = "", button: str = ""
) -> Response:
    """The confirmation asked without JavaScript: `action` is what its form posts to
    (none when the answer is only an explanation)."""
    return request.app.state.templates.TemplateResponse(
        request,
        "rooms/confirm.html",
        {"room": room, "title": title, "text": text, "action": action, "button": button},
    )


@login_required
async def join(request: Request) -> Response:
    room, membership = await find_room(request)
    if membership is None:
        async with request.app.state.db() as db:
            joined = await room.add_member(db, request.state.user)
        if joined:
            log.info("room.joined", user_id=request.state.user.id)
            await members_changed(request, room.id, request.state.user.id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


@login_required
async def confirm_leave(request: Request) -> Response:
    room, membership = await find_membership(request)
    if room.is_direct:
        raise HTTPException(400, "A direct conversation cannot be left.")
    async with request.app.state.db() as db:
        last_owner = await room.is_last_owner(db, membership.user_id)
    if last_owner:
        return _confirm_page(
            request, room, title=f"Leave {room.name}?", text=LAST_OWNER.format(room=room.name)
        )
    return _confirm_page(
        request,
        room,
        title=f"Leave {room.name}?",
        text="You will no longer see its messages"
        + (" and can only come back if an owner adds you." if room.is_private else "."),
        action=str(request.url_for("leave_room", room_id=room.id)),
        button=f"Leave {room.name}",
    )


@login_required
async def leave(request: Request) -> Response:
    room, membership = await find_membership(request)
    if room.is_direct:
        raise HTTPException(400, "A direct conversation cannot be left.")
    try:
        await _end_membership(request, room, membership.user_id)
    except LastOwner:
        return await room_page(
            request, room, membership, error=LAST_OWNER.format(room=room.name), status=409
        )
    log.info("room.left", user_id=membership.user_id)
    return RedirectResponse(request.url_for("index"), status_code=303)


async def _owned_room(request: Request) -> tuple[Room, Membership]:
    room, membership = await find_membership(request)
    if room.is_direct:
        raise HTTPException(400, "A direct conversation is always the two of you.")
    if not membership.is_owner:
        raise HTTPException(403, "Only the room's owners can change its members.")
    return room, membership


async def _other_member(request: Request, room: Room, membership: Membership) -> User:
    """The member named by the path's user_id: 404 when they are not one."""
    user_id = request.path_params["user_id"]
    if user_id == membership.user_id:
        raise HTTPException(400, "To leave the room, use Leave.")
    user = None
    if user_id <= MAX_ID:
        async with request.app.state.db() as db:
            user = await db.scalar(
                select(User)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.room_id == room.id, User.id == user_id)
            )
    if user is None:
        raise HTTPException(404, NOT_A_MEMBER)
    return user


@login_required
async def add_member(request: Request) -> Response:
    room, membership = await _owned_room(request)
    username = (await read_form(request)).get("username", "").strip()
    async with request.app.state.db() as db:
        user = await User.by_username(db, username) if username else None
        added = user is not None and await room.add_member(db, user)
    if user is None:
        return await room_page(
            request, room, membership, error=f"There is no user called “{username}”.", status=400
        )
    if added:
        log.info("room.member_added", user_id=user.id, by_user_id=membership.user_id)
        await members_changed(request, room.id, user.id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


@login_required
async def make_owner(request: Request) -> Response:
    room, membership = await _owned_room(request)
    user = await _other_member(request, room, membership)
    async with request.app.state.db() as db:
        if not await room.make_owner(db, user.id):
            raise HTTPException(404, NOT_A_MEMBER)
    log.info("room.owner_made", user_id=user.id, by_user_id=membership.user_id)
    await members_changed(request, room.id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


@login_required
async def confirm_remove_member(request: Request) -> Response:
    room, membership = await _owned_room(request)
    user = await _other_member(request, room, membership)
    return _confirm_page(
        request,
        room,
        title=f"Remove {user.username} from {room.name}?",
        text=f"{user.username} will no longer see its messages"
        + (" unless an owner adds them again." if room.is_private else " until they join again."),
        action=str(request.url_for("remove_member", room_id=room.id, user_id=user.id)),
        button=f"Remove {user.username}",
    )


@login_required
async def remove_member(request: Request) -> Response:
    room, membership = await _owned_room(request)
    user_id = request.path_params["user_id"]
    if user_id == membership.user_id:
        raise HTTPException(400, "To leave the room, use Leave.")
    try:
        removed = user_id <= MAX_ID and await _end_membership(request, room, user_id)
    except LastOwner:  # another owner left meanwhile: this one is all the room has
        raise HTTPException(409, "A room always keeps an owner.") from None
    if not removed:
        raise HTTPException(404, NOT_A_MEMBER)
    log.info("room.member_removed", user_id=user_id, by_user_id=membership.user_id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)
