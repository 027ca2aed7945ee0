"""The room stream: Server-Sent Events of new messages, resumable by seq."""

from __future__ import annotations

import anyio
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chat.activity import UserStream
from chat.auth import login_required, session_id
from chat.events import Cursor
from chat.messages import RoomStream
from chat.presence import Presence
from chat.routes.rooms import MAX_ID, find_membership

# The scope key under which chat.app.BodySendMiddleware keeps the server's `send`.
SERVER_SEND = "chat.server_send"


class RoomStreamResponse(EventSourceResponse):
    """An SSE response that is torn down as soon as its stream is cut off, even while
    a write to a client that stopped reading is blocked. Its user counts as online
    while it is open. Serves the room streams and the rooms page's UserStream; a
    RoomStream also gets `send_now`, for its fan-out path."""

    def __init__(
        self, stream: RoomStream | UserStream, presence: Presence, **kwargs: object
    ) -> None:
        super().__init__(stream.frames(), **kwargs)
        self.stream = stream
        self.presence = presence
        self._send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = scope.get(SERVER_SEND, send)
        if isinstance(self.stream, RoomStream):
            self.stream.write_now = self.send_now
        async with self.presence.connected(self.stream.user_id):
            # Cancelled by the stream when it is cut off: no task waits for that.
            with anyio.CancelScope() as cut_off:
                self.stream.close = cut_off.cancel
                await super().__call__(scope, receive, send)

    def send_now(self, chunk: bytes) -> bool:
        """Write a body chunk from the calling task (a publisher), without waiting:
        True once written, False when nothing was written because the client's
        connection is not taking more (its transport paused writing).

        The server's own ASGI `send` (see chat.app.BodySendMiddleware) is driven by
        hand rather than awaited. Its only wait, for a paused transport to drain,
        comes before it writes (uvicorn); for a body chunk it otherwise returns
        without suspending. A send that would suspend is therefore closed unwritten, and
        the stream queues the frame for its own task, which waits its turn.
        """
        sending = self._send({"type": "http.response.body", "body": chunk, "more_body": True})  # type: ignore[misc]
        try:
            sending.send(None)
        except StopIteration:
            return True
        sending.close()
        return False


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
    settings = request.app.state.settings
    return RoomStreamResponse(
        request.app.state.messages.stream(
            room.id, membership.user_id, session_id(request.state.auth_session), after
        ),
        request.app.state.presence,
        ping=settings.heartbeat_seconds,
        send_timeout=settings.send_timeout_seconds,
    )
