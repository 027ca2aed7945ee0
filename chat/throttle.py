"""At most one frame per key (a room) per window: typing notices of a busy room.

In a room of 1,500 members posting 25 messages a second (`chat bench capacity` at
10,000 people), each message changes the room's typists twice (its author starts
typing, then posts), and each change was a frame written to every member: twice as
many writes as the messages themselves. A throttle sends a room's first change at
once (a quiet room sees no delay) and holds later ones until the window ends, then
sends only the newest: at most one frame per room per window, each the room's whole
state, so nothing a page shows is lost, only intermediate states it would have
replaced within the window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")


class Throttle(Generic[Key, Value]):
    """`send(key, value)` at most once per `window` seconds per key: the first value of a
    quiet key at once, the newest of the rest (by `newer`) at the window's end."""

    def __init__(
        self,
        window: float,
        send: Callable[[Key, Value], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        newer: Callable[[Value, Value], bool] = lambda new, old: True,
    ) -> None:
        self.window = window
        self._send = send
        self._spawn = spawn
        self._newer = newer
        self._open: dict[Key, asyncio.TimerHandle] = {}  # keys within a window
        self._held: dict[Key, Value] = {}  # the newest value each is holding back

    async def offer(self, key: Key, value: Value) -> None:
        """Sent now (awaited) when `key` is quiet; else held for its window's end."""
        if key in self._open:
            held = self._held.get(key)
            if held is None or self._newer(value, held):
                self._held[key] = value
            return
        self._start_window(key)
        await self._send(key, value)

    def update_held(self, key: Key, value: Value) -> None:
        """`value` replaces what `key` holds, if it holds anything (and it is newer);
        nothing is sent for it otherwise."""
        held = self._held.get(key)
        if held is not None and self._newer(value, held):
            self._held[key] = value

    def _start_window(self, key: Key) -> None:
        loop = asyncio.get_running_loop()
        self._open[key] = loop.call_later(self.window, self._window_ended, key)

    def _window_ended(self, key: Key) -> None:
        del self._open[key]
        value = self._held.pop(key, None)
        if value is not None:  # what the window held goes out, and starts another
            self._start_window(key)
            self._spawn(self._send(key, value))

    def close(self) -> None:
        for handle in self._open.values():
            handle.cancel()
        self._open.clear()
        self._held.clear()
