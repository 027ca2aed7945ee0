"""The garbage collector's full collections kept short while a crowd is connected.

Why: a full collection walks every object the collector tracks, and an open stream
keeps some eighty of them (its task, its connection's objects, its subscription) for
hours. With 4,000 streams open a full collection took 0.1-0.4 s, and under the steady
churn of a busy server (requests whose objects outlive a young collection) one came
every ten seconds or so: each held up every delivery and request meanwhile, and set
the p99 of `chat bench capacity` (a gc.callbacks log of the server beside its
post→receive latencies per quarter second; figures in the commit message).

What it does: at start-up, and again after each full collection, everything that
survived is frozen (`gc.freeze`): moved out of the collector's sight, as CPython's
documentation suggests for long-lived objects. The next full collection then walks only
what came since, a few thousand objects, not the crowd. Frozen objects are still freed
by reference counting when their last reference goes (an ended stream, which leaves no
cycle: tests/test_stream_garbage.py); what freezing costs is that a cycle among them
is not collected until they are unfrozen. So every `UNFREEZE_SECONDS` everything is
unfrozen, and the next full collection walks all of it once.

The plain path (CHAT_FAST_PATHS=0) freezes only at start-up, and leaves the collector's
own schedule alone after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

UNFREEZE_SECONDS = 3600.0


class Collector:
    """The process's garbage collector while the app runs: `start` in its lifespan,
    `close` at its end (which unfreezes everything)."""

    def __init__(self, *, fast: bool = True, unfreeze_seconds: float = UNFREEZE_SECONDS) -> None:
        self.fast = fast
        self.unfreeze_seconds = unfreeze_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unfreezing: asyncio.Task[None] | None = None
        self._freeze_due = False

    def start(self) -> None:
        # Everything loaded so far (modules, mappers, compiled templates) lives as long
        # as the process.
        gc.collect()
        gc.freeze()
        if not self.fast:
            return
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._after_collection)
        self._unfreezing = self._loop.create_task(self._unfreeze_forever(), name="gc-unfreeze")

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        """A gc.callbacks callback; it runs on whichever thread allocated (aiosqlite's,
        too). The freeze waits for the event loop's next turn, outside the collection."""
        if phase != "stop" or info["generation"] != 2 or self._freeze_due:
            return
        self._freeze_due = True
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._freeze)  # type: ignore[union-attr]

    def _freeze(self) -> None:
        self._freeze_due = False
        gc.freeze()

    async def _unfreeze_forever(self) -> None:
        while True:
            await asyncio.sleep(self.unfreeze_seconds)
            gc.unfreeze()

    async def close(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._unfreezing is not None:
            self._unfreezing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._unfreezing
        gc.unfreeze()
