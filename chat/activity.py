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
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import sse
from chat.broker import Broker, SubscriptionOverflow, user_channel
from chat.message_path import activity_channel, end_session_signal
from chat.models import Mention, Room, User

log = structlog.get_logger("chat.activity")


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
        counts = {
            "room": self.room_id,
            # A muted room shows no unread count, only its mentions.
            "unread": 0 if self.muted else max(self.last_seq - self.last_read_seq, 0),
            "mentions": self.mentions,
        }
        return sse.encode("unread", json.dumps(counts))


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

    def _cut_off(self) -> None:
        log.info("stream.cut_off", user_id=self.user_id)
        self.close()

    async def _counts(self, room_id: int | None = None) -> dict[int, RoomCounts]:
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
        own = user_channel(self.user_id)
        async with self.broker.subscribe(
            *map(activity_channel, room_ids), own, on_overflow=self._cut_off
        ) as subscription:
            yield sse.RETRY_FRAME
            # Read after subscribing: a message posted in between is counted by SQL
            # and then skipped by seq below, never missed.
            counts = await self._counts()
            for room in counts.values():
                yield room.frame()
            while True:
                try:
                    channel, payload = await subscription.get()
                except SubscriptionOverflow:
                    return
                if channel == own:
                    if payload == self.ends_stream or payload.startswith(
                        (b"leave-room:", b"join-room:")
                    ):
                        return  # the client reconnects, with the rooms as they are now
                    if payload.startswith(b"room-state:"):
                        room_id = int(payload.split(b":")[1])
                        fresh = (await self._counts(room_id)).get(room_id)
                        if fresh is not None:
                            if room_id in counts:
                                fresh.last_seq = max(fresh.last_seq, counts[room_id].last_seq)
                            counts[room_id] = fresh
                            yield fresh.frame()
                    continue
                posted = json.loads(payload)
                room = counts.get(posted["room"])
                if room is None or posted["seq"] <= room.last_seq:
                    continue
                room.last_seq = posted["seq"]
                if posted["author_id"] == self.user_id:
                    room.last_read_seq, room.mentions = room.last_seq, 0
                    yield room.frame()
                    continue
                mentioned = self.user_id in posted["mentioned"]
                room.mentions += mentioned
                yield room.frame()
                if mentioned or (room.notify and not room.muted):
                    yield sse.encode(
                        "notify",
                        json.dumps(
                            {
                                "room": room.room_id,
                                "seq": room.last_seq,
                                "title": room.notice_title(posted["author"]),
                                "body": posted["excerpt"],
                                "mention": mentioned,
                            }
                        ),
                    )
