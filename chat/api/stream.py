"""The API's live stream of a room: Server-Sent Events with JSON payloads.

The same invariant as the browser's stream (chat/message_path.py): subscribe first, then
replay from SQL everything after the client's cursor, then go live; every frame's `id:` is
the same cursor (`SEQ` or `SEQ.CHANGE`), so a client that comes back with Last-Event-ID or
?after= gets every message exactly once, in seq order, and every change to those it has.

The broker's frames are the pages' HTML, rendered once for every tab; a bot wants JSON.
So a live frame is only a wake-up here: when its cursor is past what this stream has
sent, the stream reads what it lacks from SQL, in short sessions of its own, exactly as a
replay does. One read per change per API stream, which bots (a few per room) can afford;
and a frame out of order, or one lost to a broker outage, is filled in the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import structlog
from starlette.requests import Request
from starlette.responses import Response

from chat import rate_limits, sse
from chat.api.auth import api_route, cursor, visible_room
from chat.api.errors import ApiError
from chat.api.messages import message_data, room_url
from chat.broker import room_channel, user_channel
from chat.message_path import REPLAY_BATCH, end_session_signal, leave_room_signal
from chat.models import Message, Room, message_pages
from chat.sse import Cursor
from chat.subscriptions import SubscriptionOverflow

log = structlog.get_logger("chat.api.stream")


def token_signal(token_id: int) -> bytes:
    """On the token user's channel: the token was revoked, its streams end."""
    return end_session_signal(f"token:{token_id}")


class ApiRoomStream:
    """One API client's stream of a room; served by chat.streams.RoomStreamResponse as
    the browser's RoomStream is (its `frames()`, `user_id` and `close`)."""

    __slots__ = ("close", "path", "room_id", "room_url", "sent", "token_id", "user_id")

    def __init__(
        self, path, room_id: int, room_url: str, user_id: int, token_id: int, after: Cursor
    ) -> None:
        self.path = path  # chat.message_path.MessagePath: the database and broker
        self.room_id = room_id
        self.room_url = room_url
        self.user_id = user_id
        self.token_id = token_id
        # What the client has: every message up to .seq, with every change up to .change.
        self.sent = after
        self.close: Callable[[], None] = lambda: None

    def _ends(self, payload: bytes) -> bool:
        """They left (or were removed from) the room, or the token was revoked."""
        return payload in (leave_room_signal(self.room_id), token_signal(self.token_id))

    def _cut_off(self) -> None:
        log.info("stream.cut_off", room_id=self.room_id, user_id=self.user_id)
        self.close()

    async def frames(self) -> AsyncIterator[bytes]:
        own = user_channel(self.user_id)
        broker = self.path.broker
        async with broker.subscribe(
            room_channel(self.room_id), own, on_overflow=self._cut_off
        ) as subscription:
            yield sse.RETRY_FRAME
            async for frame in self._catch_up():
                yield frame
            while True:
                try:
                    channel, payload = await subscription.get()
                except SubscriptionOverflow:
                    return
                if channel == own:
                    if self._ends(payload):
                        return
                    continue
                cursor = sse.cursor_of(payload)
                if cursor is None:  # typing and presence: not for bots
                    continue
                if cursor.seq > self.sent.seq or cursor.change > self.sent.change:
                    async for frame in self._catch_up():
                        yield frame

    def _frame(self, event: str, message: Message, cursor: Cursor) -> bytes:
        data = json.dumps(message_data(self.room_url, message), ensure_ascii=False)
        return sse.encode(event, data, id=cursor)

    async def _catch_up(self) -> AsyncIterator[bytes]:
        """Everything after `sent`, as MessagePath.replay reads it: first the messages
        the client has that changed since (as they stand now), then the newer ones."""
        have_seq, change = self.sent
        settled_change = None
        while True:
            async with self.path.db() as db:
                if settled_change is None:
                    # Read first: every change up to it is committed, so the reads
                    # below see it, and the client has it once they are sent.
                    settled_change = await Room.change_count(db, self.room_id)
                batch = await Message.changed_after(
                    db, self.room_id, change, up_to_seq=have_seq, limit=REPLAY_BATCH
                )
            for message in batch:
                change = message.changed
                self.sent = Cursor(have_seq, change)
                event = "delete" if message.is_deleted else "edit"
                yield self._frame(event, message, self.sent)
            if len(batch) < REPLAY_BATCH:
                break
        change = max(change, settled_change)
        seq = have_seq
        while True:
            async with self.path.db() as db:
                batch = await message_pages.page(db, self.room_id, after=seq, limit=REPLAY_BATCH)
            for message in batch:
                seq = message.seq
                self.sent = Cursor(seq, change)
                yield self._frame("message", message, self.sent)
            if len(batch) < REPLAY_BATCH:
                return


@api_route()
async def stream(request: Request) -> Response:
    """`GET /api/v1/rooms/{id}/events`: resumes after the later of Last-Event-ID and
    ?after=, as the browser's stream does. Any room the token may read, as for pages;
    a stream counts against the user's open streams (CHAT_MAX_STREAMS_PER_USER)."""
    room, _ = await visible_room(request)
    token = request.state.token
    await rate_limits.check_streams(request, token.user_id)
    try:
        header = cursor(request.headers.get("last-event-id"), "Last-Event-ID")
    except ApiError:
        header = None  # as for browsers: a stale or foreign header must not break resuming
    query = cursor(request.query_params.get("after"), "after")
    claims = [claim for claim in (header, query) if claim is not None] or [Cursor(0)]
    after = Cursor(max(claim.seq for claim in claims), min(claim.change for claim in claims))
    return request.app.state.streams.response(
        ApiRoomStream(
            request.app.state.messages,
            room.id,
            room_url(request, room.id),
            token.user_id,
            token.id,
            after,
        )
    )
