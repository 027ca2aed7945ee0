"""The hot statements (chat/hot_statements.py): every request's session lookup and every
post, as prepared statements on the DB-API connection. Their objects must be the ORM's
own, their values converted as the ORM converts them, the same on the plain path
(CHAT_FAST_PATHS=0), and work that fails must leave nothing behind."""

import asyncio
import threading
import time
from datetime import UTC

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from chat.db import FAST_PATHS, autocommit_engine, create_engine, create_sessionmaker
from chat.hot_statements import run_prepared, run_sync_work
from chat.models import AuthSession, Membership, Message, Room, User, message_pages, message_posts
from chat.models.message_posts import _BUMP_SEQ


async def session_of(app, username: str) -> str:
    async with app.state.db() as db:
        return await db.scalar(
            select(AuthSession.token_hash).join(User).where(User.username == username)
        )


def sessions_for(app, fast_paths: bool = True) -> async_sessionmaker:
    """The app's sessions on the fast path, or on the plain one (CHAT_FAST_PATHS=0),
    whichever the app itself was made with."""
    return async_sessionmaker(
        app.state.db.kw["bind"], expire_on_commit=False, info={FAST_PATHS: fast_paths}
    )


@pytest.mark.parametrize("fast_paths", [True, False], ids=["fast", "plain"])
async def test_a_prepared_session_lookup_gives_what_the_orm_loads(app, people, fast_paths):
    alice, bob = await people("alice"), await people("bob")
    public = await alice.create_room("general")
    private = await bob.create_room("secret", visibility="private")
    token_hash = await session_of(app, "alice")
    sessions = sessions_for(app, fast_paths)

    async def find(room_id):
        return await run_prepared(
            sessions, lambda statements: AuthSession.find(statements, token_hash, room_id)
        )

    auth_session, (room, membership) = await find(public)
    async with app.state.db() as db:
        loaded = await db.get(AuthSession, token_hash)
        loaded_user, loaded_room = await db.get(User, loaded.user_id), await db.get(Room, public)
        loaded_membership = await db.get(Membership, (loaded.user_id, public))
    for found, orm in (
        (auth_session, loaded),
        (auth_session.user, loaded_user),
        (room, loaded_room),
        (membership, loaded_membership),
    ):
        for key in (c.key for c in type(orm).__table__.c):
            assert getattr(found, key) == getattr(orm, key), key
        assert inspect(found).detached
    assert auth_session.created_at.tzinfo is UTC
    assert room.is_private is False and membership.is_owner

    # A private room of someone else is not there at all; nor is a room that does not exist.
    assert (await find(private))[1] is None
    assert (await find(999))[1] is None
    assert await run_prepared(sessions, lambda db: AuthSession.find(db, "0" * 64)) is None


async def test_detached_objects_are_in_the_state_the_orms_own_functions_leave(app, people):
    """Detached.objects sets the identity key and AuthSession.found the session's user
    themselves: the objects must be as SQLAlchemy's make_transient_to_detached and
    set_committed_value would leave them, each time new ones."""
    from sqlalchemy.orm import make_transient_to_detached
    from sqlalchemy.orm.attributes import set_committed_value
    from sqlalchemy.orm.exc import DetachedInstanceError

    alice = await people("alice")
    room_id = await alice.create_room("general")
    token_hash = await session_of(app, "alice")
    columns = await run_prepared(
        app.state.db, lambda statements: AuthSession.find_columns(statements, token_hash, room_id)
    )
    auth_session, (room, membership) = AuthSession.found(columns)
    again, (room_again, _) = AuthSession.found(columns)
    assert again is not auth_session and room_again is not room
    assert again.user is not auth_session.user and again.user.id == auth_session.user.id

    def made_by_the_orm(found):
        model = type(found)
        made = model.__mapper__.class_manager.new_instance()
        made.__dict__.update({c.key: getattr(found, c.key) for c in model.__table__.c})
        make_transient_to_detached(made)
        return made

    theirs_by_ours = {
        found: made_by_the_orm(found)
        for found in (auth_session, auth_session.user, room, membership)
    }
    set_committed_value(theirs_by_ours[auth_session], "user", theirs_by_ours[auth_session.user])
    for found, made in theirs_by_ours.items():
        ours, theirs = inspect(found), inspect(made)
        assert ours.key == theirs.key and ours.key[1][0] is not None
        assert ours.detached and theirs.detached
        for field in ("committed_state", "expired_attributes", "modified", "expired"):
            assert getattr(ours, field) == getattr(theirs, field), field
        assert ours.unloaded == theirs.unloaded
        for relationship in ours.unloaded:  # not loaded, and never loaded lazily
            for each in (found, made):
                with pytest.raises(DetachedInstanceError):
                    getattr(each, relationship)
    assert "user" not in inspect(auth_session).unloaded


@pytest.mark.parametrize("fast_paths", [True, False], ids=["fast", "plain"])
async def test_a_post_and_a_page_read_give_the_same_rows_on_either_path(app, people, fast_paths):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "first")
    sessions = sessions_for(app, fast_paths)
    async with app.state.db() as db:
        user = await db.get(User, await db.scalar(select(User.id).where(User.username == "alice")))

    message, cursor = await run_prepared(
        sessions, lambda db: message_posts.post(db, room_id, user, "second", "<p>second</p>")
    )
    assert (message.seq, tuple(cursor)) == (2, (2, 0))
    heads = await run_sync_work(
        sessions, lambda db: message_pages.heads(db, room_id, limit=10), autocommit=True
    )
    async with app.state.db() as db:
        stored = await db.get(Message, message.id)
        membership = await db.get(Membership, (user.id, room_id))
    for key in (c.key for c in Message.__table__.c):
        assert getattr(message, key) == getattr(stored, key), key
    assert [head.seq for head in heads] == [1, 2] and heads[-1].id == message.id
    assert membership.last_read_seq == 2


async def test_work_that_fails_midway_leaves_no_write_behind(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "first")
    async with app.state.db() as db:
        alice_id = await db.scalar(select(User.id).where(User.username == "alice"))

    def bump_then_fail(statements):
        assert statements.first(_BUMP_SEQ, {"room": room_id, "author": alice_id}) == (2, 0)
        raise RuntimeError("after the write, before the commit")

    with pytest.raises(RuntimeError):
        await run_prepared(sessions_for(app), bump_then_fail)
    async with app.state.db() as db:
        assert (await db.get(Room, room_id)).last_seq == 1
    # The connection is not left inside that transaction: the next post takes seq 2.
    await alice.say(room_id, "second")
    async with app.state.db() as db:
        seqs = await db.scalars(select(Message.seq).where(Message.room_id == room_id))
        assert list(seqs) == [1, 2]


async def test_cancelled_work_gives_its_connection_back_and_the_next_request_runs(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    pool = app.state.db.kw["bind"].sync_engine.pool
    opened = []
    event.listen(pool, "connect", lambda *_: opened.append(1))
    on_thread = threading.Event()

    def slow(statements):
        on_thread.set()
        time.sleep(0.2)  # the request goes away meanwhile

    running = asyncio.create_task(run_prepared(sessions_for(app), slow))
    await asyncio.to_thread(on_thread.wait, 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # SQLite has one pooled connection: kept checked out, this would wait for it.
    async with asyncio.timeout(10):
        await alice.say(room_id, "after the cancel")
    assert pool.checkedout() == 0
    # Given back, not left for the garbage collector to close (and replace).
    assert opened == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("engine")  # the database's tables
async def test_work_that_comes_while_other_work_is_under_way_goes_with_it_each_its_outcome(
    settings,
):
    """SQLite: the work that queues behind work under way takes one checkout and one hop
    between them, in the order they came; one that fails fails alone, and one whose
    request went away before its turn never runs. (An engine of its own: an app's
    background tasks would check its connection out too.)"""
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    pool = engine.sync_engine.pool
    checkouts = []
    event.listen(pool, "checkout", lambda *_: checkouts.append(1))
    on_thread, release = threading.Event(), threading.Event()
    ran = []

    def first(statements):
        on_thread.set()
        release.wait(5)
        return "first"

    def records(name):
        def work(statements):
            ran.append(name)
            if name == "fails":
                raise RuntimeError(name)
            return name

        return work

    under_way = asyncio.create_task(run_prepared(sessions, first))
    await asyncio.to_thread(on_thread.wait, 5)
    queued = {
        name: asyncio.create_task(run_prepared(sessions, records(name)))
        for name in ("second", "fails", "gone", "last")
    }
    await asyncio.sleep(0.05)  # every one of them is waiting now
    queued["gone"].cancel()
    release.set()
    async with asyncio.timeout(10):
        assert await under_way == "first"
        assert await queued["second"] == "second"
        with pytest.raises(RuntimeError, match="fails"):
            await queued["fails"]
        assert await queued["last"] == "last"
    with pytest.raises(asyncio.CancelledError):
        await queued["gone"]
    assert ran == ["second", "fails", "last"]
    assert len(checkouts) == 2
    # And work after them goes at once, on its own.
    assert await run_prepared(sessions, lambda statements: "alone") == "alone"
    assert len(checkouts) == 3 and pool.checkedout() == 0
    await engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_post_without_mentions_or_files_is_one_statement_on_postgresql(app, people):
    alice = await people("alice")
    await people("bob")  # not in the room
    room_id = await alice.create_room()
    await alice.say(room_id, "first")
    async with app.state.db() as db:
        users = {user.username: user for user in await db.scalars(select(User))}
        first = await Message.find(db, room_id, 1)
    executed = []
    engine = autocommit_engine(app.state.db.kw["bind"]).sync_engine
    listener = lambda *args: executed.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        message, cursor = await run_prepared(
            sessions_for(app),  # the fast path's, also in make test's CHAT_FAST_PATHS=0 run
            lambda statements: message_posts.post(
                statements, room_id, users["alice"], "second", "<p>second</p>", reply_to=first
            ),
            one_statement=True,
        )
        stranger = await run_prepared(
            sessions_for(app),
            lambda statements: message_posts.post(
                statements, room_id, users["bob"], "no", "<p>no</p>"
            ),
            one_statement=True,
        )
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(executed) == 2 and all(sql.startswith("WITH bump AS") for sql in executed)
    assert stranger is None
    assert (message.seq, tuple(cursor), message.reply_to_seq) == (2, (2, 0), 1)
    async with app.state.db() as db:
        stored = await db.get(Message, message.id)
        membership = await db.get(Membership, (users["alice"].id, room_id))
        room = await db.get(Room, room_id)
        count = len(list(await db.scalars(select(Message.id).where(Message.room_id == room_id))))
    for key in (c.key for c in Message.__table__.c):
        assert getattr(message, key) == getattr(stored, key), key
    assert (membership.last_read_seq, room.last_seq, count) == (2, 2, 2)
