"""A room's stream to one browser tab (`RoomStream`), and the rule that keeps it in
order (`Order`).

Stream invariant: a stream subscribes first, then replays from SQL everything after
the client's cursor (sse.Cursor: the last seq and the last change it has), then
forwards live frames. It tracks the cursor it has sent: a message at or below its seq,
or a change at or below its change number, is a duplicate and dropped; anything that
skips ahead means frames were published out of order (two posts or changes racing to
the broker), so the gap is filled from SQL first. Seq n and change n are always
committed before n+1 exists (see message_posts.post and Message.change), so the gap is
always in the database by then.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable

import structlog

from chat import sse
from chat.broker import room_channel, user_channel
from chat.message_path import (
    ENDED_REMOVED,
    ENDED_SIGNED_OUT,
    MessagePath,
    end_session_signal,
    leave_room_signal,
)
from chat.sse import Cursor
from chat.subscriptions import SubscriptionOverflow

log = structlog.get_logger("chat.room_stream")


class Order(enum.Enum):
    """Where a live frame stands against what a stream has sent (`RoomStream.order`)."""

    SENT = "the client has it already, or a newer state of it"
    NEXT = "the client can take it now"
    AHEAD = "something before it is missing: read the gap from SQL first"


class RoomStream:
    """One client's stream of a room: `frames()` to send.

    When the client falls so far behind that its queue overflows, the stream calls
    `close`, which its response sets to end the response at once, even while a write
    to the client is blocked; the client comes back and replays from SQL.

    The fan-out fast path: a response may set `deliver_now` (chat.streams.fan_out), which
    the subscription offers each payload published while `frames()` waits with nothing
    queued: a live frame `NEXT` in order is then written by the publishing task itself,
    no queue, no wake-up of this stream's task. Anything else (a gap to fill from SQL, a
    client whose connection is not taking more, a signal) goes through the queue and
    `frames()`, which decides with the same `order`.
    """

    # One per open stream, held for hours: slots rather than a dict, and the signals that
    # end it made when one arrives rather than kept (`ends`).
    __slots__ = (
        "channel",
        "close",
        "deliver_now",
        "path",
        "room_id",
        "sent",
        "session_id",
        "user_id",
    )

    def __init__(
        self, path: MessagePath, room_id: int, user_id: int, session_id: str, after: Cursor
    ) -> None:
        self.path = path
        self.room_id = room_id
        self.user_id = user_id
        self.session_id = session_id
        # What the client has: every message up to .seq, with every change up to .change.
        self.sent = after
        self.deliver_now: Callable[[str, bytes], bool] | None = None
        self.close: Callable[[], None] = lambda: None
        self.channel = room_channel(room_id)

    def ends(self, payload: bytes) -> bool:
        """Whether a signal on the user's own channel ends this stream: they left the
        room, or this session ended."""
        return payload in (
            leave_room_signal(self.room_id),
            end_session_signal(self.session_id),
        )

    def _cut_off(self) -> None:
        log.info("stream.cut_off", room_id=self.room_id, user_id=self.user_id)
        self.close()

    async def frames(self) -> AsyncIterator[bytes]:
        """Every message exactly once and in seq order, and every change to the
        messages the client has (see the module docstring)."""
        own = user_channel(self.user_id)
        async with self.path.broker.subscribe(
            self.channel, own, on_overflow=self._cut_off
        ) as subscription:
            yield sse.RETRY_FRAME
            async for frame in self._replay():
                yield frame
            if self.deliver_now is not None:
                subscription.direct = self.deliver_now
            while True:
                try:
                    channel, payload = await subscription.get()
                except SubscriptionOverflow:
                    return
                if channel == own:
                    if self.ends(payload):
                        # Said before the stream ends, so that the page tells its reader
                        # why instead of reconnecting for ever.
                        yield (
                            ENDED_SIGNED_OUT
                            if payload.startswith(b"end-session:")
                            else ENDED_REMOVED
                        )
                        return
                    continue
                cursor = sse.cursor_of(payload)
                if cursor is None:  # typing, presence: not part of the history
                    yield payload
                    continue
                async for frame in self._live(payload, cursor):
                    yield frame

    def order(self, cursor: Cursor, is_message: bool) -> Order:
        """A new message is next when it follows the last seq sent and its post saw
        no change the client lacks; a change (edit, delete, reaction) when it is the
        next change number and its message is one the client has."""
        sent = self.sent
        if is_message:
            if cursor.seq <= sent.seq:
                return Order.SENT
            if cursor.seq > sent.seq + 1 or cursor.change > sent.change:
                return Order.AHEAD
            return Order.NEXT
        if cursor.change <= sent.change:
            return Order.SENT
        if cursor.change > sent.change + 1 or cursor.seq > sent.seq:
            return Order.AHEAD
        return Order.NEXT

    def after(self, frame: bytes, cursor: Cursor, is_message: bool) -> tuple[Cursor, bytes]:
        """What the client has once sent the NEXT `frame`, and the bytes to send."""
        sent = self.sent
        if is_message:
            if cursor.change == sent.change:
                # The usual case: the client stands where the frame says, and every
                # stream of the room shares the frame's own cursor rather than a copy.
                return cursor, frame
            return Cursor(cursor.seq, max(sent.change, cursor.change)), frame
        now = Cursor(max(sent.seq, cursor.seq), cursor.change)
        if cursor.seq < now.seq:
            # The client must not come back asking for messages it already has.
            return now, frame + sse.cursor_frame(now)
        return now, frame

    async def _live(self, frame: bytes, cursor: Cursor) -> AsyncIterator[bytes]:
        """A published frame, after whatever the client must have first. Frames can
        reach the broker out of order (two posts racing); the gap is always in the
        database by then, because numbers are handed out under the room's lock and
        each is committed before the next exists."""
        is_message = sse.is_message(frame)
        order = self.order(cursor, is_message)
        if order is Order.SENT:
            return
        if order is Order.AHEAD:
            before_seq = cursor.seq if is_message else cursor.seq + 1
            async for missed in self._replay(before_seq=before_seq):
                yield missed
            if self.order(cursor, is_message) is Order.SENT:
                return  # the replay sent it as it stands now
        self.sent, chunk = self.after(frame, cursor, is_message)
        yield chunk

    async def _replay(self, before_seq: int | None = None) -> AsyncIterator[bytes]:
        async for cursor, frame in self.path.replay(self.room_id, self.sent, before_seq):
            yield frame
            self.sent = cursor
