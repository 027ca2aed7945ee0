"""Benchmark data and scenarios: `chat seed` fills a database, `chat bench NAME` measures.

Scenarios are a small registry: `@scenario("name")` on an async function that gets a
signed-in `Bench` (the app in process, driven through httpx's ASGI transport, so each
timing is the whole request: routing, middleware, queries and templates, without the
network) and returns its timings by label. `chat bench` prints p50/p95/p99/max per label.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import escape

from chat import sanitize
from chat.settings import Settings

SEED_PASSWORD = "seed-password"  # noqa: S105 (benchmark accounts only)
BATCH = 10_000
# Every message of the seeded history is this far apart; the newest is "now".
MESSAGE_SPACING = timedelta(seconds=20)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COMMON_WORDS = _words(
    "the to and a of is it in that you for on this we with be have are not but at so "
    "just can do was if will about what all like there get they one my me think know "
    "out up yes no ok good now time when more some then make how deploy build test "
    "review meeting today tomorrow team release bug fix issue server client data "
    "please thanks sure maybe need look check update change work done again later"
)
PHRASES = ("release plan", "code review", "on call", "status update", "stand up")
_SYLLABLES = _words("ka lo mi ne ru sa ti vo ze ba de fi go hu ja ko li mo nu pa re si tu")


def _rare_words(count: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class TextMaker:
    """Chat-like text: Zipf-distributed words, some phrases, links and mentions."""

    def __init__(self, usernames: list[str], rng: random.Random) -> None:
        self.rng = rng
        self.usernames = usernames
        self.words = list(COMMON_WORDS) + _rare_words(20_000, rng)
        self.cumulative = list(
            itertools.accumulate(1 / rank for rank in range(1, len(self.words) + 1))
        )

    def body(self) -> str:
        rng = self.rng
        words = rng.choices(self.words, cum_weights=self.cumulative, k=rng.randint(3, 24))
        roll = rng.random()
        if roll < 0.05:
            words.insert(rng.randrange(len(words)), rng.choice(PHRASES))
        elif roll < 0.09:
            words.append(f"https://example.com/{rng.choice(self.words)}/{rng.randint(1, 9999)}")
        elif roll < 0.11:
            words.insert(0, "@" + rng.choice(self.usernames))
        return " ".join(words).capitalize()

    @staticmethod
    def html(body: str) -> str:
        # What sanitize.render makes of plain words, without its cost at a million rows.
        if "://" in body:
            return sanitize.render(body)
        return f"<p>{escape(body)}</p>\n"


class Progress:
    """One stderr line, rewritten in place."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.started = label, total, time.monotonic()

    def show(self, done: int) -> None:
        rate = done / max(time.monotonic() - self.started, 1e-9)
        print(
            f"\r{self.label}: {done:,}/{self.total:,} ({done / self.total:.0%}) {rate:,.0f}/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def finish(self) -> None:
        print(f" in {time.monotonic() - self.started:.1f} s", file=sys.stderr)


def _sqlite_time(moment: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime stores (the raw driver bypasses it).
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


async def seed(database_url: str, *, rooms: int, users: int, messages: int, rng_seed: int) -> None:
    """Add `users` accounts (password SEED_PASSWORD), `rooms` rooms (every fifth one
    private) and `messages` messages to a migrated database, in batches."""
    from sqlalchemy import insert, select, text, update

    from chat.auth import hash_password
    from chat.db import create_engine
    from chat.models import Membership, Room, User

    rng = random.Random(rng_seed)
    engine = create_engine(database_url)
    sqlite = engine.dialect.name == "sqlite"
    password_hash = await hash_password(SEED_PASSWORD)
    now = datetime.now(UTC)
    first_moment = now - MESSAGE_SPACING * messages
    async with engine.begin() as db:
        start = (await db.scalar(select(User.id).order_by(User.id.desc()).limit(1))) or 0
        usernames = [f"user{start + n:05d}" for n in range(1, users + 1)]
        await db.execute(
            insert(User),
            [
                {"username": name, "password_hash": password_hash, "created_at": first_moment}
                for name in usernames
            ],
        )
        user_ids = list(
            await db.scalars(select(User.id).where(User.username.in_(usernames)).order_by(User.id))
        )
        room_ids = []
        for n in range(1, rooms + 1):
            room_ids.append(
                await db.scalar(
                    insert(Room)
                    .values(
                        name=f"room-{start + n:03d}",
                        is_private=n % 5 == 0,
                        created_by_id=user_ids[0],
                        created_at=first_moment,
                    )
                    .returning(Room.id)
                )
            )
        # The first user is in every room (the benchmarks sign in as them); everyone
        # else is in a quarter of the rooms.
        members = {room_id: [user_ids[0]] for room_id in room_ids}
        for user_id in user_ids[1:]:
            for room_id in rng.sample(room_ids, max(1, rooms // 4)):
                members[room_id].append(user_id)
        await db.execute(
            insert(Membership),
            [
                {
                    "user_id": user_id,
                    "room_id": room_id,
                    "role": "member",
                    "joined_at": first_moment,
                }
                for room_id, ids in members.items()
                for user_id in ids
            ],
        )
    text_maker = TextMaker(usernames, rng)
    # Some rooms are far busier than others.
    room_weights = list(itertools.accumulate(1 / rank for rank in range(1, rooms + 1)))
    last_seq = dict.fromkeys(room_ids, 0)
    progress = Progress("seeding messages", messages)
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        for batch_start in range(0, messages, BATCH):
            rows = []
            for n in range(batch_start, min(messages, batch_start + BATCH)):
                room_id = rng.choices(room_ids, cum_weights=room_weights)[0]
                last_seq[room_id] += 1
                body = text_maker.body()
                moment = first_moment + MESSAGE_SPACING * n
                rows.append(
                    (
                        room_id,
                        last_seq[room_id],
                        rng.choice(members[room_id]),
                        body,
                        text_maker.html(body),
                        _sqlite_time(moment) if sqlite else moment,
                    )
                )
            if sqlite:
                await raw.executemany(
                    "INSERT INTO messages (room_id, seq, author_id, body, html, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                await raw.commit()
            else:
                await raw.copy_records_to_table(
                    "messages",
                    records=rows,
                    columns=["room_id", "seq", "author_id", "body", "html", "created_at"],
                )
            progress.show(batch_start + len(rows))
        progress.finish()
    async with engine.begin() as db:
        for room_id, seq in last_seq.items():
            await db.execute(update(Room).where(Room.id == room_id).values(last_seq=seq))
            await db.execute(
                update(Membership).where(Membership.room_id == room_id).values(last_read_seq=seq)
            )
    if not sqlite:
        # VACUUM, not only ANALYZE: it also merges the GIN index's pending list, which a
        # search would otherwise read through (twice as slow) until autovacuum runs.
        async with engine.connect() as db:
            await db.execution_options(isolation_level="AUTOCOMMIT")
            await db.execute(text("VACUUM ANALYZE"))
    await engine.dispose()


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
    rare = _rare_words(20_000, random.Random(0))
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


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

    settings = dataclasses.replace(settings, log_level="WARNING")
    app = create_app(settings)
    base = "http://bench"
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
