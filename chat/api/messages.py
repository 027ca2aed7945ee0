"""The API's rooms and messages: list, page, read, post, edit, delete, react, join.

Writes go through the browser's own message path (chat/message_path.py), so every open
tab and stream sees them at once and they take the room's next seq as any post does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat import rate_limits
from chat.api.auth import (
    api_route,
    field,
    json_body,
    path_number,
    query_number,
    viewer,
    visible_room,
    writable_room,
)
from chat.api.errors import ApiError
from chat.message_path import InvalidMessage, clean_emoji
from chat.models import Message, MessageGone, NotYours, Room, RoomKind, message_pages

MAX_PAGE = 100


def room_url(request: Request, room_id: int) -> str:
    return str(request.url_for("room", room_id=room_id))


def permalink(request: Request, room_id: int, seq: int) -> str:
    return f"{room_url(request, room_id)}?at={seq}#message-{seq}"


def message_json(request: Request, message: Message) -> dict[str, Any]:
    return message_data(room_url(request, message.room_id), message)


def message_data(room_url: str, message: Message) -> dict[str, Any]:
    """A message as the API shows it (`room_url`: its room page's absolute URL): the text
    as typed, and the sanitized HTML the pages show (with @mentions and links)."""
    return {
        "room_id": message.room_id,
        "seq": message.seq,
        "author": message.author_name or None,
        "author_is_bot": bool(message.author and message.author.is_bot),
        "body": message.body,
        "html": message.html,
        "created_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at else None,
        "deleted": message.is_deleted,
        "reply_to": message.reply_to_seq,
        "reactions": [{"emoji": emoji, "users": names} for emoji, names in message.reaction_groups],
        "attachments": [
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": attachment.size,
                # The route `attachment`, written out: a stream keeps no request.
                "url": f"{room_url}/attachments/{attachment.key}",
            }
            for attachment in message.attachments
        ],
        "permalink": f"{room_url}?at={message.seq}#message-{message.seq}",
    }


def room_json(request: Request, room: Room, *, member: bool) -> dict[str, Any]:
    return {
        "id": room.id,
        "name": room.name,
        "kind": room.kind,
        "private": room.is_private,
        "member": member,
        "last_seq": room.last_seq,
        "url": str(request.url_for("room", room_id=room.id)),
    }


@api_route()
async def list_rooms(request: Request) -> Response:
    """The rooms the token's user is in (only those the token names, if it names any)."""
    token = request.state.token
    async with request.app.state.db() as db:
        rooms = await Room.of_member(db, viewer(request))
    return JSONResponse(
        {
            "rooms": [
                room_json(request, room, member=True) for room, _ in rooms if token.may_see(room.id)
            ]
        }
    )


@api_route()
async def show_room(request: Request) -> Response:
    room, membership = await visible_room(request)
    return JSONResponse({"room": room_json(request, room, member=membership is not None)})


@api_route(write=True)
async def join_room(request: Request) -> Response:
    """Join a public room (a bot joins as a person does); 200 when already a member."""
    room, membership = await visible_room(request)
    if membership is None:
        if room.is_private or room.kind == RoomKind.DIRECT:
            raise ApiError(403, "forbidden", "Only a room's owners can add you to it.")
        async with request.app.state.db() as db:
            await room.add_member(db, viewer(request))
        return JSONResponse({"room": room_json(request, room, member=True)}, status_code=201)
    return JSONResponse({"room": room_json(request, room, member=True)})


@api_route()
async def list_messages(request: Request) -> Response:
    """A page of messages, oldest first: the newest (before `before`, if given) or the
    oldest after `after` (and before `before`, if both are given). Keyset by seq:
    `has_more` says whether another page lies beyond in the direction asked (older for
    `before` or none, newer for `after`)."""
    room, _ = await visible_room(request)
    before = query_number(request, "before")
    after = query_number(request, "after")
    limit = query_number(request, "limit")
    limit = 50 if limit is None else limit
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "bad_request", f"limit is 1 to {MAX_PAGE}.")
    async with request.app.state.db() as db:
        messages = await message_pages.page(
            db, room.id, before=before, after=after, limit=limit + 1
        )
        has_more = len(messages) > limit
        if has_more:
            messages = messages[:limit] if after is not None else messages[1:]
        body = [message_json(request, message) for message in messages]
    return JSONResponse({"messages": body, "has_more": has_more})


@api_route()
async def show_message(request: Request) -> Response:
    room, _ = await visible_room(request)
    seq = path_number(request, "seq")
    async with request.app.state.db() as db:
        message = await Message.find(db, room.id, seq, deleted=True)
        if message is None:
            raise ApiError(404, "not_found", "There is no such message.")
        return JSONResponse({"message": message_json(request, message)})


async def _rate(request: Request, limit: str) -> None:
    await rate_limits.hit(request, limit, f"token:{request.state.token.id}")


@api_route(write=True)
async def post_message(request: Request) -> Response:
    """`{"body": "...", "reply_to": SEQ}` → 201 with the message (its seq, permalink)."""
    room, _ = await writable_room(request)
    body = await json_body(request)
    text = field(body, "body", str)
    reply_to = field(body, "reply_to", int, required=False)
    await _rate(request, "post")
    try:
        message = await request.app.state.messages.post(room.id, viewer(request), text, reply_to)
    except InvalidMessage as exc:
        raise ApiError(422, "invalid_message", str(exc)) from exc
    if message is None:  # removed from the room a moment ago
        raise ApiError(403, "not_a_member", "Join this room first.")
    link = permalink(request, room.id, message.seq)
    return JSONResponse(
        {"message": message_json(request, message)},
        status_code=201,
        headers={"Location": link},
    )


async def _change(request: Request, kind: str, value: str = "") -> Message:
    room, membership = await writable_room(request)
    seq = path_number(request, "seq")
    path, user = request.app.state.messages, viewer(request)
    await _rate(request, "change")
    try:
        if kind == "edit":
            return await path.edit(room.id, seq, user, value)
        if kind == "delete":
            return await path.delete(room.id, seq, user, may_moderate=membership.is_owner)
        return await path.react(room.id, seq, user, value)
    except InvalidMessage as exc:
        raise ApiError(422, "invalid_message", str(exc)) from exc
    except MessageGone as exc:
        raise ApiError(404, "not_found", "There is no such message, or it was deleted.") from exc
    except NotYours as exc:
        raise ApiError(403, "not_yours", "Only its author can change this message.") from exc


@api_route(write=True)
async def edit_message(request: Request) -> Response:
    """`{"body": "..."}`: the author's new text."""
    text = field(await json_body(request), "body", str)
    message = await _change(request, "edit", text)
    return JSONResponse({"message": message_json(request, message)})


@api_route(write=True)
async def delete_message(request: Request) -> Response:
    message = await _change(request, "delete")
    return JSONResponse({"message": message_json(request, message)})


@api_route(write=True)
async def react(request: Request) -> Response:
    """`{"emoji": "👍"}` toggles the user's reaction; `reacted` says which way."""
    emoji = field(await json_body(request), "emoji", str)
    message = await _change(request, "react", emoji)
    name, chosen = viewer(request).username, clean_emoji(emoji)
    reacted = any(group == chosen and name in names for group, names in message.reaction_groups)
    return JSONResponse({"message": message_json(request, message), "reacted": reacted})
