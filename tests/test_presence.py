"""Presence: online while any of a user's streams is open, on any worker; offline a
grace period after the last one closes, or a TTL after their worker died."""

import asyncio
import json
import secrets

import pytest
from sqlalchemy import select

from chat.broker import room_channel
from chat.models import User
from chat.presence_announcer import PRESENCE_BATCH_SECONDS
from tests.conftest import TEST_SECRET_KEY, forget_redis_prefix
from tests.support import LiveServer, Person, client_for, empty_postgres_tables, open_stream
from tests.test_streams import room_with

GRACE = 1


@pytest.fixture
def server_env(server_env):
    return {**server_env, "CHAT_PRESENCE_GRACE_SECONDS": str(GRACE)}


def presence(event) -> dict[str, bool]:
    """A presence frame's changes: username → online."""
    return {change["user"]: change["online"] for change in json.loads(event.data)}


async def presence_of(tab, username: str, timeout: float = 10) -> bool:
    """Whether the next presence frame that mentions `username` says online (a frame
    carries whatever changed in the room at about the same time)."""
    while True:
        changes = presence(await tab.next_of("presence", timeout=timeout))
        if username in changes:
            return changes[username]


async def presence_until_message(tab, viewer: str) -> dict[str, bool]:
    """The presence changes a tab of `viewer` gets before its next message (the
    viewer's own arrival, which may come a moment after it connects, left out)."""
    changes: dict[str, bool] = {}
    while (event := await tab.next()).event != "message":
        if event.event == "presence":
            changes |= presence(event)
    changes.pop(viewer, None)
    return changes


async def test_member_is_online_while_any_tab_is_open_and_offline_after_the_last(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    url = f"/rooms/{room_id}/events"
    async with open_stream(alice.client, url) as alice_tab:
        async with open_stream(bob.client, url):
            assert await presence_of(alice_tab, "bob") is True
            async with open_stream(bob.client, "/events"):  # the rooms page counts too
                pass
            # One tab closed, one open: bob stays online well past the grace period.
            await asyncio.sleep(GRACE + 1)
            await alice.say(room_id, "still there?")
            assert await presence_until_message(alice_tab, "alice") == {}
        assert await presence_of(alice_tab, "bob") is False


async def test_a_reload_within_the_grace_period_does_not_flicker(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    url = f"/rooms/{room_id}/events"
    async with open_stream(alice.client, url) as alice_tab:
        async with open_stream(bob.client, url):
            assert await presence_of(alice_tab, "bob") is True
        async with open_stream(bob.client, url):  # the reloaded page's stream
            await asyncio.sleep(GRACE + 1)
            await alice.say(room_id, "no flicker")
            assert await presence_until_message(alice_tab, "alice") == {}


async def test_the_member_list_says_who_is_online_in_words(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert '<span class="presence" data-presence="alice">offline</span>' in page
    assert '<span class="presence is-online" data-presence="bob">online</span>' in page
    async with (
        open_stream(bob.client, f"/rooms/{room_id}/events") as bob_tab,
        open_stream(alice.client, f"/rooms/{room_id}/events"),
    ):
        await bob_tab.next_of("presence")
        page = (await bob.get(f"/rooms/{room_id}")).text
        assert '<span class="presence is-online" data-presence="alice">online</span>' in page
    assert 'id="presence-status" class="visually-hidden" role="status"' in page


async def test_presence_goes_out_on_every_room_of_the_user(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    first, second = await alice.create_room("first"), await alice.create_room("second")
    await bob.join(first)
    await bob.join(second)
    async with (
        open_stream(alice.client, f"/rooms/{first}/events") as first_tab,
        open_stream(alice.client, f"/rooms/{second}/events") as second_tab,
        open_stream(bob.client, "/events"),
    ):
        for tab in (first_tab, second_tab):
            assert await presence_of(tab, "bob") is True


async def test_presence_is_shared_by_workers_and_a_killed_workers_users_go_offline(
    postgres_url, redis_url, tmp_path
):
    empty_postgres_tables(postgres_url)
    ttl = 3
    prefix = f"chat-test-{secrets.token_hex(6)}:"
    env = {
        "CHAT_DATABASE_URL": postgres_url,
        "CHAT_SECRET_KEY": TEST_SECRET_KEY,
        "CHAT_BROKER_URL": redis_url,
        "CHAT_BROKER_PREFIX": prefix,
        "CHAT_PRESENCE_GRACE_SECONDS": str(GRACE),
        "CHAT_PRESENCE_TTL_SECONDS": str(ttl),
        "CHAT_MEDIA_DIR": str(tmp_path / "media"),
    }
    one = LiveServer(env, log_path=tmp_path / "one.log")
    two = LiveServer(env, log_path=tmp_path / "two.log")
    try:
        one.start()
        two.start()
        async with (
            client_for(one.url, timeout=30) as on_one,
            client_for(two.url, timeout=30) as on_two,
        ):
            alice = await Person(on_one, "alice").signup()
            bob = await Person(on_two, "bob").signup()  # on the worker that will be killed
            room_id = await alice.create_room("general")
            await bob.join(room_id)
            url = f"/rooms/{room_id}/events"
            async with open_stream(alice.client, url) as alice_tab:
                async with open_stream(bob.client, url):
                    assert await presence_of(alice_tab, "bob") is True
                    page = (await bob.get(f"/rooms/{room_id}")).text  # worker two
                    assert 'data-presence="alice">online<' in page
                    two.kill()  # no goodbye: bob's entries simply stop being refreshed
                # Offline within the TTL plus one sweep (the bound is generous on purpose).
                assert await presence_of(alice_tab, "bob", timeout=ttl + 15) is False
    finally:
        one.stop()
        two.stop()
        forget_redis_prefix(redis_url, prefix)


async def test_members_arriving_together_are_one_presence_frame_to_each_stream(app, people):
    """A thousand members connecting at once must not be a thousand frames to each of
    them: streams still replaying would overflow their queues and be cut off."""
    alice = await people("alice")
    room_id = await alice.create_room()
    for name in ("bob", "carol"):
        await (await people(name)).join(room_id)
    async with app.state.db() as db:
        ids = dict((await db.execute(select(User.username, User.id))).all())
    async with app.state.broker.subscribe(room_channel(room_id)) as subscription:
        await app.state.presence._announce_presence(ids["bob"], True)
        await app.state.presence._announce_presence(ids["carol"], True)
        await app.state.presence._announce_presence(ids["bob"], False)  # the newest counts
        async with asyncio.timeout(5):
            _, frame = await subscription.get()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(PRESENCE_BATCH_SECONDS * 3):
                await subscription.get()
    [data] = [line[6:] for line in frame.decode().splitlines() if line.startswith("data: ")]
    assert frame.startswith(b"event: presence\n")
    assert json.loads(data) == [
        {"user": "bob", "online": False},
        {"user": "carol", "online": True},
    ]


async def test_a_rooms_online_members_and_typists_are_read_together_as_each_alone(app):
    presence = app.state.presence
    async with presence.connected(3):
        assert await presence.typing(5, User(id=7, username="bob"))
        online, typists = await presence.room_live(5, [3, 4, 7])

        assert online == await presence.online_among([3, 4, 7]) == {3}
        assert typists.names == ["bob"] == (await presence.typists(5)).names
        assert typists.version > 0
        assert (await presence.room_live(6, [4]))[0] == set()
