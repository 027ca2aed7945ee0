"""Prepared statements on the DB-API connection (chat.db.driver_trip): every request's
session lookup and every post. Their objects must be the ORM's own, their values
converted as the ORM converts them, and a trip that fails must leave nothing behind."""

import asyncio
import threading
import time
from datetime import UTC

import pytest
from sqlalchemy import event, inspect, select

from chat.db import driver_trip
from chat.models import _BUMP_SEQ, AuthSession, Membership, Message, Room, User


async def session_of(app, username: str) -> str:
    async with app.state.db() as db:
        return await db.scalar(
            select(AuthSession.token_hash).join(User).where(User.username == username)
        )


async def test_a_prepared_session_lookup_gives_what_the_orm_loads(app, people):
    alice, bob = await people("alice"), await people("bob")
    public = await alice.create_room("general")
    private = await bob.create_room("secret", visibility="private")
    token_hash = await session_of(app, "alice")

    async def find(room_id):
        return await driver_trip(
            app.state.db, lambda trip: AuthSession.find(trip, token_hash, room_id)
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
    assert await driver_trip(app.state.db, lambda trip: AuthSession.find(trip, "0" * 64)) is None


async def test_a_trip_that_fails_midway_leaves_no_write_behind(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "first")
    async with app.state.db() as db:
        alice_id = await db.scalar(select(User.id).where(User.username == "alice"))

    def bump_then_fail(trip):
        assert trip.first(_BUMP_SEQ, {"room": room_id, "author": alice_id}) == (2, 0)
        raise RuntimeError("after the write, before the commit")

    with pytest.raises(RuntimeError):
        await driver_trip(app.state.db, bump_then_fail)
    async with app.state.db() as db:
        assert (await db.get(Room, room_id)).last_seq == 1
    # The connection is not left inside that transaction: the next post takes seq 2.
    await alice.say(room_id, "second")
    async with app.state.db() as db:
        seqs = await db.scalars(select(Message.seq).where(Message.room_id == room_id))
        assert list(seqs) == [1, 2]


async def test_a_cancelled_trip_gives_its_connection_back_and_the_next_request_runs(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    pool = app.state.db.kw["bind"].sync_engine.pool
    opened = []
    event.listen(pool, "connect", lambda *_: opened.append(1))
    on_thread = threading.Event()

    def slow(trip):
        on_thread.set()
        time.sleep(0.2)  # the request goes away meanwhile

    trip = asyncio.create_task(driver_trip(app.state.db, slow))
    await asyncio.to_thread(on_thread.wait, 5)
    trip.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trip
    # SQLite has one pooled connection: kept checked out, this would wait for it.
    async with asyncio.timeout(10):
        await alice.say(room_id, "after the cancel")
    assert pool.checkedout() == 0
    # Given back, not left for the garbage collector to close (and replace).
    assert opened == []
