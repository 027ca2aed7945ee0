"""In-process benchmarks: `chat bench history | search`.

Scenarios are a small registry: `@scenario("name")` on an async function that gets a
signed-in `Bench` (the app in process, driven through httpx's ASGI transport, so each
timing is the whole request: routing, middleware, queries and templates, without the
network) and returns its timings by label. `chat bench` prints p50/p95/p99/max per label.
Run `chat seed` on the database first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from bench.seed import SEED_PASSWORD, rare_words
from bench.stats import percentile
from chat.settings import Settings

# --- scenarios ----------------------------------------------------------------------------


@dataclass
class Bench:
    """A signed-in browser on the app, in process, and what the database holds."""

    client: object  # httpx.AsyncClient
    rooms: list[tuple[int, int]]  # (room id, last seq) of rooms the user is in
    username: str
    requests: int
    rng: random.Random

    async def timed(self, url: str) -> float:
        started = time.perf_counter()
        response = await self.client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return elapsed * 1000


Scenario = Callable[[Bench], Awaitable[dict[str, list[float]]]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(name: str, description: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = (description, function)
        return function

    return register


@scenario("history", "room page (latest), permalink (?at=) and older-history fragment")
async def history(bench: Bench) -> dict[str, list[float]]:
    """Random rooms and places in their history. A page of messages nobody has opened
    since the server started renders them (a permalink, an older fragment), the same
    page again is served from the kept HTML (chat/html_cache.py): both are timed."""
    labels = ("room page", "permalink", "permalink, again", "older fragment")
    timings: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(bench.requests):
        room_id, last_seq = bench.rng.choice(bench.rooms)
        seq = bench.rng.randint(1, max(1, last_seq))
        timings["room page"].append(await bench.timed(f"/rooms/{room_id}"))
        timings["permalink"].append(await bench.timed(f"/rooms/{room_id}?at={seq}"))
        timings["permalink, again"].append(await bench.timed(f"/rooms/{room_id}?at={seq}"))
        timings["older fragment"].append(
            await bench.timed(f"/rooms/{room_id}/messages?before={seq // 2 + 1}")
        )
    return timings


def search_queries(bench: Bench) -> dict[str, str]:
    rare = rare_words(20_000, random.Random(0))
    some_room = f"room-{bench.rooms[len(bench.rooms) // 2][0]:03d}"
    return {
        "common word": "the",
        "two common words": "deploy team",
        "prefix": "rev",
        "rare word": rare[-1],
        "absent word": "zzyzx",
        "phrase": '"release plan"',
        "from + word": "from:user00002 the",
        "in + word": f"in:{some_room} review",
        "has:link + word": "has:link fix",
        "is:mention": "is:mention",
        "dates + word": "after:2020-01-01 before:2100-01-01 bug",
        "exclusion": "deploy -the",
        "syntax as text": 'NEAR( OR "unbalanced',
    }


@scenario("search", "full-text search: common and rare words, phrases, operator mixes")
async def search(bench: Bench) -> dict[str, list[float]]:
    from urllib.parse import urlencode

    timings: dict[str, list[float]] = {}
    for label, query in search_queries(bench).items():
        url = "/search?" + urlencode({"q": query})
        first = await bench.client.get(url)  # warm, and find the next page
        older = re.search(r'class="older-results" href="([^"]+)"', first.text)
        timings[label] = [await bench.timed(url) for _ in range(bench.requests)]
        if older and label == "common word":
            next_page = older[1].replace("&amp;", "&")
            timings["common word, page 2"] = [
                await bench.timed(next_page) for _ in range(bench.requests)
            ]
    return timings


def report(timings: dict[str, list[float]]) -> Iterator[str]:
    width = max(map(len, timings))
    yield f"{'':{width}}  {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    for label, values in timings.items():
        yield (
            f"{label:{width}}  {len(values):>5} {statistics.median(values):8.2f} "
            f"{percentile(values, 0.95):8.2f} {percentile(values, 0.99):8.2f} {max(values):8.2f}"
        )


async def run(name: str, settings: Settings, *, username: str, requests: int) -> list[str]:
    import httpx
    from sqlalchemy import select

    from chat.app import create_app
    from chat.models import Membership, Room, User

    base = "http://bench"
    settings = dataclasses.replace(
        settings, log_level="WARNING", allowed_hosts=("bench",), rate_limits=False
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base, headers={"Origin": base}
        ) as client,
    ):
        login = await client.get("/login")
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', login.text)[1]
        response = await client.post(
            "/login", data={"csrf_token": token, "username": username, "password": SEED_PASSWORD}
        )
        if response.status_code != 303:
            raise SystemExit(f"chat bench: cannot sign in as {username} (run `chat seed` first)")
        async with app.state.db() as db:
            rooms = (
                await db.execute(
                    select(Room.id, Room.last_seq)
                    .join(Membership, Membership.room_id == Room.id)
                    .join(User, User.id == Membership.user_id)
                    .where(User.username == username, Room.last_seq > 0)
                    .order_by(Room.id)
                )
            ).all()
        bench = Bench(client, [tuple(row) for row in rooms], username, requests, random.Random(1))
        timings = await SCENARIOS[name][1](bench)
    return list(report(timings))


def main(name: str, *, username: str, requests: int) -> None:
    for line in asyncio.run(run(name, Settings.from_env(), username=username, requests=requests)):
        print(line)
