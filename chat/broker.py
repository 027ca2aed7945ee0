"""Publish/subscribe between the request that posts and the streams that deliver.

A broker moves opaque byte payloads on named channels. Streams subscribe to a room
channel (already-encoded SSE frames) and to their user's channel (control
messages such as "you left this room"). Each subscription has a bounded queue: a
subscriber that cannot keep up is cut off, never waited for, and its client
recovers by replaying from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol


def room_channel(room_id: int) -> str:
    return f"room:{room_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


class SubscriptionOverflow(Exception):
    """The subscriber fell too far behind and was cut off."""


_OVERFLOWED = object()


class Subscription:
    """A bounded queue of (channel, payload) pairs for one stream."""

    def __init__(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.channels = channels
        self._queue: asyncio.Queue[tuple[str, bytes] | object] = asyncio.Queue(maxsize)
        self._on_overflow = on_overflow
        self.overflowed = False

    def deliver(self, channel: str, payload: bytes) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait((channel, payload))
        except asyncio.QueueFull:
            # Nothing queued matters any more: the client will replay from SQL.
            self.overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_OVERFLOWED)
            if self._on_overflow is not None:
                # The consumer may be stuck writing to a client that stopped reading;
                # this lets its owner cut the connection instead of waiting.
                self._on_overflow()

    async def get(self) -> tuple[str, bytes]:
        item = await self._queue.get()
        if item is _OVERFLOWED:
            raise SubscriptionOverflow
        return item  # type: ignore[return-value]


class Broker(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(
        self, *channels: str, on_overflow: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscription]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryBroker:
    """In-process fan-out: enough for one worker, which is what `memory://` means."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self._subscriptions: dict[str, set[Subscription]] = {}

    async def publish(self, channel: str, payload: bytes) -> None:
        for subscription in tuple(self._subscriptions.get(channel, ())):
            subscription.deliver(channel, payload)

    @asynccontextmanager
    async def subscribe(
        self, *channels: str, on_overflow: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscription]:
        subscription = Subscription(channels, self._queue_size, on_overflow)
        for channel in channels:
            self._subscriptions.setdefault(channel, set()).add(subscription)
        try:
            yield subscription
        finally:
            for channel in channels:
                subscribers = self._subscriptions.get(channel)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._subscriptions[channel]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._subscriptions.clear()


def create_broker(url: str, queue_size: int) -> Broker:
    if url.startswith("memory://"):
        return MemoryBroker(queue_size)
    raise ValueError(f"unsupported CHAT_BROKER_URL scheme: {url.split(':', 1)[0]!r}")
