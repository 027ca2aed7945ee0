"""`chat bench cost`: the CPU each request of `chat bench http`'s workload costs, in
process, with the fast paths (the page cache, the hot statements, the router) and
without them (CHAT_FAST_PATHS=0).

Both apps run in this one process on the database of `CHAT_DATABASE_URL` (seeded with
`chat seed`), signed in as `--user`. Each is driven by raw ASGI calls (no network, no
HTTP parsing) from 16 concurrent tasks, and a round's cost is the process's CPU time
(every thread's: SQLite's too) divided by its requests. The apps take turns, round by
round, so a machine shared with other work slows both alike: CPU time per request
moves far less with the machine's load than requests per second, and the ratio of
the two apps even less. Every answer must be a 200.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from chat.settings import Settings

HOST = "bench"
CONCURRENT = 16
ROWS = ("room", "messages", "sidebar", "search", "post")

Call = Callable[[], Awaitable[int]]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": (HOST, 80),
    }


async def _call(app, method: str, path: str, headers: list, body: bytes = b"") -> int:
    """One request through the whole app; its status."""
    status = 0
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away mid-request
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(method, path, headers), receive, send)
    return status


async def _round(call: Call, requests: int) -> tuple[float, int]:
    """CPU µs per request over `requests` calls from CONCURRENT tasks; the bad answers."""
    bad = 0
    each = max(1, requests // CONCURRENT)

    async def task() -> None:
        nonlocal bad
        for _ in range(each):
            status = await call()
            if status != 200:
                bad += 1

    started = time.process_time()
    await asyncio.gather(*(task() for _ in range(CONCURRENT)))
    return (time.process_time() - started) / (each * CONCURRENT) * 1e6, bad


async def measure(settings: Settings, *, username: str, requests: int, rounds: int) -> list[str]:
    from sqlalchemy import select

    from bench.servers import sign_in
    from chat.app import create_app
    from chat.models import Membership, Room, User

    settings = dataclasses.replace(
        settings, log_level="WARNING", allowed_hosts=(HOST,), rate_limits=False
    )
    apps = {
        "fast": create_app(settings),
        "plain": create_app(dataclasses.replace(settings, fast_paths=False)),
    }
    async with (
        apps["fast"].router.lifespan_context(apps["fast"]),
        apps["plain"].router.lifespan_context(apps["plain"]),
    ):
        async with apps["fast"].state.db() as db:
            user_id = await db.scalar(select(User.id).where(User.username == username))
            if user_id is None:
                raise SystemExit(f"chat bench cost: no user {username} (run `chat seed`)")
            rooms = (
                await db.execute(
                    select(Room.id, Room.last_seq)
                    .join(Membership, Membership.room_id == Room.id)
                    .where(Membership.user_id == user_id, Room.last_seq > 1)
                    .order_by(Room.id)
                    .limit(2)
                )
            ).all()
        (member,) = await sign_in(settings.database_url, settings.secret_key, [user_id])
        cookie = "; ".join(f"{name}={value}" for name, value in member.cookies.items())
        headers = [(b"cookie", cookie.encode())]
        post_headers = [
            *headers,
            (b"origin", f"http://{HOST}".encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-csrf-token", member.csrf_token.encode()),
            (b"hx-request", b"true"),
        ]
        (room, last_seq), (post_room, _) = rooms[0], rooms[-1]
        paths = {
            "room": f"/rooms/{room}",
            "messages": f"/rooms/{room}/messages?before={max(2, last_seq // 2)}",
            "sidebar": "/",
            "search": "/search?q=build",
        }
        posted = 0

        def caller(app, row: str) -> Call:
            async def call() -> int:
                nonlocal posted
                if row != "post":
                    return await _call(app, "GET", paths[row], headers)
                posted += 1
                body = f"body={quote(f'bench-cost {posted} {time.time()}')}".encode()
                return await _call(app, "POST", f"/rooms/{post_room}/messages", post_headers, body)

            return call

        lines = [f"{'CPU µs/request':16} {'fast':>8} {'plain':>8} {'plain/fast':>10}  bad"]
        for row in ROWS:
            costs: dict[str, list[float]] = {name: [] for name in apps}
            bad = 0
            for app in apps.values():  # warm-up: caches, compiled templates
                bad += (await _round(caller(app, row), CONCURRENT * 2))[1]
            for number in range(rounds):
                order = list(apps) if number % 2 == 0 else list(reversed(apps))
                for name in order:
                    cost, wrong = await _round(caller(apps[name], row), requests)
                    costs[name].append(cost)
                    bad += wrong
            fast, plain = (statistics.median(costs[name]) for name in ("fast", "plain"))
            lines.append(f"{row:16} {fast:8.0f} {plain:8.0f} {plain / fast:9.2f}x  {bad}")
        lines.append(
            f"median of {rounds} interleaved rounds of {requests} requests each, "
            f"{CONCURRENT} concurrent; fast: CHAT_FAST_PATHS=1, plain: CHAT_FAST_PATHS=0"
        )
        return lines


def main(*, username: str, requests: int, rounds: int) -> None:
    settings = Settings.from_env()
    for line in asyncio.run(measure(settings, username=username, requests=requests, rounds=rounds)):
        print(line)
