"""Whole pages kept per reader (chat/page_cache.py): served again only while nothing
they show changed, only to their reader, with that browser's own CSRF token."""

import httpx

from tests.conftest import BASE_URL
from tests.support import PASSWORD, Person, client_for

PAGES = ("/rooms/{room}", "/rooms/{room}/messages?before=3", "/", "/search?q=hello")


async def room_with_messages(people, count=4):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    for n in range(count):
        await alice.say(room_id, f"hello {n}")
    return alice, bob, room_id


async def test_a_kept_page_is_the_same_bytes_as_one_rendered_afresh(people, app):
    alice, _, room_id = await room_with_messages(people)
    cache = app.state.page_cache
    for path in (page.format(room=room_id) for page in PAGES):
        first = await alice.get(path)
        hits = cache.hits
        kept = await alice.get(path)
        assert cache.hits == hits + 1, path
        cache.enabled = False
        try:
            plain = await alice.get(path)
        finally:
            cache.enabled = True
        assert first.status_code == kept.status_code == plain.status_code == 200, path
        assert first.content == kept.content == plain.content, path
        assert kept.headers["content-type"] == plain.headers["content-type"]


async def test_a_commit_shows_at_once_in_every_page_that_shows_it(people, app):
    alice, bob, room_id = await room_with_messages(people)
    pages = [page.format(room=room_id) for page in PAGES]
    for path in pages:
        await bob.get(path)
    await alice.say(room_id, "hello again")
    assert "hello again" in (await bob.get(f"/rooms/{room_id}")).text
    assert "again</mark>" in (await bob.get("/search?q=again")).text
    await alice.post(f"/rooms/{room_id}/messages/1/delete")
    assert "hello 0" not in (await bob.get(f"/rooms/{room_id}/messages?before=3")).text
    other = await alice.create_room("another")
    assert f"/rooms/{other}/join" in (await bob.get("/")).text
    await alice.post(f"/rooms/{room_id}/settings/name", {"name": "renamed"})
    await alice.post(f"/rooms/{room_id}/settings/topic", {"topic": "a new topic"})
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "renamed" in page and "a new topic" in page
    assert "renamed" in (await bob.get("/")).text


async def test_each_browser_gets_its_own_csrf_token_from_a_kept_page(people, app):
    alice, _, room_id = await room_with_messages(people)
    page = await alice.get(f"/rooms/{room_id}")
    async with client_for(BASE_URL, transport=httpx.ASGITransport(app=app)) as client:
        laptop = Person(client, "alice")
        await laptop.post("/login", {"username": "alice", "password": PASSWORD})
        hits = app.state.page_cache.hits
        kept = await laptop.get(f"/rooms/{room_id}")
        assert app.state.page_cache.hits == hits + 1
        assert laptop.csrf_token and laptop.csrf_token != alice.csrf_token
        assert alice.csrf_token not in kept.text
        assert kept.text.replace(laptop.csrf_token, alice.csrf_token) == page.text
        # The kept page's forms work with the token it carries.
        await laptop.say(room_id, "from the laptop")


async def test_someone_removed_from_a_private_room_no_longer_gets_its_kept_page(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("secret", "private")
    await alice.post(f"/rooms/{room_id}/members", {"username": "bob"})
    await alice.say(room_id, "for bob alone")
    assert "for bob alone" in (await bob.get(f"/rooms/{room_id}")).text
    bob_id = await bob_user_id(app)
    await alice.post(f"/rooms/{room_id}/members/{bob_id}/remove")
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 404
    assert (await bob.get(f"/rooms/{room_id}/messages?before=2")).status_code == 404
    mallory = await people("mallory")
    assert (await mallory.get(f"/rooms/{room_id}")).status_code == 404


async def bob_user_id(app):
    from sqlalchemy import select

    from chat.models import User

    async with app.state.db() as db:
        return await db.scalar(select(User.id).where(User.username == "bob"))


async def test_kept_pages_stay_within_their_memory_bound(people, app):
    alice, _, room_id = await room_with_messages(people)
    cache = app.state.page_cache
    cache.max_bytes = 200_000
    for n in range(1, 40):
        await alice.get(f"/rooms/{room_id}?at={n % 5 + 1}&n={n}")
    assert 0 < cache.kept_bytes <= cache.max_bytes


async def test_with_the_cache_off_every_page_is_rendered(people, app):
    alice, _, room_id = await room_with_messages(people)
    cache = app.state.page_cache
    cache.enabled = False
    kept_bytes = cache.kept_bytes
    for _ in range(3):
        assert (await alice.get(f"/rooms/{room_id}")).status_code == 200
    assert cache.hits == 0 and cache.kept_bytes == kept_bytes


def test_chat_fast_paths_0_turns_the_cache_off(settings):
    import dataclasses

    from chat.app import create_app

    assert create_app(settings).state.page_cache.enabled
    plain = dataclasses.replace(settings, fast_paths=False)
    assert not create_app(plain).state.page_cache.enabled


async def test_a_commit_by_another_worker_shows_at_once(people, app, settings):
    """Another worker writes through a connection of its own (on SQLite, another
    connection to the file; the kept stamps notice its commits)."""
    from sqlalchemy import update

    from chat.db import create_engine
    from chat.models import Room

    _, bob, room_id = await room_with_messages(people)
    for _ in range(2):
        assert "general" in (await bob.get(f"/rooms/{room_id}")).text
    other_worker = create_engine(settings.database_url)
    try:
        async with other_worker.begin() as connection:
            await connection.execute(
                update(Room).where(Room.id == room_id).values(topic="set elsewhere")
            )
    finally:
        await other_worker.dispose()
    assert "set elsewhere" in (await bob.get(f"/rooms/{room_id}")).text
    assert "set elsewhere" in (await bob.get(f"/rooms/{room_id}")).text


async def test_a_page_a_fragment_and_a_restored_page_are_kept_apart(people, app):
    alice, _, room_id = await room_with_messages(people)
    cache = app.state.page_cache
    kinds = {
        "page": {},
        "fragment": {"HX-Request": "true"},
        "restore": {"HX-Request": "true", "HX-History-Restore-Request": "true"},
    }
    for path in (page.format(room=room_id) for page in PAGES):
        first = {kind: await alice.get(path, headers=headers) for kind, headers in kinds.items()}
        hits = cache.hits
        for kind, headers in kinds.items():
            assert (await alice.get(path, headers=headers)).content == first[kind].content
        assert cache.hits == hits + 3, path
        cache.enabled = False
        try:
            for kind, headers in kinds.items():
                plain = await alice.get(path, headers=headers)
                assert plain.content == first[kind].content, (path, kind)
        finally:
            cache.enabled = True
