"""Throttling and rate limits (issue 21, rows 2 and 6): each answers 429 with
Retry-After, and what it refused changed nothing."""

import asyncio
import dataclasses

import httpx
import pytest
from sqlalchemy import func, select

from chat.models import Message, Reaction, Room
from chat.rate_limits import RateLimits
from chat.settings import Settings
from tests.support import PASSWORD, LiveServer, Person, client_for


async def count(app, model) -> int:
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).select_from(model))


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    return int(response.headers["retry-after"])


async def test_eleven_wrong_passwords_lock_the_account_even_for_the_right_one(people, anonymous):
    await people("bob")
    await anonymous.get("/login")
    for _ in range(10):
        response = await anonymous.post("/login", {"username": "bob", "password": "wrong guess"})
        assert response.status_code == 401
    response = await anonymous.post("/login", {"username": "BOB", "password": "wrong guess"})
    assert 1 <= retry_after(response) <= 15 * 60
    assert "Try again in" in response.text
    response = await anonymous.post("/login", {"username": "bob", "password": PASSWORD})
    assert retry_after(response) > 0
    assert "chat_session" not in response.cookies


async def test_failed_logins_from_one_address_are_limited_across_accounts(people, anonymous):
    await anonymous.get("/login")
    for n in range(30):
        response = await anonymous.post("/login", {"username": f"u{n}", "password": "wrong one"})
        assert response.status_code == 401
    response = await anonymous.post("/login", {"username": "someone", "password": "wrong one"})
    assert retry_after(response) > 0


async def test_sign_ups_from_one_address_are_limited(anonymous, app):
    await anonymous.get("/signup")
    for n in range(10):
        response = await anonymous.post("/signup", {"username": f"person{n}", "password": PASSWORD})
        assert response.status_code == 303
        anonymous.client.cookies.clear()
        await anonymous.get("/signup")
    response = await anonymous.post("/signup", {"username": "person10", "password": PASSWORD})
    assert retry_after(response) > 0
    async with app.state.db() as db:
        from chat.models import User

        assert await db.scalar(select(func.count()).select_from(User)) == 10


async def test_a_flood_of_posts_is_refused_with_the_text_kept_and_nothing_stored(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(30):  # a burst a person could type
        await alice.say(room_id, f"message {n}")
    response = await alice.post(f"/rooms/{room_id}/messages", {"body": "one too many"}, htmx=True)
    assert retry_after(response) > 0
    assert "one too many" in response.text  # the composer comes back with the text
    assert "Try again in" in response.text
    assert await count(app, Message) == 30
    # Without JavaScript: the room page, the text in its composer.
    response = await alice.post(f"/rooms/{room_id}/messages", {"body": "again"})
    assert retry_after(response) > 0 and "again" in response.text
    assert await count(app, Message) == 30


async def test_a_flood_of_reactions_is_refused(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "react to me")
    emoji = ["👍", "❤️", "😂", "🎉", "😮", "👀"]
    for n in range(60):
        response = await alice.post(
            f"/rooms/{room_id}/messages/1/reactions", {"emoji": emoji[n % 6]}, htmx=True
        )
        assert response.status_code == 200
    before = await count(app, Reaction)
    response = await alice.post(
        f"/rooms/{room_id}/messages/1/reactions", {"emoji": "🙂"}, htmx=True
    )
    assert retry_after(response) > 0
    assert await count(app, Reaction) == before


async def test_making_rooms_is_limited(people, app):
    alice = await people("alice")
    for n in range(10):
        await alice.create_room(f"room {n}")
    response = await alice.post("/rooms", {"name": "room 10", "visibility": "public"})
    assert retry_after(response) > 0
    assert await count(app, Room) == 10


class TestDirectConversations:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, limit_direct="2 per hour")

    async def test_starting_direct_conversations_is_limited(self, people, app):
        alice = await people("alice")
        for name in ("bob", "carol", "dave"):
            await people(name)
        for name in ("bob", "carol"):
            response = await alice.post(f"/direct/{name}/messages", {"body": "hi"})
            assert response.status_code == 303
        response = await alice.post("/direct/dave/messages", {"body": "hi dave"})
        assert retry_after(response) > 0
        assert "hi dave" in response.text  # the draft page keeps the text
        assert await count(app, Room) == 2
        # An existing conversation is not a new one.
        response = await alice.post("/direct/bob/messages", {"body": "again"})
        assert response.status_code == 303


def test_rate_limits_off_turns_every_limit_off():
    settings = Settings.from_env({"CHAT_SECRET_KEY": "k" * 40, "CHAT_RATE_LIMITS": "off"})
    assert not settings.rate_limits
    assert RateLimits(settings).enabled is False


@pytest.mark.bulk
async def test_a_bulk_test_posts_as_fast_as_it_likes(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(40):
        await alice.say(room_id, f"message {n}")
    assert await count(app, Message) == 40


@pytest.fixture
def server_env(server_env):
    return {**server_env, "CHAT_MAX_STREAMS_PER_USER": "3"}


async def test_open_streams_per_user_are_limited(visitors, live_server):
    alice = await visitors("alice")
    room_id = await alice.create_room()
    streams, opened = [], []
    try:
        for path in ("/events", f"/rooms/{room_id}/events", f"/rooms/{room_id}/events"):
            stream = alice.client.stream("GET", path)
            opened.append(await stream.__aenter__())
            streams.append(stream)
            assert opened[-1].status_code == 200
        response = await alice.client.get(f"/rooms/{room_id}/events")
        assert retry_after(response) > 0
    finally:
        for stream in streams:
            await stream.__aexit__(None, None, None)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_redis_shares_the_login_limit_between_workers(server_env, live_server, tmp_path):
    """The 11th failed login on worker B, after 10 on worker A, is refused."""
    other = LiveServer(server_env, log_path=tmp_path / "second.log").start()
    try:
        async with client_for(live_server.url, timeout=30) as client:
            bob = await Person(client, "bob").signup()
        async with (
            client_for(live_server.url, timeout=30) as client_a,
            client_for(other.url, timeout=30) as client_b,
        ):
            on_a, on_b = Person(client_a, ""), Person(client_b, "")
            await on_a.get("/login")
            for _ in range(10):
                response = await on_a.post(
                    "/login", {"username": bob.username, "password": "wrong guess"}
                )
                assert response.status_code == 401
            await on_b.get("/login")
            response = await on_b.post(
                "/login", {"username": bob.username, "password": "wrong guess"}
            )
            assert retry_after(response) > 0
    finally:
        other.stop()
    await asyncio.sleep(0)
