"""Group commit on SQLite (chat/group_commit.py): posts that queue together for the one
connection are committed in one transaction, each in its own savepoint. Seqs stay
contiguous and in order, each post that fails fails alone, and a COMMIT that fails
fails every post of its group, none of them stored."""

import asyncio
import threading

import pytest
from sqlalchemy import event, select

from chat.db import create_engine, create_sessionmaker
from chat.hot_statements import run_prepared
from chat.models import Membership, Message, Room, User, message_posts
from chat.models.message_posts import _BUMP_SEQ

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


async def users_and_room(app, people):
    alice = await people("alice")
    await people("bob")  # not in the room
    room_id = await alice.create_room()
    await alice.say(room_id, "first")
    async with app.state.db() as db:
        users = {
            user.username: user
            for user in await db.scalars(select(User).where(User.username.in_(["alice", "bob"])))
        }
    return alice, users, room_id


# The raw sqlite3 connection of the engine `queued_behind_slow_work` makes, for work that
# must run SQL of its own.
RAW: dict[str, object] = {}


async def queued_behind_slow_work(settings, works):
    """Run `works` (each PreparedRunner → value) with group commit, all queued behind
    one piece of work under way, so that they go in one hop; their outcomes, and every
    statement the connection ran for them."""
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    statements: list[str] = []

    def trace(dbapi_connection, _record):
        RAW["connection"] = dbapi_connection.driver_connection._conn
        RAW["connection"].set_trace_callback(statements.append)

    event.listen(engine.sync_engine, "connect", trace)
    on_thread, release = threading.Event(), threading.Event()

    def slow(_statements):
        on_thread.set()
        release.wait(5)

    under_way = asyncio.create_task(run_prepared(sessions, slow))
    await asyncio.to_thread(on_thread.wait, 5)
    queued = [
        asyncio.create_task(run_prepared(sessions, work, group_commit=True)) for work in works
    ]
    await asyncio.sleep(0.05)  # every one of them is waiting now
    statements.clear()
    release.set()
    async with asyncio.timeout(10):
        await under_way
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
    await engine.dispose()
    return outcomes, statements


async def stored_seqs(app, room_id):
    async with app.state.db() as db:
        seqs = list(await db.scalars(select(Message.seq).where(Message.room_id == room_id)))
        return seqs, (await db.get(Room, room_id)).last_seq


async def test_queued_posts_commit_once_and_each_failure_stays_its_own(app, people, settings):
    poster, users, room_id = await users_and_room(app, people)
    alice, bob = users["alice"], users["bob"]

    def post(author, body):
        return lambda statements: message_posts.post(
            statements, room_id, author, body, f"<p>{body}</p>"
        )

    def bump_then_fail(statements):
        statements.first(_BUMP_SEQ, {"room": room_id, "author": alice.id})
        raise RuntimeError("after the write, before the commit")

    def bump_then_leave_open(statements):
        return statements.first(_BUMP_SEQ, {"room": room_id, "author": alice.id})

    outcomes, statements = await queued_behind_slow_work(
        settings,
        [
            post(alice, "second"),
            bump_then_fail,
            post(bob, "not a member"),
            bump_then_leave_open,
            post(alice, "third"),
        ],
    )
    second, failed, not_member, left_open, third = outcomes
    assert isinstance(failed, RuntimeError)
    assert not_member is None
    assert left_open == (3, 0)  # it saw its own write, which was then rolled back
    assert (second[0].seq, third[0].seq) == (2, 3)
    assert (tuple(second[1]), tuple(third[1])) == ((2, 0), (3, 0))
    assert await stored_seqs(app, room_id) == ([1, 2, 3], 3)
    # One transaction for the five, one savepoint each.
    assert statements.count("BEGIN ") + statements.count("BEGIN") == 1
    assert statements.count("COMMIT") == 1
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 5

    # The connection is left outside any transaction: the next post is stored alone.
    await poster.say(room_id, "fourth")
    assert await stored_seqs(app, room_id) == ([1, 2, 3, 4], 4)


async def test_a_failed_commit_fails_every_post_of_the_group_and_stores_none(app, people, settings):
    _, users, room_id = await users_and_room(app, people)
    alice = users["alice"]

    def post(body):
        return lambda statements: message_posts.post(
            statements, room_id, alice, body, f"<p>{body}</p>"
        )

    def breaks_the_commit(statements):
        # A foreign key checked only at COMMIT, which then fails for the whole group.
        RAW["connection"].execute("PRAGMA defer_foreign_keys = ON")
        RAW["connection"].execute(
            "INSERT INTO messages (room_id, seq, author_id, body, html, created_at, changed) "
            "VALUES (?, 1000, 999999, 'x', 'x', '2026-01-01 00:00:00', 0)",
            (room_id,),
        )
        statements.commit()
        return "thought it was stored"

    outcomes, _ = await queued_behind_slow_work(
        settings, [post("second"), breaks_the_commit, post("third")]
    )
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert "FOREIGN KEY" in str(outcomes[0])
    assert await stored_seqs(app, room_id) == ([1], 1)
    # And the connection goes on: the next posts are stored, from seq 2.
    outcomes, _ = await queued_behind_slow_work(settings, [post("second"), post("third")])
    assert [message.seq for message, _ in outcomes] == [2, 3]
    assert await stored_seqs(app, room_id) == ([1, 2, 3], 3)


async def test_marks_read_that_queue_with_posts_commit_with_them_each_in_its_own_savepoint(
    app, people, settings
):
    poster, users, room_id = await users_and_room(app, people)
    alice = users["alice"]
    carol = await people("carol")
    await carol.join(room_id)
    await poster.say(room_id, "second")
    async with app.state.db() as db:
        carol_id = await db.scalar(select(User.id).where(User.username == "carol"))
        carols = await db.get(Membership, (carol_id, room_id))
        alices = await db.get(Membership, (alice.id, room_id))
    assert carols.last_read_seq < 2

    outcomes, statements = await queued_behind_slow_work(
        settings,
        [
            lambda runner: carols.advance_read(runner, 2),
            lambda runner: message_posts.post(runner, room_id, alice, "third", "<p>third</p>"),
            # Posting, just before in the same transaction, marked it read already.
            lambda runner: alices.advance_read(runner, 3),
        ],
    )
    moved, third, already = outcomes
    assert moved is True and already is False
    assert third[0].seq == 3
    # One transaction for the three, one savepoint each.
    assert statements.count("COMMIT") == 1
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 3
    async with app.state.db() as db:
        assert (await db.get(Membership, (carol_id, room_id))).last_read_seq == 2
        assert (await db.get(Membership, (alice.id, room_id))).last_read_seq == 3
