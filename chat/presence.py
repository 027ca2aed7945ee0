"""Who is online and who is typing: short-lived state, never written to SQL.

Presence: a user is online while at least one of their event streams is open (any
tab, any worker). When the last one closes they stay online for a grace period, so
a reload does not flicker, then go offline. Each change goes out once on the channel
of every room they are in, in an `event: presence` frame that carries a room's
changes of the last tenth of a second (a list of {"user", "online"}).

Typing: a ping marks a member as typing in a room for `typing_seconds`; their next
message, or silence, ends it. Whenever a room's set of typists changes (expiry
included) an `event: typing` frame carries the whole set and a version number that
only grows, so a tab that gets two frames out of order keeps the newer one. A busy
room's changes go out at most once per `TYPING_WINDOW_SECONDS`, the newest set
(chat/presence_announcer.py). A typist's own message ends their notice without a frame of its
own: every page drops a message's author from its typists when the message arrives
(static/live.js), and the room's next frame has the set without them. (Said with a
frame, each message was followed by a second frame to every member.)

Frames carry JSON and are the same bytes for every subscriber; pages render them with
textContent (static/live.js), and each viewer leaves out their own name.

`MemoryPresence` keeps this in the process (`memory://`, one worker). `RedisPresence`
shares it between workers in Redis, as entries that expire unless refreshed: every
open stream is refreshed every ttl/3 seconds by the worker holding it, so the users of
a worker that was killed go offline `presence_ttl_seconds` (plus at most one sweep)
after its last refresh. Every worker sweeps expired entries each second; the sweep
is a Lua script, so each expiry is announced by exactly one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.broker import Broker, BrokerUnavailable, redis_client
from chat.models import User
from chat.presence_announcer import Announcer, Typists
from chat.settings import Settings

log = structlog.get_logger("chat.presence")

# A typing ping sooner than this after the user's previous one is refused (the page
# sends one every 2 s at most while the composer has input).
TYPING_PING_INTERVAL = 1.0
SWEEP_SECONDS = 1.0


class Presence(Protocol):
    def connected(self, user_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Held for as long as one of the user's event streams is open."""
        ...

    async def online_among(self, user_ids: Iterable[int]) -> set[int]: ...

    async def open_streams(self, user_id: int) -> int:
        """How many event streams the user has open (with Redis: on every worker, those
        closed within the grace period included)."""
        ...

    async def typing(self, room_id: int, user: User) -> bool:
        """Note that `user` is typing; False when they pinged too recently."""
        ...

    async def stopped_typing(self, room_id: int, user: User) -> None:
        """After the user's message: they are no longer typing (no frame says so)."""
        ...

    async def typists(self, room_id: int) -> Typists: ...

    async def room_live(self, room_id: int, user_ids: Iterable[int]) -> tuple[set[int], Typists]:
        """`online_among(user_ids)` and `typists(room_id)` together: with Redis in one
        round trip (a room page served from the page cache asks both each time)."""
        ...

    async def close(self) -> None: ...


class _Connected:
    """`MemoryPresence.connected`: every open stream holds one for hours, and this
    object is about a tenth of what an asynccontextmanager's generator holds."""

    __slots__ = ("_presence", "_user_id")

    def __init__(self, presence: MemoryPresence, user_id: int) -> None:
        self._presence = presence
        self._user_id = user_id

    async def __aenter__(self) -> None:
        await self._presence._opened(self._user_id)

    async def __aexit__(self, *_exc: object) -> None:
        self._presence._closed(self._user_id)


class MemoryPresence(Announcer):
    def __init__(
        self, settings: Settings, db: async_sessionmaker[AsyncSession], broker: Broker
    ) -> None:
        super().__init__(settings, db, broker)
        self._streams: Counter[int] = Counter()
        self._leaving: dict[int, asyncio.TimerHandle] = {}
        # room id → user id → (username, the timer that ends their typing)
        self._typing: dict[int, dict[int, tuple[str, asyncio.TimerHandle]]] = {}
        self._last_ping: dict[int, float] = {}
        self._version = 0

    def connected(self, user_id: int) -> _Connected:
        return _Connected(self, user_id)

    async def _opened(self, user_id: int) -> None:
        self._streams[user_id] += 1
        leaving = self._leaving.pop(user_id, None)
        try:
            if leaving is not None:
                leaving.cancel()
            elif self._streams[user_id] == 1:
                await self._announce_presence(user_id, True)
        except BaseException:
            self._closed(user_id)
            raise

    def _closed(self, user_id: int) -> None:
        self._streams[user_id] -= 1
        if not self._streams[user_id]:
            del self._streams[user_id]
            self._leaving[user_id] = asyncio.get_running_loop().call_later(
                self.grace_seconds, self._left, user_id
            )

    def _left(self, user_id: int) -> None:
        del self._leaving[user_id]
        self._spawn(self._announce_presence(user_id, False))

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        return {i for i in user_ids if i in self._streams or i in self._leaving}

    async def open_streams(self, user_id: int) -> int:
        return self._streams[user_id]

    async def typing(self, room_id: int, user: User) -> bool:
        now = time.monotonic()
        if now - self._last_ping.get(user.id, -TYPING_PING_INTERVAL) < TYPING_PING_INTERVAL:
            return False
        self._last_ping[user.id] = now
        if len(self._last_ping) > 10_000:  # forget people who stopped typing long ago
            self._last_ping = {u: t for u, t in self._last_ping.items() if now - t < 60}
        typists = self._typing.setdefault(room_id, {})
        previous = typists.get(user.id)
        if previous is not None:
            previous[1].cancel()
        typists[user.id] = (
            user.username,
            asyncio.get_running_loop().call_later(
                self.typing_seconds, self._typing_expired, room_id, user.id
            ),
        )
        if previous is None:
            await self._typing_changed(room_id)
        return True

    def _remove_typist(self, room_id: int, user_id: int) -> bool:
        typists = self._typing.get(room_id, {})
        entry = typists.pop(user_id, None)
        if entry is None:
            return False
        entry[1].cancel()
        if not typists:
            del self._typing[room_id]
        return True

    def _typing_expired(self, room_id: int, user_id: int) -> None:
        if self._remove_typist(room_id, user_id):
            self._spawn(self._typing_changed(room_id))

    async def stopped_typing(self, room_id: int, user: User) -> None:
        if self._remove_typist(room_id, user.id):
            self._version += 1
            self._typists_out.update_held(room_id, await self.typists(room_id))

    async def typists(self, room_id: int) -> Typists:
        names = sorted(name for name, _ in self._typing.get(room_id, {}).values())
        return Typists(names, self._version)

    async def room_live(self, room_id: int, user_ids: Iterable[int]) -> tuple[set[int], Typists]:
        return await self.online_among(user_ids), await self.typists(room_id)

    async def _typing_changed(self, room_id: int) -> None:
        self._version += 1
        await self._typists_out.offer(room_id, await self.typists(room_id))

    async def close(self) -> None:
        for handle in self._leaving.values():
            handle.cancel()
        for typists in self._typing.values():
            for _, handle in typists.values():
                handle.cancel()
        await super().close()


# KEYS: the user's connections, the users; ARGV: connection, user id, expiry (ms).
# Returns 1 when the user was offline until now.
_CONNECT = """
local was = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[2])
if was then return 0 end
return 1
"""
# Same keys; ARGV: connection, user id, end of the grace period (ms). The user's
# next check becomes their latest-expiring connection.
_DISCONNECT = """
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then redis.call('ZADD', KEYS[2], 'XX', latest[2], ARGV[2]) end
return 0
"""
# KEYS: the users; ARGV: now (ms), key prefix. Returns the user ids now offline.
_SWEEP_PRESENCE = """
local offline = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)) do
  local connections = ARGV[2] .. 'presence:connections:' .. user
  redis.call('ZREMRANGEBYSCORE', connections, '-inf', ARGV[1])
  local latest = redis.call('ZRANGE', connections, -1, -1, 'WITHSCORES')
  if latest[2] then
    redis.call('ZADD', KEYS[1], latest[2], user)
  else
    redis.call('ZREM', KEYS[1], user)
    table.insert(offline, user)
  end
end
return offline
"""
# The typing version: one more than the last, and never behind the clock (ms), so it
# keeps growing even after its key expired (it does, after 10 idle minutes); and what a
# change of a room's typists returns: {version, "id:name"...}.
_NEXT_VERSION = """
local function next_version(key, now)
  local version = math.max(tonumber(redis.call('GET', key) or '0') + 1, tonumber(now))
  redis.call('SET', key, version, 'PX', 600000)
  return version
end
local function changed(room_key, version_key, now)
  local result = {next_version(version_key, now)}
  for _, member in ipairs(redis.call('ZRANGE', room_key, 0, -1)) do table.insert(result, member) end
  return result
end
"""
# KEYS: the room's typists, all typists by deadline, the version, the user's rate key.
# ARGV: "id:name", "room|id:name", now (ms), deadline (ms), rate limit (ms).
# Returns {-1} when rate-limited, {0} when the set did not change, else {version, names...}.
_TYPING = (
    _NEXT_VERSION
    + """
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[5]) then return {-1} end
local added = redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
if added == 0 then return {0} end
return changed(KEYS[1], KEYS[3], ARGV[3])
"""
)
# KEYS: the room's typists, all typists by deadline, the version; ARGV: the first three above.
_STOPPED_TYPING = (
    _NEXT_VERSION
    + """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if removed == 0 then return {0} end
return changed(KEYS[1], KEYS[3], ARGV[3])
"""
)
# KEYS: all typists by deadline, the version; ARGV: now (ms), key prefix.
# Returns {room, version, names...} for every room whose typists changed.
_SWEEP_TYPING = (
    _NEXT_VERSION
    + """
local rooms = {}
for _, due in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)) do
  redis.call('ZREM', KEYS[1], due)
  local bar = string.find(due, '|', 1, true)
  local room = string.sub(due, 1, bar - 1)
  redis.call('ZREM', ARGV[2] .. 'typing:' .. room, string.sub(due, bar + 1))
  rooms[room] = true
end
local result = {}
for room, _ in pairs(rooms) do
  local entry = changed(ARGV[2] .. 'typing:' .. room, KEYS[2], ARGV[1])
  table.insert(entry, 1, room)
  table.insert(result, entry)
end
return result
"""
)


def _names(members: Iterable[bytes]) -> list[str]:
    """Typist entries are "id:username"."""
    return sorted(member.decode().split(":", 1)[1] for member in members)


def _ms(seconds_from_now: float = 0.0) -> int:
    return int((time.time() + seconds_from_now) * 1000)


class RedisPresence(Announcer):
    """Keys (all under `prefix`): presence:users (sorted set: user id → when to look at
    them next), presence:connections:{user} (connection → expiry), typing:{room}
    ("id:name" → deadline), typing:due ("room|id:name" → deadline, for the sweep),
    typing:version, typing:rate:{user}."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        broker: Broker,
    ) -> None:
        super().__init__(settings, db, broker)
        # The broker's prefix: one Redis server may serve several deployments.
        prefix = self._prefix = settings.broker_prefix
        self._redis = redis_client(
            settings.broker_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._users = f"{prefix}presence:users"
        self._typing_due = f"{prefix}typing:due"
        self._typing_version = f"{prefix}typing:version"
        self._connect = self._redis.register_script(_CONNECT)
        self._disconnect = self._redis.register_script(_DISCONNECT)
        self._sweep_presence = self._redis.register_script(_SWEEP_PRESENCE)
        self._typing_script = self._redis.register_script(_TYPING)
        self._stopped_typing = self._redis.register_script(_STOPPED_TYPING)
        self._sweep_typing = self._redis.register_script(_SWEEP_TYPING)
        self._local: dict[str, int] = {}  # this worker's open streams: connection → user
        self._spawn(self._refresh_forever())
        self._spawn(self._sweep_forever())

    def _connections(self, user_id: int | str) -> str:
        return f"{self._prefix}presence:connections:{user_id}"

    async def _refresh(self, connection: str, user_id: int) -> None:
        keys = [self._connections(user_id), self._users]
        if await self._connect(keys, [connection, user_id, _ms(self.ttl_seconds)]):
            await self._announce_presence(user_id, True)

    @contextlib.asynccontextmanager
    async def connected(self, user_id: int) -> AsyncIterator[None]:
        from redis.exceptions import RedisError

        connection = uuid.uuid4().hex
        self._local[connection] = user_id
        try:
            await self._refresh(connection, user_id)
        except RedisError as exc:  # the heartbeat tries again; the stream goes on
            log.warning("presence.redis_failed", error=type(exc).__name__)
        try:
            yield
        finally:
            del self._local[connection]
            # This often runs in a cancelled task (the client went away).
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                try:
                    await self._disconnect(
                        [self._connections(user_id), self._users],
                        [connection, user_id, _ms(self.grace_seconds)],
                    )
                except RedisError as exc:  # it then expires with its TTL
                    log.warning("presence.redis_failed", error=type(exc).__name__)

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        from redis.exceptions import RedisError

        ids = list(user_ids)
        if not ids:
            return set()
        try:
            scores = await self._redis.zmscore(self._users, ids)
        except RedisError as exc:  # the page still works; it just cannot tell who is here
            log.warning("presence.redis_failed", error=type(exc).__name__)
            return set()
        return {user_id for user_id, score in zip(ids, scores, strict=True) if score is not None}

    async def open_streams(self, user_id: int) -> int:
        from redis.exceptions import RedisError

        try:
            return await self._redis.zcount(self._connections(user_id), _ms(), "+inf")
        except RedisError as exc:  # not knowing, the stream is let through
            log.warning("presence.redis_failed", error=type(exc).__name__)
            return 0

    def _typing_keys(self, room_id: int, user: User) -> tuple[list[str], list[str | int]]:
        member = f"{user.id}:{user.username}"
        return (
            [f"{self._prefix}typing:{room_id}", self._typing_due, self._typing_version],
            [member, f"{room_id}|{member}", _ms()],
        )

    async def typing(self, room_id: int, user: User) -> bool:
        from redis.exceptions import RedisError

        keys, args = self._typing_keys(room_id, user)
        try:
            result = await self._typing_script(
                [*keys, f"{self._prefix}typing:rate:{user.id}"],
                [*args, _ms(self.typing_seconds), int(TYPING_PING_INTERVAL * 1000)],
            )
        except RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        if result[0] == -1:
            return False
        if result[0] > 0:
            await self._typists_out.offer(room_id, Typists(_names(result[1:]), result[0]))
        return True

    async def stopped_typing(self, room_id: int, user: User) -> None:
        from redis.exceptions import RedisError

        try:
            result = await self._stopped_typing(*self._typing_keys(room_id, user))
        except RedisError as exc:  # the notice then simply expires
            log.warning("presence.redis_failed", error=type(exc).__name__)
            return
        if result[0] > 0:
            self._typists_out.update_held(room_id, Typists(_names(result[1:]), result[0]))

    async def typists(self, room_id: int) -> Typists:
        return (await self.room_live(room_id, ()))[1]

    async def room_live(self, room_id: int, user_ids: Iterable[int]) -> tuple[set[int], Typists]:
        """One transaction: who of `user_ids` is online, the room's typists and the
        typing version, in one round trip where each asked alone took its own (Redis's
        CPU per room page served from the page cache: 37-38 µs before, 29-35 after, in
        `chat bench http --backend postgres --rows room`)."""
        from redis.exceptions import RedisError

        ids = list(user_ids)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if ids:
                    pipe.zmscore(self._users, ids)
                pipe.zrange(f"{self._prefix}typing:{room_id}", 0, -1)
                pipe.get(self._typing_version)
                *scores, members, version = await pipe.execute()
        except RedisError as exc:  # the page still works; it cannot tell who is here
            log.warning("presence.redis_failed", error=type(exc).__name__)
            return set(), Typists([], 0)
        online = (
            {user_id for user_id, score in zip(ids, scores[0], strict=True) if score is not None}
            if ids
            else set()
        )
        return online, Typists(_names(members), int(version or 0))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_seconds / 3)
            for connection, user_id in tuple(self._local.items()):
                try:
                    await self._refresh(connection, user_id)
                except Exception as exc:
                    log.warning("presence.refresh_failed", error=type(exc).__name__)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                for user_id in await self._sweep_presence([self._users], [_ms(), self._prefix]):
                    await self._announce_presence(int(user_id), False)
                for room_id, version, *members in await self._sweep_typing(
                    [self._typing_due, self._typing_version], [_ms(), self._prefix]
                ):
                    await self._typists_out.offer(int(room_id), Typists(_names(members), version))
            except Exception as exc:
                log.warning("presence.sweep_failed", error=type(exc).__name__)

    async def close(self) -> None:
        await super().close()
        await self._redis.aclose()


def create_presence(
    settings: Settings, db: async_sessionmaker[AsyncSession], broker: Broker
) -> Presence:
    """Must be called inside a running event loop (the app's lifespan)."""
    if settings.broker_url.startswith("memory://"):
        return MemoryPresence(settings, db, broker)
    return RedisPresence(settings, db, broker)
