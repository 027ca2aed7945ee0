"""The in-process half of every broker: a bounded queue for each stream
(`Subscription`) and the fan-out of each payload to this process's subscriptions of
its channel (`FanOut`). A subscriber that cannot keep up is cut off, never waited for,
and its client recovers by replaying from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger("chat.subscriptions")


class SubscriptionOverflow(Exception):
    """The subscriber fell too far behind, or lost its feed, and was cut off."""


class Subscription:
    """A bounded queue of (channel, payload) pairs for one stream.

    `direct`, when its owner sets it, is offered each payload that arrives while the
    consumer waits in `get()` with nothing queued: it either delivers the payload at
    once, from the publishing task, and returns True, or returns False and the payload
    is queued. From a False on, everything is queued until the consumer has taken it
    all and waits again, so payloads still reach it in the order they were published.

    A list and one future rather than an asyncio.Queue (four deques, an Event): there
    is one subscription per open stream, and on the fan-out path it stays empty.
    """

    __slots__ = (
        "_maxsize",
        "_on_overflow",
        "_queued",
        "_waiting",
        "_wakeup",
        "channels",
        "direct",
        "overflowed",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.channels = channels
        self._maxsize = maxsize
        self._queued: list[tuple[str, bytes]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._on_overflow = on_overflow
        self.overflowed = False
        self.direct: Callable[[str, bytes], bool] | None = None
        self._waiting = False

    def deliver(self, channel: str, payload: bytes) -> None:
        if self.overflowed:
            return
        if self._waiting:
            try:
                if self.direct(channel, payload):  # type: ignore[misc]
                    return
            except Exception:
                # Never the publisher's problem: this stream ends and its client replays.
                log.exception("broker.direct_delivery_failed", channel=channel)
                self.cut_off()
                return
            self._waiting = False
        if len(self._queued) >= self._maxsize:
            self.cut_off()
            return
        self._queued.append((channel, payload))
        self._wake()

    def cut_off(self) -> None:
        """End the stream: nothing queued matters any more, the client replays from SQL."""
        if self.overflowed:
            return
        self.overflowed = True
        self._waiting = False
        self._queued.clear()
        self._wake()
        if self._on_overflow is not None:
            # The consumer may be stuck writing to a client that stopped reading;
            # this lets its owner cut the connection instead of waiting.
            self._on_overflow()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def get(self) -> tuple[str, bytes]:
        while not self._queued:
            if self.overflowed:
                raise SubscriptionOverflow
            self._waiting = self.direct is not None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
                self._waiting = False
        return self._queued.pop(0)


class FanOut:
    """Channel → this process's subscriptions: the local half of every broker."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self._subscriptions: dict[str, set[Subscription]] = {}

    @property
    def channels(self) -> set[str]:
        return set(self._subscriptions)

    def add(
        self, channels: tuple[str, ...], on_overflow: Callable[[], None] | None
    ) -> Subscription:
        subscription = Subscription(channels, self._queue_size, on_overflow)
        for channel in channels:
            self._subscriptions.setdefault(channel, set()).add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        for channel in subscription.channels:
            subscribers = self._subscriptions.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[channel]

    def deliver(self, channel: str, payload: bytes) -> None:
        for subscription in tuple(self._subscriptions.get(channel, ())):
            subscription.deliver(channel, payload)

    def cut_off_all(self) -> int:
        everyone = {s for subscribers in self._subscriptions.values() for s in subscribers}
        for subscription in everyone:
            subscription.cut_off()
        return len(everyone)


class Subscribed:
    """`MemoryBroker.subscribe`: every open stream holds one for hours, and this object
    is about a tenth of what an asynccontextmanager's generator holds."""

    __slots__ = ("_channels", "_fanout", "_on_overflow", "_subscription")

    def __init__(
        self,
        fanout: FanOut,
        channels: tuple[str, ...],
        on_overflow: Callable[[], None] | None,
    ) -> None:
        self._fanout = fanout
        self._channels = channels
        self._on_overflow = on_overflow
        self._subscription: Subscription | None = None

    async def __aenter__(self) -> Subscription:
        self._subscription = self._fanout.add(self._channels, self._on_overflow)
        self._on_overflow = None  # the subscription holds it
        return self._subscription

    async def __aexit__(self, *_exc: object) -> None:
        self._fanout.remove(self._subscription)  # type: ignore[arg-type]
