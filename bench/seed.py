"""`chat seed`: realistic chat history in a migrated database, for demos and benchmarks.

It needs only the runtime dependencies (a `make run` install has it)."""

from __future__ import annotations

import itertools
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from markupsafe import escape

from chat import sanitize

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


def rare_words(count: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class TextMaker:
    """Chat-like text: Zipf-distributed words, some phrases, links and mentions."""

    def __init__(self, usernames: list[str], rng: random.Random) -> None:
        self.rng = rng
        self.usernames = usernames
        self.words = list(COMMON_WORDS) + rare_words(20_000, rng)
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
