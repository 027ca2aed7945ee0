"""The rooms page's one stream: live unread and mention counts for all of a user's rooms.

Browsers open at most six connections per origin over HTTP/1.1, so the rooms page
does not open a stream per room. `UserStream` subscribes to the small activity
notices of every room the user is in (one per posted message, see
MessagePath.post, instead of the rendered frames) and to the user's own channel,
keeps each room's counts in memory, and sends `event: unread` with the exact
counts whenever they change:

  - on connect, from SQL (so a reconnect always starts exact);
  - on a message in one of the rooms: one more unread (none when it is the user's
    own: posting marks the room read), one more mention when it names them;
  - on a room-state signal (the read marker moved or "notify" changed, in any tab
    on any worker): that room again from SQL.

It also sends `event: notify` for a message the user should be told about (a
mention, or any message in a room they asked to be notified about); the page shows
it only while hidden, and once across tabs (static/live.js).

Counts that only grew by messages of others (no mention, no notification) are
coalesced: the first goes out at once, the rest of the next `COUNTS_WINDOW_SECONDS`
together at its end, each room's newest count once. In a room of 1,500 members
posting 25 messages a second (`chat bench capacity` at 10,000 people) each member's
stream had a frame per message, as many writes as the room streams' own; now it has
one a second. The notices that take no frame are counted by the publishing task
itself (`Subscription.direct`) without waking the stream's task, each notice's JSON
is parsed once for all of its subscribers (`_notice`), and under `chat serve` the
window's end writes what it held itself (`write_now`, from chat.streams), again
without the stream's task; the plain path (CHAT_FAST_PATHS=0) has its task send them,
the same bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import sse
from chat.broker import Broker, user_channel
from chat.message_path import activity_channel, end_session_signal
from chat.models import Mention, Room, User
from chat.subscriptions import SubscriptionOverflow

log = structlog.get_logger("chat.activity")

COUNTS_WINDOW_SECONDS = 1.0
UNREAD_FRAME = b'event: unread\ndata: {"room": %d, "unread": %d, "mentions": %d}\n\n'
# Not a channel anyone publishes on: the end of a stream's window, queued to its task.
_WINDOW_ENDED = "activity:window-ended"


@lru_cache(maxsize=256)
def _notice(payload: bytes) -> dict[str, Any]:
    """An activity notice, parsed once for the streams of all of its room's members
    (the same bytes object reaches each; treat the result as read-only)."""
    return json.loads(payload)


@dataclass
class RoomCounts:
    room_id: int
    name: str
    last_seq: int
    last_read_seq: int
    mentions: int
    notify: bool
    is_direct: bool
    muted: bool = False

    def notice_title(self, author: str) -> str:
        # A direct conversation is the author's own.
        return author if self.is_direct else f"{author} in {self.name}"

    def frame(self) -> bytes:
        """`sse.encode("unread", json.dumps({"room": …, "unread": …, "mentions": …}))`,
        formatted directly (the same bytes, tests/test_unread.py): every stream of a
        busy room makes one a second."""
        # A muted room shows no unread count, only its mentions.
        unread = 0 if self.muted else max(self.last_seq - self.last_read_seq, 0)
        return UNREAD_FRAME % (self.room_id, unread, self.mentions)


class UserStream:
    """One rooms-page tab's stream; `frames()` and `close` as for RoomStream."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        broker: Broker,
        user: User,
        session_id: str,
    ) -> None:
        self.db = db
        self.broker = broker
        self.user = user
        self.user_id = user.id
        self.ends_stream = end_session_signal(session_id)
        self.close: Callable[[], None] = lambda: None
        self._own = user_channel(self.user_id)
        self._counts: dict[int, RoomCounts] = {}
        self._held: set[int] = set()  # rooms whose newest counts wait for the window's end
        self._window: asyncio.TimerHandle | None = None
        # Set by chat.streams on the fast path: writes a chunk now if the client's
        # connection takes it (True), or writes nothing (False).
        self.write_now: Callable[[bytes], bool] | None = None

    def _cut_off(self) -> None:
        log.info("stream.cut_off", user_id=self.user_id)
        self.close()

    async def _counts_from_sql(self, room_id: int | None = None) -> dict[int, RoomCounts]:
        """Every room's counts from SQL, or only `room_id`'s."""
        async with self.db() as db:
            if room_id is None:
                rooms = await Room.of_member(db, self.user)
            else:
                found = await db.run_sync(Room.visible_to, self.user, room_id)
                rooms = [found] if found is not None and found[1] is not None else []
            mentions = await Mention.unread_counts(db, self.user.id, room_id)
        return {
            room.id: RoomCounts(
                room.id,
                room.name,
                room.last_seq,
                membership.last_read_seq,
                mentions.get(room.id, 0),
                membership.notify,
                room.is_direct,
                membership.muted,
            )
            for room, membership in rooms
        }

    async def frames(self) -> AsyncIterator[bytes]:
        async with self.db() as db:
            room_ids = [room.id for room, _ in await Room.of_member(db, self.user)]
        own = self._own
        async with self.broker.subscribe(
            *map(activity_channel, room_ids), own, on_overflow=self._cut_off
        ) as subscription:
            self._subscription = subscription
            try:
                yield sse.RETRY_FRAME
                # Read after subscribing: a message posted in between is counted by SQL
                # and then skipped by seq below, never missed.
                counts = self._counts = await self._counts_from_sql()
                for room in counts.values():
                    yield room.frame()
                subscription.direct = self._count_now
                while True:
                    try:
                        channel, payload = await subscription.get()
                    except SubscriptionOverflow:
                        return
                    if channel == _WINDOW_ENDED:
                        if self._held:
                            self._open_window()
                            yield self._held_frames()
                            self._held.clear()
                        continue
                    if channel == own:
                        if payload == self.ends_stream or payload.startswith(
                            (b"leave-room:", b"join-room:")
                        ):
                            return  # the client reconnects, with the rooms as they are now
                        if payload.startswith(b"room-state:"):
                            _, room_id_text, *read = payload.split(b":")
                            room_id = int(room_id_text)
                            room = counts.get(room_id)
                            if read and room is not None and not room.mentions:
                                # Only the read marker moved, and no mention can be
                                # left unread before it: no need to read SQL again.
                                room.last_read_seq = max(room.last_read_seq, int(read[0]))
                                self._held.discard(room_id)
                                yield room.frame()
                                continue
                            fresh = (await self._counts_from_sql(room_id)).get(room_id)
                            if fresh is not None:
                                if room_id in counts:
                                    fresh.last_seq = max(fresh.last_seq, counts[room_id].last_seq)
                                counts[room_id] = fresh
                                self._held.discard(room_id)
                                yield fresh.frame()
                        continue
                    for frame in self._counted(_notice(payload)):
                        yield frame
            finally:
                if self._window is not None:
                    self._window.cancel()
                # The subscription and this stream refer to each other: unlinked, both
                # are freed as the stream ends (tests/test_stream_garbage.py).
                subscription.direct = None
                self._subscription = None

    def _counted(self, posted: dict[str, Any]) -> list[bytes]:
        """A message posted in one of the rooms, counted: the frames it needs now."""
        room = self._counts.get(posted["room"])
        if room is None or posted["seq"] <= room.last_seq:
            return []
        room.last_seq = posted["seq"]
        if posted["author_id"] == self.user_id:
            room.last_read_seq, room.mentions = room.last_seq, 0
            self._held.discard(room.room_id)  # this frame shows the newest count
            return [room.frame()]
        # (Not one the read marker has passed: it may have, if this notice came late.)
        mentioned = self.user_id in posted["mentioned"] and room.last_seq > room.last_read_seq
        room.mentions += mentioned
        if not (mentioned or (room.notify and not room.muted)):
            if self._window is not None:
                self._held.add(room.room_id)
                return []
            self._open_window()
            return [room.frame()]
        self._held.discard(room.room_id)
        notice = {
            "room": room.room_id,
            "seq": room.last_seq,
            "title": room.notice_title(posted["author"]),
            "body": posted["excerpt"],
            "mention": mentioned,
        }
        return [room.frame(), sse.encode("notify", json.dumps(notice))]

    def _count_now(self, channel: str, payload: bytes) -> bool:
        """`Subscription.direct`, in the publishing task: a notice whose count can wait
        for the window's end is counted here (True); anything that needs a frame now, or
        the stream's task, is queued for the task (False), which counts it the same way."""
        if self._window is None or channel == self._own:
            return False
        posted = _notice(payload)
        room = self._counts.get(posted["room"])
        if room is None or posted["seq"] <= room.last_seq:
            return True
        if (
            posted["author_id"] == self.user_id
            or self.user_id in posted["mentioned"]
            or (room.notify and not room.muted)
        ):
            return False
        room.last_seq = posted["seq"]
        self._held.add(room.room_id)
        return True

    def _open_window(self) -> None:
        loop = asyncio.get_running_loop()
        self._window = loop.call_later(COUNTS_WINDOW_SECONDS, self._window_ended)

    def _window_ended(self) -> None:
        self._window = None
        if not self._held:
            return
        # Written here when it can be: each held count is its room's newest, and anything
        # still queued for the task is newer still, so the order of each room's counts
        # holds. Otherwise the task sends them, and opens the next window.
        if self.write_now is not None and self.write_now(self._held_frames()):
            self._held.clear()
            self._open_window()
            return
        self._subscription.deliver(_WINDOW_ENDED, b"")

    def _held_frames(self) -> bytes:
        return b"".join(self._counts[room_id].frame() for room_id in self._held)
