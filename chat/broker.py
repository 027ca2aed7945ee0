"""Publish/subscribe between the request that posts and the streams that deliver.

A broker moves opaque byte payloads on named channels. Streams subscribe to a room
channel (already-encoded SSE frames) and to their user's channel (control
messages such as "you left this room"). Each subscription has a bounded queue: a
subscriber that cannot keep up is cut off, never waited for, and its client
recovers by replaying from the database.

Two brokers share one in-process fan-out (`FanOut`, in chat/subscriptions.py): `MemoryBroker`
(one worker) and `RedisBroker` (any number of workers, one Redis pub/sub connection each).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import socket
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import structlog

from chat.subscriptions import FanOut, Subscribed, Subscription

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("chat.broker")


# One string per room, shared by its streams (each holds its room's channel).
@functools.lru_cache(maxsize=4096)
def room_channel(room_id: int) -> str:
    return f"room:{room_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


class BrokerUnavailable(Exception):
    """The broker cannot carry messages right now."""


async def cancel_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel background tasks that talk to Redis and wait until they have ended.

    The cancellation is repeated until it takes: on Python 3.11, a cancellation that
    arrives as one of redis-py's own timeouts (connect, read) expires can come out as a
    redis TimeoutError, which a loop that survives Redis errors then swallows.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)


class Broker(Protocol):
    # False while the broker is known to be unable to carry messages: posting then
    # refuses (503) before anything is stored.
    is_up: bool

    # `also`: (channel, payload) pairs published after it in the same round trip, which
    # need not reach anyone if it fails (they are not published again; see RedisBroker).
    async def publish(
        self, channel: str, payload: bytes, also: Sequence[tuple[str, bytes]] = ()
    ) -> None: ...

    def subscribe(
        self, *channels: str, on_overflow: Callable[[], None] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryBroker:
    """In-process fan-out: enough for one worker, which is what `memory://` means."""

    is_up = True

    def __init__(self, queue_size: int) -> None:
        self._fanout = FanOut(queue_size)

    async def publish(
        self, channel: str, payload: bytes, also: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        self._fanout.deliver(channel, payload)
        for other_channel, other_payload in also:
            self._fanout.deliver(other_channel, other_payload)

    def subscribe(
        self, *channels: str, on_overflow: Callable[[], None] | None = None
    ) -> Subscribed:
        return Subscribed(self._fanout, channels, on_overflow)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._fanout.cut_off_all()


# CONNECTION_RACES: _listen (reading) and _reconcile (SUBSCRIBE/UNSUBSCRIBE) share one
# pub/sub connection. When it breaks, redis-py's reconnect-on-error in one task can pull
# the connection out from under the other, which then fails with whatever that leaves
# behind (seen: AttributeError on a writer that is None), not only RedisError. Neither
# task may ever die of it: a dead _reconcile leaves new streams waiting for a
# subscription forever, a dead _listen leaves every stream of this worker silent.
RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 5.0
# Frames whose publish failed are sent again once Redis answers (see RedisBroker.publish).
UNPUBLISHED_LIMIT = 1000
# A peer that vanished without closing the socket is noticed by TCP keepalive.
KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}


# redis-py's own pool (8.x) holds at most 100 connections and fails the 101st command at
# once (MaxConnectionsError, a RedisError): a thousand streams opening together (a
# presence script each) went past it, and so could a burst of posts, whose failed publish
# cuts off every stream of the worker. This pool makes the rest wait for a connection.
REDIS_POOL_SIZE = 100
REDIS_POOL_WAIT_SECONDS = 2.0


def redis_client(url: str, **options: object) -> Redis:
    """A client whose commands queue for one of `REDIS_POOL_SIZE` connections (for up to
    `REDIS_POOL_WAIT_SECONDS`) instead of failing; `options` are the connections'."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT_SECONDS, **options
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


class RedisBroker:
    """Redis pub/sub across workers, fanned out in-process to this worker's streams.

    One pub/sub connection per worker and one Redis subscription per channel that
    has at least one local subscriber; channel names carry `prefix`, because Redis
    pub/sub is shared by every database of a server.

    `subscribe()` returns only once Redis has confirmed the subscription, so a
    stream's "subscribe first, then replay from SQL" still misses nothing.

    When the pub/sub connection drops, every local subscription is cut off, exactly
    like a subscriber that fell behind: its client reconnects (Last-Event-ID or
    ?after=) and replays from SQL by seq, while this worker reconnects to Redis with
    backoff, and new subscriptions wait for it. Cutting off rather than re-reading
    inside the open stream is deliberate: the control signals on user channels
    ("leave-room", "end-session") published during the outage are lost too, and only
    a new request re-checks the session and the membership. It also reuses the one
    recovery path every client already has, so there is no second one to get wrong.

    Must be created inside a running event loop (the app's lifespan).
    """

    def __init__(self, url: str, queue_size: int, prefix: str) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._prefix = prefix
        self._fanout = FanOut(queue_size)
        options = {
            # Names this worker's connections in CLIENT LIST (operators, chaos tests).
            "client_name": f"{prefix}{os.getpid()}",
            "socket_connect_timeout": 2.0,
            "socket_keepalive": True,
            "socket_keepalive_options": KEEPALIVE,
        }
        # Publishing retries once on a fresh connection: a pooled connection that was
        # closed under us must not fail a post. A duplicate publish is harmless
        # (streams drop any seq they already sent).
        self._redis = redis_client(url, retry=Retry(NoBackoff(), 1), socket_timeout=2.0, **options)
        # The pub/sub connection must never reconnect silently: we have to know, to
        # cut off the streams that missed messages meanwhile.
        self._listener = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        self._pubsub = None
        self._control = f"{prefix}broker".encode()  # always subscribed; see _listen
        # Channels SUBSCRIBEd on the current connection, replies still awaited for
        # them, and the ones Redis confirmed.
        self._requested: set[str] = set()
        self._awaiting: Counter[str] = Counter()
        self._live: set[str] = set()
        self._connected = False
        self.is_up = True  # until the first failure: nothing is known to be wrong yet
        self._changed = asyncio.Condition()
        self._wanted_changed = asyncio.Event()
        self._unpublished: deque[tuple[str, bytes]] = deque(maxlen=UNPUBLISHED_LIMIT)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._listen(), name="broker-listen"),
            asyncio.get_running_loop().create_task(self._reconcile(), name="broker-subscribe"),
        ]

    async def publish(
        self, channel: str, payload: bytes, also: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Publish, or raise BrokerUnavailable. A frame that could not be published is
        kept and published again after this worker reconnects to Redis (which it is
        made to do at once), so streams on other workers still get it; those here are
        cut off and replay. The payloads `also` go in the same round trip (a pipeline):
        a post's frame and its activity notice cost Redis and this worker one read and
        one write each instead of two (`chat bench posts` counts Redis's CPU per post)."""
        from redis.exceptions import RedisError

        try:
            if also:
                async with self._redis.pipeline(transaction=False) as pipeline:
                    pipeline.publish(self._prefix + channel, payload)
                    for other_channel, other_payload in also:
                        pipeline.publish(self._prefix + other_channel, other_payload)
                    await pipeline.execute()
            else:
                await self._redis.publish(self._prefix + channel, payload)
        except RedisError as exc:
            self._unpublished.append((channel, payload))
            log.warning("broker.publish_failed", channel=channel, error=type(exc).__name__)
            await self._drop_connection()
            raise BrokerUnavailable(str(exc)) from exc

    @asynccontextmanager
    async def subscribe(
        self, *channels: str, on_overflow: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = self._fanout.add(channels, on_overflow)
        try:
            self._wanted_changed.set()
            async with self._changed:
                await self._changed.wait_for(
                    lambda: subscription.overflowed or self._live.issuperset(channels)
                )
            yield subscription
        finally:
            # No awaiting here (this may run in a cancelled task): the UNSUBSCRIBE is
            # sent by the _reconcile task.
            self._fanout.remove(subscription)
            self._wanted_changed.set()

    async def ping(self) -> None:
        if not self.is_up:
            raise BrokerUnavailable("the Redis pub/sub connection is down")
        await self._redis.ping()

    async def close(self) -> None:
        await cancel_tasks(self._tasks)
        self._fanout.cut_off_all()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._listener.aclose()
        await self._redis.aclose()

    # --- the pub/sub connection ---------------------------------------------------------

    async def _drop_connection(self) -> None:
        """Break the pub/sub connection on purpose: _listen then loses it, cuts off
        the local streams and reconnects."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)

    def _keys(self, channels: Iterable[str]) -> list[bytes]:
        return [(self._prefix + channel).encode() for channel in channels]

    async def _listen(self) -> None:
        """Keep one pub/sub connection, reconnecting with backoff, and fan its
        messages out. The control channel is always subscribed, last in every
        (re)connection's SUBSCRIBE: the connection is then never idle-unsubscribed,
        and its confirmation means every channel before it is confirmed too."""
        from redis.exceptions import RedisError

        delay = RECONNECT_FIRST_DELAY
        while True:
            self._pubsub = self._listener.pubsub()
            try:
                wanted = self._fanout.channels
                self._requested = wanted
                self._awaiting = Counter(wanted)
                await self._pubsub.subscribe(*self._keys(wanted), self._control)
                self._connected = True
                self._wanted_changed.set()  # subscriptions made while we were connecting
                while True:
                    message = await self._pubsub.get_message(timeout=None)
                    if message is not None and await self._handle(message):
                        delay = RECONNECT_FIRST_DELAY
            except (RedisError, OSError) as exc:
                await self._lost(exc)
            except Exception as exc:  # see CONNECTION_RACES
                log.warning("broker.listener_error", error=type(exc).__name__)
                await self._lost(exc)
            finally:
                with contextlib.suppress(Exception):  # a broken connection may fail to close
                    await self._pubsub.aclose()
            # Full jitter: workers that lost Redis together do not return together.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def _handle(self, message: dict) -> bool:
        """Deliver one pub/sub message; True when it confirms a (re)connection."""
        kind, key = message["type"], message["channel"]
        if kind == "message":
            self._fanout.deliver(key.decode().removeprefix(self._prefix), message["data"])
            return False
        if kind != "subscribe":
            return False
        if key == self._control:
            if not self.is_up:
                log.info("broker.reconnected")
            # Frames held back while Redis was away go out before anything new is
            # accepted, so nobody sees a new frame ahead of an older one.
            await self._republish()
            self.is_up = True
            return True
        channel = key.decode().removeprefix(self._prefix)
        self._awaiting[channel] -= 1
        if self._awaiting[channel] <= 0:
            del self._awaiting[channel]
            if channel in self._requested:
                self._live.add(channel)
                async with self._changed:
                    self._changed.notify_all()
        return False

    async def _lost(self, exc: BaseException) -> None:
        self.is_up = False
        self._requested, self._awaiting, self._live = set(), Counter(), set()
        if self._connected:
            # Subscriptions made while disconnected have replayed nothing yet and
            # simply keep waiting; only those that may have missed messages go.
            self._connected = False
            streams = self._fanout.cut_off_all()
            log.warning("broker.connection_lost", error=type(exc).__name__, streams_cut_off=streams)
            async with self._changed:
                self._changed.notify_all()
        else:
            log.debug("broker.reconnect_failed", error=type(exc).__name__)

    async def _reconcile(self) -> None:
        """SUBSCRIBE channels that gained their first local subscriber, UNSUBSCRIBE the
        ones that lost their last. The only task besides _listen that writes to the
        pub/sub connection, so commands go out in the order they were decided."""
        while True:
            await self._wanted_changed.wait()
            self._wanted_changed.clear()
            if not self._connected:
                continue  # the next connection subscribes to everything wanted
            wanted = self._fanout.channels
            new, gone = wanted - self._requested, self._requested - wanted
            pubsub = self._pubsub
            try:
                if new:
                    self._requested |= new
                    self._awaiting.update(new)
                    await self._pubsub.subscribe(*self._keys(new))
                if gone:
                    self._requested -= gone
                    self._live -= gone
                    await self._pubsub.unsubscribe(*self._keys(gone))
            except Exception as exc:  # not only RedisError: see CONNECTION_RACES
                # What was just requested may never be confirmed on this connection:
                # _listen starts over on a new one, subscribing everything wanted.
                log.info("broker.subscribe_failed", error=type(exc).__name__)
                if self._pubsub is pubsub:
                    await self._drop_connection()

    async def _republish(self) -> None:
        from redis.exceptions import RedisError

        while self._unpublished:
            channel, payload = self._unpublished[0]
            try:
                await self._redis.publish(self._prefix + channel, payload)
            except RedisError:
                return  # still failing: _listen will lose the connection and retry
            self._unpublished.popleft()


def create_broker(url: str, queue_size: int, prefix: str = "chat:") -> Broker:
    if url.startswith("memory://"):
        return MemoryBroker(queue_size)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url, queue_size, prefix)
    raise ValueError(f"unsupported CHAT_BROKER_URL scheme: {url.split(':', 1)[0]!r}")
