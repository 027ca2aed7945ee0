"""Posting messages and paging back through a room's history."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import login_required
from chat.messages import InvalidMessage
from chat.models import Message
from chat.routes.forms import read_form
from chat.routes.rooms import find_membership, find_room, int_param, room_page


@login_required
async def create(request: Request) -> Response:
    room, membership = await find_membership(request)
    body = (await read_form(request)).get("body", "")
    try:
        message = await request.app.state.messages.post(room.id, request.state.user, body)
    except InvalidMessage as exc:
        if "hx-request" in request.headers:
            return _composer(request, room, error=str(exc), body=body, status=400)
        return await room_page(request, room, membership, error=str(exc), status=400)
    if message is None:  # they left or were removed a moment ago
        raise HTTPException(403, "You are no longer a member of this room.")
    if "hx-request" in request.headers:
        # The message itself reaches this tab through its stream, like every other tab.
        response = _composer(request, room)
    else:
        response = RedirectResponse(
            f"{request.url_for('room', room_id=room.id)}#message-{message.seq}", status_code=303
        )
    # After the reply: ending the poster's typing notice need not delay it.
    response.background = BackgroundTask(
        request.app.state.presence.stopped_typing, room.id, request.state.user
    )
    return response


def _composer(
    request: Request, room, *, error: str = "", body: str = "", status: int = 200
) -> Response:
    return request.app.state.templates.TemplateResponse(
        request,
        "messages/_composer.html",
        {"room": room, "error": error, "body": body},
        status_code=status,
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
