"""How should concurrent posts take a room's next seq on PostgreSQL? Measured, not guessed.

    .venv/bin/python -m bench.seq_assignment [--posts 2000] [--concurrency 1 8 32]

Compares, on a fresh scratch database (created and dropped here):

- `update-returning`: what message_posts.post does. The transaction's first statement is
  `UPDATE rooms SET last_seq = last_seq + 1 ... RETURNING last_seq`, which takes the
  room's row lock and hands out the seq in one round trip.
- `select-for-update`: `SELECT last_seq ... FOR UPDATE`, then `UPDATE rooms SET
  last_seq = :seq`: the row lock first, the counter bump second (one more round trip
  while holding the lock).

Both then insert the message and mark it read for its author, and commit, exactly
like a real post; both keep seqs gap-free and unique (checked at the end of each run).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.servers import database
from chat.db import create_engine, create_sessionmaker
from chat.hot_statements import run_prepared
from chat.models import Base, Membership, Message, Room, User, message_posts

Sessions = async_sessionmaker[AsyncSession]


async def select_for_update(sessions: Sessions, room_id: int, author: User, body: str) -> None:
    async with sessions() as db:
        await _select_for_update(db, room_id, author, body)


async def _select_for_update(db: AsyncSession, room_id: int, author: User, body: str) -> None:
    is_member = exists().where(Membership.room_id == room_id, Membership.user_id == author.id)
    last = await db.scalar(
        select(Room.last_seq).where(Room.id == room_id, is_member).with_for_update()
    )
    seq = last + 1
    await db.execute(update(Room).where(Room.id == room_id).values(last_seq=seq))
    db.add(Message(room_id=room_id, seq=seq, author_id=author.id, body=body, html=body))
    await db.execute(
        update(Membership)
        .where(Membership.room_id == room_id, Membership.user_id == author.id)
        .values(last_read_seq=seq)
    )
    await db.commit()


async def update_returning(sessions: Sessions, room_id: int, author: User, body: str) -> None:
    # The post's several-statement form (the one-statement form needs no row lock of
    # its own to compare).
    await run_prepared(
        sessions, lambda statements: message_posts.post(statements, room_id, author, body, body)
    )


STRATEGIES = {"update-returning": update_returning, "select-for-update": select_for_update}


async def run(database_url: str, strategy: str, posts: int, concurrency: int) -> float:
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
    async with sessions() as db:
        users = [
            User(username=f"user{n}", password_hash="!")  # noqa: S106 (no login)
            for n in range(concurrency)
        ]
        db.add_all(users)
        await db.flush()
        room = await Room.create(db, users[0], "bench", is_private=False)
        for user in users[1:]:
            await room.add_member(db, user)
    post = STRATEGIES[strategy]

    async def poster(author: User, count: int) -> None:
        for n in range(count):
            await post(sessions, room.id, author, f"message {n}")

    started = time.perf_counter()
    await asyncio.gather(*(poster(user, posts // concurrency) for user in users))
    elapsed = time.perf_counter() - started
    async with sessions() as db:
        stored = select(func.count(), func.max(Message.seq)).where(Message.room_id == room.id)
        count, highest = (await db.execute(stored)).one()
    await engine.dispose()
    assert count == highest == posts // concurrency * concurrency, (count, highest)
    return count / elapsed


async def main(posts: int, concurrencies: list[int], rounds: int) -> None:
    async with database("postgres") as database_url:
        print(f"{'strategy':<18} {'concurrency':>11} {f'posts/s, best of {rounds}':>22}")
        for concurrency in concurrencies:
            for strategy in STRATEGIES:
                best = max(
                    [await run(database_url, strategy, posts, concurrency) for _ in range(rounds)]
                )
                print(f"{strategy:<18} {concurrency:>11} {best:>22.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.posts, args.concurrency, args.rounds))
