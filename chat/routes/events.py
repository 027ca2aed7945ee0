"""The room stream: Server-Sent Events of new messages, resumable by seq."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from chat import rate_limits
from chat.auth import login_required, session_id
from chat.room_stream import RoomStream
from chat.routes.rooms import MAX_ID, find_membership
from chat.sse import Cursor


def cursor_param(value: str | None, name: str) -> Cursor | None:
    if value is None or value == "":
        return None
    cursor = Cursor.parse(value)
    if cursor is None or max(cursor) > MAX_ID:
        raise HTTPException(400, f"{name} must be a message cursor such as 42 or 42.7.")
    return cursor


@login_required
async def stream(request: Request) -> Response:
    room, membership = await find_membership(request)
    await rate_limits.check_streams(request, membership.user_id)
    # The browser's own reconnect sends Last-Event-ID; htmx's reconnect only has
    # the URL, so the page keeps ?after= current. Resume after the later message of
    # the two, with the fewer changes: either way nothing the client lacks is skipped.
    try:
        header = cursor_param(request.headers.get("last-event-id"), "Last-Event-ID")
    except HTTPException:
        header = None  # a stale or foreign header must not break reconnecting
    query = cursor_param(request.query_params.get("after"), "after")
    claims = [claim for claim in (header, query) if claim is not None] or [Cursor(0)]
    after = Cursor(max(claim.seq for claim in claims), min(claim.change for claim in claims))
    return request.app.state.streams.response(
        RoomStream(
            request.app.state.messages,
            room.id,
            membership.user_id,
            session_id(request.state.auth_session),
            after,
        )
    )
