"""What presence and typing send to the rooms, and when: `event: presence` frames
batched per room for `PRESENCE_BATCH_SECONDS`, `event: typing` frames at most once per
`TYPING_WINDOW_SECONDS` (chat/throttle.py). Both implementations of chat/presence.py
announce through this."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import sse
from chat.broker import Broker, cancel_tasks, room_channel
from chat.models import Membership, User
from chat.settings import Settings
from chat.throttle import Throttle

log = structlog.get_logger("chat.presence_announcer")

# A room's typing frames go out at most once per this long (chat/throttle.py).
TYPING_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class Typists:
    names: list[str]
    version: int

    def frame(self) -> bytes:
        return sse.encode("typing", self.json())

    def json(self) -> str:
        return json.dumps({"typists": self.names, "version": self.version})


# Presence changes of one room within this long go out as one frame. When a thousand
# members connect at once (a big room in the morning, every client back after a
# restart), each stream then gets a few frames, not one per member: those had filled
# the queues of streams still replaying from SQL, which were cut off (chat bench fanout).
PRESENCE_BATCH_SECONDS = 0.1


def presence_frame(changes: Mapping[str, bool]) -> bytes:
    """`changes`: username → online, the newest state of each."""
    return sse.encode(
        "presence",
        json.dumps([{"user": user, "online": online} for user, online in changes.items()]),
    )


class Announcer:
    """What both implementations share: publishing changes, and background tasks."""

    def __init__(
        self, settings: Settings, db: async_sessionmaker[AsyncSession], broker: Broker
    ) -> None:
        self.grace_seconds = settings.presence_grace_seconds
        self.ttl_seconds = settings.presence_ttl_seconds
        self.typing_seconds = settings.typing_seconds
        self._db = db
        self._broker = broker
        self._tasks: set[asyncio.Task[None]] = set()
        self._unannounced: dict[int, dict[str, bool]] = {}  # room → username → online
        self._typists_out: Throttle[int, Typists] = Throttle(
            TYPING_WINDOW_SECONDS,
            self._send_typists,
            self._spawn,
            newer=lambda new, old: new.version > old.version,
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce_presence(self, user_id: int, online: bool) -> None:
        try:
            async with self._db() as db:
                rows = (
                    await db.execute(
                        select(User.username, Membership.room_id)
                        .join(Membership, Membership.user_id == User.id)
                        .where(User.id == user_id)
                    )
                ).all()
        except Exception as exc:  # best effort, like publishing: pages catch up on load
            log.warning("presence.announce_failed", user_id=user_id, error=type(exc).__name__)
            return
        for username, room_id in rows:
            changes = self._unannounced.get(room_id)
            if changes is None:
                changes = self._unannounced[room_id] = {}
                self._spawn(self._announce_later(room_id))
            changes[username] = online

    async def _announce_later(self, room_id: int) -> None:
        await asyncio.sleep(PRESENCE_BATCH_SECONDS)
        await self._publish(room_id, presence_frame(self._unannounced.pop(room_id)))

    async def _send_typists(self, room_id: int, typists: Typists) -> None:
        await self._publish(room_id, typists.frame())

    async def _publish(self, room_id: int, frame: bytes) -> None:
        try:
            await self._broker.publish(room_channel(room_id), frame)
        except Exception as exc:  # presence is best effort; a post must never fail on it
            log.warning("presence.publish_failed", room_id=room_id, error=type(exc).__name__)

    async def close(self) -> None:
        self._typists_out.close()
        await cancel_tasks(tuple(self._tasks))
