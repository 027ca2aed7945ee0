"""chat/throttle.py: a key's first value goes out at once, the newest of a window's
others at its end, and nothing in between."""

from __future__ import annotations

import asyncio

from chat.throttle import Throttle


async def test_a_busy_key_sends_its_first_value_at_once_and_only_the_newest_after() -> None:
    sent: list[tuple[str, int]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def send(key: str, value: int) -> None:
        sent.append((key, value))

    def spawn(coroutine) -> None:
        tasks.add(asyncio.get_running_loop().create_task(coroutine))

    throttle = Throttle(0.05, send, spawn, newer=lambda new, old: new > old)
    await throttle.offer("a", 1)
    await throttle.offer("b", 1)
    assert sent == [("a", 1), ("b", 1)]  # quiet keys: at once, each its own window
    for value in (3, 2, 4):
        await throttle.offer("a", value)
    assert sent == [("a", 1), ("b", 1)]
    await asyncio.sleep(0.08)
    assert sent == [("a", 1), ("b", 1), ("a", 4)]  # the newest, once; "b" held nothing
    await asyncio.sleep(0.08)  # the window "a"'s send opened ended empty: "a" is quiet
    await throttle.offer("a", 5)
    assert sent[-1] == ("a", 5)
    await throttle.offer("a", 6)
    throttle.close()  # nothing held goes out after close
    await asyncio.sleep(0.08)
    assert sent[-1] == ("a", 5)
    await asyncio.gather(*tasks)
