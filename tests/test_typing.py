"""Typing notices: `event: typing` with the room's typists, whenever that set changes."""

import json

import pytest

from tests.support import open_stream
from tests.test_streams import room_with


@pytest.fixture
def server_env(server_env):
    # Short enough that the expiry test does not wait long; the real default is 5 s.
    return {**server_env, "CHAT_TYPING_SECONDS": "2"}


def typists(event):
    return json.loads(event.data)["typists"]


async def type_in(person, room_id, status=204):
    response = await person.post(f"/rooms/{room_id}/typing", htmx=True)
    assert response.status_code == status, response.text
    return response


async def test_others_see_who_is_typing_until_it_expires(visitors):
    room_id, (alice, bob, carol) = await room_with(visitors, "alice", "bob", "carol")
    url = f"/rooms/{room_id}/events"
    async with open_stream(bob.client, url) as bob_tab, open_stream(carol.client, url) as carol_tab:
        await type_in(alice, room_id)
        started = await bob_tab.next_of("typing")
        assert typists(started) == ["alice"]
        # The typist's name is in the shared frame; each page leaves its own name out.
        assert await carol_tab.next_of("typing") == started
        await type_in(carol, room_id)
        assert typists(await bob_tab.next_of("typing")) == ["alice", "carol"]
        # Nobody pings again: both expire (in one sweep or two), and that is a change too.
        expired = typists(await bob_tab.next_of("typing"))
        if expired == ["carol"]:
            expired = typists(await bob_tab.next_of("typing"))
        assert expired == []


async def test_a_message_from_the_typist_ends_their_typing_without_a_frame(visitors):
    # Pages drop a message's author from the typists when it arrives (static/live.js):
    # a frame saying so was a second frame to every member for each message.
    room_id, (alice, bob, carol) = await room_with(visitors, "alice", "bob", "carol")
    async with open_stream(bob.client, f"/rooms/{room_id}/events") as bob_tab:
        await type_in(alice, room_id)
        first = await bob_tab.next_of("typing")
        assert typists(first) == ["alice"]
        await type_in(carol, room_id)  # within alice's window: held back
        await alice.say(room_id, "done typing")  # the held frame loses alice
        [message] = await bob_tab.messages(1)
        assert 'data-author="alice"' in message.data
        after = await bob_tab.next_of("typing")  # (carol's window's end, or her expiry)
        assert "alice" not in typists(after)
        # Versions only grow, so pages can drop a late frame.
        assert json.loads(after.data)["version"] > json.loads(first.data)["version"]


async def test_a_busy_rooms_typing_frames_come_once_a_window(visitors):
    room_id, (alice, bob, carol, dave) = await room_with(visitors, "alice", "bob", "carol", "dave")
    async with open_stream(bob.client, f"/rooms/{room_id}/events") as bob_tab:
        for person in (alice, carol, dave):
            await type_in(person, room_id)
        assert typists(await bob_tab.next_of("typing")) == ["alice"]  # at once
        assert typists(await bob_tab.next_of("typing")) == ["alice", "carol", "dave"]


async def test_typing_notices_are_rate_limited_per_user(visitors):
    room_id, (alice,) = await room_with(visitors, "alice")
    await type_in(alice, room_id)
    await type_in(alice, room_id, status=429)


async def test_only_members_may_send_typing_notices_and_only_with_csrf(visitors):
    room_id, (alice, mallory) = await room_with(visitors, "alice", "mallory")
    await mallory.post(f"/rooms/{room_id}/leave")
    await type_in(mallory, room_id, status=403)
    response = await alice.client.post(f"/rooms/{room_id}/typing")
    assert response.status_code == 403
    private_id = await alice.create_room("secret", "private")
    await type_in(mallory, private_id, status=404)


async def test_the_room_page_starts_with_the_current_typists(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await type_in(alice, room_id)
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert 'data-typists="{&#34;typists&#34;: [&#34;alice&#34;]' in page
