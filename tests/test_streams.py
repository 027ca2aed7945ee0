"""Real-time delivery against a real `chat serve` over TCP, read with httpx streaming."""

import asyncio

import pytest

from tests.support import client_for, open_stream


async def room_with(visitors, *names, visibility="public"):
    people = [await visitors(name) for name in names]
    room_id = await people[0].create_room("general", visibility)
    for person in people[1:]:
        if visibility == "public":
            await person.join(room_id)
        else:
            await people[0].post(f"/rooms/{room_id}/members", {"username": person.username})
    return room_id, people


async def test_member_receives_message_posted_in_another_tab_exactly_once(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    url = f"/rooms/{room_id}/events?after=0"
    async with (
        open_stream(alice.client, url) as alice_tab,
        open_stream(bob.client, url) as bob_tab_1,
        open_stream(bob.client, url) as bob_tab_2,
    ):
        await alice.say(room_id, "hello **bob**")
        await bob.say(room_id, "hi alice")
        for tab in (alice_tab, bob_tab_1, bob_tab_2):
            first, second = await tab.messages(2)
            assert (first.seq, second.seq) == (1, 2)
            assert 'data-author="alice"' in first.data
            assert "<strong>bob</strong>" in first.data
            assert 'data-seq="2"' in second.data
        await alice.say(room_id, "third")
        for tab in (alice_tab, bob_tab_1, bob_tab_2):
            [third] = await tab.messages(1)
            assert third.seq == 3


async def test_every_subscriber_gets_the_same_bytes(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    url = f"/rooms/{room_id}/events?after=0"
    async with open_stream(alice.client, url) as a, open_stream(bob.client, url) as b:
        await alice.say(room_id, "same for everyone")
        [from_a], [from_b] = await a.messages(1), await b.messages(1)
        assert from_a == from_b


@pytest.mark.parametrize("resume", ["last-event-id", "after"])
async def test_reconnecting_client_gets_exactly_the_missed_messages_in_order(visitors, resume):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    for n in range(1, 6):
        await alice.say(room_id, f"before {n}")
    if resume == "last-event-id":
        url, headers = f"/rooms/{room_id}/events", {"Last-Event-ID": "3"}
    else:
        url, headers = f"/rooms/{room_id}/events?after=3", {}
    async with open_stream(bob.client, url, headers) as stream:
        replayed = await stream.messages(2)
        assert [e.seq for e in replayed] == [4, 5]
        for n in range(6, 9):
            await alice.say(room_id, f"live {n}")
        live = await stream.messages(3)
        assert [e.seq for e in live] == [6, 7, 8]


async def test_resume_point_is_the_later_of_header_and_query(visitors):
    room_id, (alice,) = await room_with(visitors, "alice")
    for n in range(4):
        await alice.say(room_id, f"m{n}")
    url = f"/rooms/{room_id}/events?after=1"
    async with open_stream(alice.client, url, {"Last-Event-ID": "3"}) as stream:
        assert [e.seq for e in await stream.messages(1)] == [4]
    async with open_stream(
        alice.client, f"/rooms/{room_id}/events?after=2", {"Last-Event-ID": "not-a-number"}
    ) as stream:
        assert [e.seq for e in await stream.messages(2)] == [3, 4]


async def test_burst_of_concurrent_posts_arrives_in_seq_order_without_gaps(visitors):
    room_id, people = await room_with(visitors, "alice", "bob", "carol")
    async with open_stream(people[1].client, f"/rooms/{room_id}/events?after=0") as stream:
        await asyncio.gather(
            *(person.say(room_id, f"{person.username} {n}") for n in range(20) for person in people)
        )
        assert [e.seq for e in await stream.messages(60)] == list(range(1, 61))


async def test_non_member_cannot_open_the_stream(visitors):
    room_id, (alice, mallory) = await room_with(visitors, "alice", "mallory", visibility="private")
    await alice.post(f"/rooms/{room_id}/members/2/remove")
    response = await mallory.client.get(f"/rooms/{room_id}/events")
    assert response.status_code == 404
    public_id = await alice.create_room("lobby")
    response = await mallory.client.get(f"/rooms/{public_id}/events")
    assert response.status_code == 403


async def test_anonymous_stream_request_goes_to_login(live_server):
    async with client_for(live_server.url) as client:
        response = await client.get("/rooms/1/events")
        assert response.status_code == 303


async def test_leaving_the_room_ends_that_users_open_streams(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    url = f"/rooms/{room_id}/events?after=0"
    async with open_stream(bob.client, url) as bob_tab, open_stream(alice.client, url) as alice_tab:
        await alice.say(room_id, "before bob leaves")
        await bob_tab.messages(1)
        await bob.post(f"/rooms/{room_id}/leave")
        # The stream says why before it ends, so the page does not reconnect for ever.
        assert (await bob_tab.next_of("ended")).data == "removed"
        assert await bob_tab.closed()
        await alice.say(room_id, "after bob left")
        assert [e.seq for e in await alice_tab.messages(2)] == [1, 2]


async def test_removed_member_and_logged_out_user_lose_their_streams(visitors):
    room_id, (alice, bob, carol) = await room_with(
        visitors, "alice", "bob", "carol", visibility="private"
    )
    url = f"/rooms/{room_id}/events?after=0"
    async with open_stream(bob.client, url) as bob_tab, open_stream(carol.client, url) as carol_tab:
        await alice.say(room_id, "hello")
        await bob_tab.messages(1)
        await carol_tab.messages(1)
        await alice.post(f"/rooms/{room_id}/members/2/remove")  # bob
        assert (await bob_tab.next_of("ended")).data == "removed"
        assert await bob_tab.closed()
        await carol.post("/logout")
        assert (await carol_tab.next_of("ended")).data == "signed-out"
        assert await carol_tab.closed()
    assert (await bob.client.get(url)).status_code == 404
