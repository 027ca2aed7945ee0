"""Posting messages and paging back through a room's history."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import login_required
from chat.messages import InvalidMessage
from chat.models import Message, Room
from chat.routes.forms import read_form
from chat.routes.rooms import find_membership, find_room, int_param, room_page


@login_required
async def create(request: Request) -> Response:
    room, membership = await find_membership(request)
    form = await read_form(request)
    body = form.get("body", "")
    reply_to_seq = int_param(form.get("reply_to"), "reply_to")
    try:
        message = await request.app.state.messages.post(
            room.id, request.state.user, body, reply_to_seq
        )
    except InvalidMessage as exc:
        if "hx-request" in request.headers:
            return await _composer(
                request, room, error=str(exc), body=body, reply_to_seq=reply_to_seq, status=400
            )
        return await room_page(request, room, membership, error=str(exc), status=400)
    if message is None:  # they left or were removed a moment ago
        raise HTTPException(403, "You are no longer a member of this room.")
    if "hx-request" in request.headers:
        # The message itself reaches this tab through its stream, like every other tab.
        response = await _composer(request, room)
    else:
        response = RedirectResponse(
            f"{request.url_for('room', room_id=room.id)}#message-{message.seq}", status_code=303
        )
    # After the reply: ending the poster's typing notice need not delay it.
    response.background = BackgroundTask(
        request.app.state.presence.stopped_typing, room.id, request.state.user
    )
    return response


async def _composer(
    request: Request,
    room: Room,
    *,
    error: str = "",
    body: str = "",
    reply_to_seq: int | None = None,
    status: int = 200,
) -> Response:
    """A fresh composer, or the one that was sent back with its error, its text and
    (when it still exists) the message it replies to."""
    context: dict[str, object] = {"room": room, "error": error, "body": body}
    if room.is_direct or reply_to_seq is not None:
        async with request.app.state.db() as db:
            if room.is_direct:
                members = [user for user, _ in await room.members(db)]
                context["room_title"] = room.title_for(members, request.state.user)
            if reply_to_seq is not None:
                context["reply_to"] = await Message.in_room(db, room.id, reply_to_seq)
    return request.app.state.templates.TemplateResponse(
        request, "messages/_composer.html", context, status_code=status
    )


@login_required
async def history(request: Request) -> Response:
    """A fragment of history: the page of messages before `before` with its own "older"
    link, or the page after `after` with its own "newer" link."""
    room, _ = await find_room(request)
    before = int_param(request.query_params.get("before"), "before")
    after = int_param(request.query_params.get("after"), "after")
    if (before is None) == (after is None):
        raise HTTPException(400, "Give exactly one of before and after.")
    async with request.app.state.db() as db:
        messages = await Message.page(
            db, room.id, before=before, after=after, limit=request.app.state.settings.page_size
        )
    return request.app.state.templates.TemplateResponse(
        request,
        "messages/_page.html",
        {
            "room": room,
            "messages": messages,
            "older_link": before is not None,
            "newer_link": after is not None,
        },
    )
