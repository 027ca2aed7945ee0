"""A room's settings page: its members mute it and download its export; its owners
rename it, give it a topic, make invite links (chat/routes/invites.py), archive and
unarchive it. Also "mark all as read" for
every room of the viewer's. Each section is a partial (templates/room_settings/_*.html)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from chat.auth import login_required
from chat.broker import BrokerUnavailable, user_channel
from chat.export import export_lines
from chat.message_path import room_state_signal
from chat.models import Invite, Membership, Room
from chat.room_names import (
    MAX_ROOM_NAME,
    MAX_TOPIC,
    InvalidRoomName,
    clean_room_name,
    clean_topic,
)
from chat.routes.forms import read_form
from chat.routes.rooms import find_membership, room_state_changed

log = structlog.get_logger("chat.room_settings")
EXPORT_WRITE_LINES = 500  # lines written to the spool file per hop to a thread
EXPORT_READ_BYTES = 64 * 1024

# What the page says after a change it redirected from (?done=…).
DONE = {
    "name": "The room is renamed.",
    "topic": "The topic is changed.",
    "archived": "The room is archived: it is read-only and no longer listed.",
    "unarchived": "The room is unarchived: members can write again, and it is listed.",
    "muted": "The room is muted: no unread count or notification but for @mentions of you.",
    "unmuted": "The room is no longer muted.",
    "revoked": "The invite link is revoked: it no longer works.",
}


async def settings_page(
    request: Request,
    room: Room,
    membership: Membership,
    *,
    error: str = "",
    field: str = "",
    typed: str = "",
    new_invite: str = "",
    status: int = 200,
) -> Response:
    invites = []
    if membership.is_owner and not room.is_direct:
        async with request.app.state.db() as db:
            invites = await Invite.of_room(db, room.id)
    return request.app.state.templates.TemplateResponse(
        request,
        "room_settings/page.html",
        {
            "room": room,
            "membership": membership,
            "done": DONE.get(request.query_params.get("done", ""), ""),
            "error": error,
            "error_field": field,
            "typed": typed,
            "max_name": MAX_ROOM_NAME,
            "max_topic": MAX_TOPIC,
            "invites": invites,
            "new_invite": new_invite,
        },
        status_code=status,
        # A new invite link is shown once: not kept by the browser's cache.
        headers={"Cache-Control": "no-store"} if new_invite else None,
    )


def _back(request: Request, room: Room, done: str) -> Response:
    url = request.url_for("room_settings", room_id=room.id)
    return RedirectResponse(f"{url}?done={done}", status_code=303)


@login_required
async def page(request: Request) -> Response:
    room, membership = await find_membership(request)
    return await settings_page(request, room, membership)


async def owned_room(request: Request) -> tuple[Room, Membership]:
    room, membership = await find_membership(request)
    if room.is_direct:
        raise HTTPException(400, "A direct conversation has no name, topic or archive.")
    if not membership.is_owner:
        raise HTTPException(403, "Only the room's owners can change its settings.")
    return room, membership


@login_required
async def rename(request: Request) -> Response:
    """Field `name`: the rules of creating a room (chat.room_names), unique in any case."""
    room, membership = await owned_room(request)
    typed = (await read_form(request)).get("name", "")
    try:
        name = clean_room_name(typed)
    except InvalidRoomName as exc:
        return await settings_page(
            request, room, membership, error=str(exc), field="name", typed=typed, status=400
        )
    if name != room.name:
        async with request.app.state.db() as db:
            renamed = await room.rename(db, name)
        if not renamed:
            error = f"There is already a room called “{name}”."
            return await settings_page(
                request, room, membership, error=error, field="name", typed=name, status=400
            )
        log.info("room.renamed", room_id=room.id, user_id=membership.user_id)
    return _back(request, room, "name")


@login_required
async def set_topic(request: Request) -> Response:
    """Field `topic`: one line, at most MAX_TOPIC characters; empty clears it."""
    room, membership = await owned_room(request)
    typed = (await read_form(request)).get("topic", "")
    try:
        topic = clean_topic(typed)
    except InvalidRoomName as exc:
        return await settings_page(
            request,
            room,
            membership,
            error=str(exc),
            field="topic",
            typed=typed[: MAX_TOPIC * 2],
            status=400,
        )
    async with request.app.state.db() as db:
        await room.set_topic(db, topic)
    log.info("room.topic_changed", room_id=room.id, user_id=membership.user_id)
    return _back(request, room, "topic")


@login_required
async def archive(request: Request) -> Response:
    """Field `archived`: `on` archives (read-only, unlisted), `off` unarchives."""
    room, membership = await owned_room(request)
    choice = (await read_form(request)).get("archived")
    if choice not in {"on", "off"}:
        raise HTTPException(400, "archived must be on or off.")
    await set_archived(request, room, choice == "on")
    log.info(
        "room.archived" if choice == "on" else "room.unarchived",
        room_id=room.id,
        user_id=membership.user_id,
    )
    return _back(request, room, "archived" if choice == "on" else "unarchived")


async def set_archived(request: Request, room: Room, archived: bool) -> None:
    """Archive or unarchive; the members' room lists recount (they leave or rejoin them)."""
    async with request.app.state.db() as db:
        await room.set_archived(db, archived)
        member_ids = list(await db.scalars(Membership.user_ids_of(room.id)))
    for user_id in member_ids:
        try:
            await request.app.state.broker.publish(
                user_channel(user_id), room_state_signal(room.id)
            )
        except BrokerUnavailable:  # their lists are right on the next page they load
            log.warning("room.state_signal_lost", user_id=user_id)


@login_required
async def mute(request: Request) -> Response:
    """Field `muted`: `on` or `off`, for the viewer only."""
    room, membership = await find_membership(request)
    choice = (await read_form(request)).get("muted")
    if choice not in {"on", "off"}:
        raise HTTPException(400, "muted must be on or off.")
    async with request.app.state.db() as db:
        await membership.set_muted(db, choice == "on")
    await room_state_changed(request, membership)
    return _back(request, room, "muted" if choice == "on" else "unmuted")


@login_required
async def mark_all_read(request: Request) -> Response:
    """Every room of the viewer's is read up to its newest message; back to the rooms."""
    user_id = request.state.user.id
    async with request.app.state.db() as db:
        moved = await Membership.mark_all_read(db, user_id)
    for room_id in moved:
        await room_state_changed(request, Membership(user_id=user_id, room_id=room_id))
    return RedirectResponse(request.url_for("index"), status_code=303)


@login_required
async def export_room(request: Request) -> Response:
    """The room as NDJSON (chat/export.py), for its members."""
    room, _ = await find_membership(request)
    # Written to a temporary file first, then sent from it: streamed straight from the
    # cursor, a slow reader held a database connection for the whole download (on
    # SQLite the one pooled connection, which every other request waits for).
    spool = anyio.wrap_file(await anyio.to_thread.run_sync(tempfile.TemporaryFile))
    try:
        async with request.app.state.db() as session:
            connection = await session.connection()
            batch: list[bytes] = []
            async for line in export_lines(connection, room.id):
                batch.append((line + "\n").encode())
                if len(batch) >= EXPORT_WRITE_LINES:
                    await spool.write(b"".join(batch))
                    batch.clear()
            await spool.write(b"".join(batch))
        await spool.seek(0)
    except BaseException:
        await spool.aclose()
        raise

    async def lines() -> AsyncIterator[bytes]:
        try:
            while chunk := await spool.read(EXPORT_READ_BYTES):
                yield chunk
        finally:
            await spool.aclose()

    log.info("room.exported", room_id=room.id, user_id=request.state.user.id)
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="room-{room.id}.ndjson"',
            "Cache-Control": "no-store",
        },
    )


@login_required
async def archived_rooms(request: Request) -> Response:
    """The archived rooms the viewer is in: room lists leave them out."""
    async with request.app.state.db() as db:
        rooms = [
            room for room, _ in await Room.of_member(db, request.state.user) if room.is_archived
        ]
    return request.app.state.templates.TemplateResponse(
        request, "room_settings/archived.html", {"archived_rooms": rooms}
    )
