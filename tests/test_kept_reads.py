"""Reads kept while SQLite's database is unchanged (chat/kept_reads.py): the session
lookup and the page cache's stamps. A commit from any connection (this process's,
another worker's) must be seen by the very next request, and what does not change with
a commit (a session's expiry) must still be checked on every request."""

from datetime import timedelta

import pytest
from sqlalchemy import delete, update

from chat.db import create_engine
from chat.kept_reads import KeptReads
from chat.models import AuthSession, User, utcnow

# PostgreSQL, and the plain path, keep nothing: every read is a read. The tests that
# need something kept run on SQLite only (a skip would be an error under CI=true).
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def keeping(app):
    if not app.state.settings.fast_paths:
        pytest.skip("the plain path keeps nothing")


async def as_another_worker(settings, statement) -> None:
    """A commit through a connection of its own, as another worker's or `chat admin`'s."""
    other_worker = create_engine(settings.database_url)
    try:
        async with other_worker.begin() as connection:
            await connection.execute(statement)
    finally:
        await other_worker.dispose()


def kept_sessions(app) -> list:
    return [key for key in app.state.kept_reads._known[1] if key[0] == "session"]


@sqlite_only
async def test_a_session_is_read_once_while_the_database_is_unchanged(
    people, app, keeping, monkeypatch
):
    import chat.auth

    alice = await people("alice")
    assert (await alice.get("/")).status_code == 200
    reads = []
    find_columns = chat.auth.AuthSession.find_columns
    monkeypatch.setattr(
        chat.auth.AuthSession, "find_columns", lambda *a: reads.append(a) or find_columns(*a)
    )
    for _ in range(3):
        assert (await alice.get("/")).status_code == 200
    assert len(reads) <= 1 and kept_sessions(app)


@pytest.mark.parametrize("how", ["signed out", "deactivated"])
async def test_a_session_ended_by_another_worker_is_refused_at_once(people, app, settings, how):
    alice = await people("alice")
    for _ in range(2):
        assert (await alice.get("/")).status_code == 200
    if how == "signed out":
        await as_another_worker(settings, delete(AuthSession))
    else:
        await as_another_worker(
            settings, update(User).where(User.username == "alice").values(deactivated_at=utcnow())
        )
    response = await alice.get("/")
    assert response.status_code == 303 and response.headers["location"].endswith("/login")


async def test_a_kept_session_still_expires_on_time(people, app, monkeypatch):
    import chat.auth

    alice = await people("alice")
    for _ in range(2):
        assert (await alice.get("/")).status_code == 200
    later = utcnow() + timedelta(days=settings_days(app) + 1)
    monkeypatch.setattr(chat.auth, "utcnow", lambda: later)
    response = await alice.get("/")
    assert response.status_code == 303 and response.headers["location"].endswith("/login")


def settings_days(app) -> float:
    return app.state.settings.session_idle_days


async def test_signing_out_refuses_the_old_cookie_at_once(people, app):
    alice = await people("alice")
    cookies = dict(alice.client.cookies)
    assert (await alice.get("/")).status_code == 200
    assert (await alice.post("/logout")).status_code == 303
    alice.client.cookies.update(cookies)  # a copy of the cookie, kept by someone else
    response = await alice.get("/")
    assert response.status_code == 303 and response.headers["location"].endswith("/login")


@sqlite_only
async def test_the_version_moves_with_each_commit_and_only_then(people, app, keeping):
    bob = await people("bob")
    room_id = await bob.create_room()
    kept = app.state.kept_reads
    for _ in range(2):  # the first marks the room read: a change
        await bob.get(f"/rooms/{room_id}")
    before = kept.version({})
    assert before is not None and kept._known[0] == before
    await bob.get(f"/rooms/{room_id}")
    assert kept.version({}) == before
    await bob.say(room_id, "a change")
    assert kept.version({}) != before


@sqlite_only
async def test_a_kept_session_is_plain_tuples_of_values_in_well_under_a_kilobyte(
    people, app, keeping
):
    """`chat bench idle` keeps one per stream (each stream a different user): kept as
    dictionaries of attributes with identity keys, one took 2.3 KB besides its values."""
    import sys

    alice = await people("alice")
    room_id = await alice.create_room()
    assert (await alice.get(f"/rooms/{room_id}")).status_code == 200
    (key,) = [key for key in kept_sessions(app) if key[2] == room_id]
    value = app.state.kept_reads._known[1][key]

    def containers(value) -> int:
        if isinstance(value, dict):
            return sys.getsizeof(value) + sum(map(containers, value.values()))
        if isinstance(value, tuple):
            return sys.getsizeof(value) + sum(map(containers, value))
        return 0

    assert all(isinstance(each, tuple) for each in value)  # session, user, room, membership
    assert containers(value) < 1000


@sqlite_only
async def test_a_request_reads_the_version_once(app, keeping):
    kept, scope = app.state.kept_reads, {}
    first = kept.version(scope)
    assert first is not None and scope == {"chat.data_version": first}
    kept._read_version = lambda: pytest.fail("read again")
    assert kept.version(scope) == first


async def test_nothing_is_kept_on_the_plain_path_or_in_memory(engine):
    async def fetch():
        reads.append(1)
        return "value"

    reads = []
    for kept in (KeptReads(engine, enabled=False), KeptReads(None)):
        for _ in range(2):
            assert await kept.read({}, "key", fetch) == "value"
            assert kept.version({}) is None
    assert len(reads) == 4
