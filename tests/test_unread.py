"""Read markers and unread counts: exact on every page load, live on the rooms page
over one stream per tab, and the same in every tab."""

import json
import time

from chat import sse
from chat.activity import COUNTS_WINDOW_SECONDS, RoomCounts
from tests.support import open_stream
from tests.test_streams import room_with


def counts(event):
    return json.loads(event.data)


async def read(person, room_id, seq, status=204):
    response = await person.post(f"/rooms/{room_id}/read", {"seq": str(seq)}, htmx=True)
    assert response.status_code == status, response.text


async def test_the_read_marker_advances_never_rewinds_and_stops_at_the_newest(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    for n in range(5):
        await alice.say(room_id, f"m{n}")
    await read(bob, room_id, 3)
    assert "2 unread" in (await bob.get("/")).text
    await read(bob, room_id, 1)
    assert "2 unread" in (await bob.get("/")).text
    await read(bob, room_id, 99)
    assert "unread" not in (await bob.get("/")).text
    await alice.say(room_id, "after")
    assert "1 unread" in (await bob.get("/")).text


async def test_marking_read_needs_a_whole_number_membership_and_csrf(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await read(bob, room_id, 1, status=403)
    await bob.join(room_id)
    for bad in ("", "-1", "abc", "1.5"):
        await read(bob, room_id, bad, status=400)
    response = await bob.client.post(f"/rooms/{room_id}/read", data={"seq": "1"})
    assert response.status_code == 403


async def test_the_room_page_puts_a_divider_before_the_first_unread_message(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "seen")
    await bob.get(f"/rooms/{room_id}")
    await alice.say(room_id, "new one")
    await alice.say(room_id, "newer")
    page = (await bob.get(f"/rooms/{room_id}")).text
    divider = page.index('id="new-messages"')
    assert page.index('id="message-1"') < divider < page.index('id="message-2"')
    assert 'id="new-messages"' not in (await bob.get(f"/rooms/{room_id}")).text


async def test_rooms_page_counts_live_on_one_stream_exactly_after_reconnects(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    other_id = await alice.create_room("other")
    await bob.join(other_id)
    await alice.say(room_id, "before bob looked")
    async with open_stream(bob.client, "/events") as rooms_tab:
        first = [counts(await rooms_tab.next()) for _ in range(2)]
        assert {room["room"]: room for room in first} == {
            room_id: {"room": room_id, "unread": 1, "mentions": 0},
            other_id: {"room": other_id, "unread": 0, "mentions": 0},
        }
        await alice.say(room_id, "hello @bob")
        assert counts(await rooms_tab.next_of("unread")) == {
            "room": room_id,
            "unread": 2,
            "mentions": 1,
        }
        await alice.say(other_id, "elsewhere")
        assert counts(await rooms_tab.next_of("unread"))["room"] == other_id
    await alice.say(room_id, "while bob was away")
    async with open_stream(bob.client, "/events") as again:
        snapshot = {room["room"]: room for room in [counts(await again.next()) for _ in range(2)]}
        assert snapshot[room_id] == {"room": room_id, "unread": 3, "mentions": 1}
        assert snapshot[other_id]["unread"] == 1


async def test_reading_or_posting_in_one_tab_updates_the_counts_in_every_tab(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await alice.say(room_id, "one")
    await alice.say(room_id, "@bob two")
    async with (
        open_stream(bob.client, "/events") as tab_1,
        open_stream(bob.client, "/events") as tab_2,
    ):
        for tab in (tab_1, tab_2):
            assert counts(await tab.next_of("unread"))["unread"] == 2
        await read(bob, room_id, 1)  # a room tab saw message 1
        for tab in (tab_1, tab_2):
            assert counts(await tab.next_of("unread")) == {
                "room": room_id,
                "unread": 1,
                "mentions": 1,
            }
        await alice.say(room_id, "three")
        await bob.say(room_id, "caught up")  # posting marks the room read
        for tab in (tab_1, tab_2):
            assert counts(await tab.next_of("unread"))["unread"] == 2
            assert counts(await tab.next_of("unread")) == {
                "room": room_id,
                "unread": 0,
                "mentions": 0,
            }


async def test_notifications_go_out_for_mentions_and_rooms_that_asked(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    async with open_stream(bob.client, "/events") as rooms_tab:
        await rooms_tab.next_of("unread")
        await alice.say(room_id, "no notification for this")
        await alice.say(room_id, "but @bob, this one")
        notice = counts(await rooms_tab.next_of("notify"))
        assert notice["seq"] == 2 and notice["mention"] is True
        assert notice["title"] == "alice in general" and notice["body"] == "but @bob, this one"
        response = await bob.post(f"/rooms/{room_id}/notify", {"notify": "on"})
        assert response.status_code == 303
        await rooms_tab.next_of("unread")  # the stream took the new setting
        await alice.say(room_id, "now everything")
        assert counts(await rooms_tab.next_of("notify"))["seq"] == 3


async def test_the_notify_switch_works_with_and_without_htmx(people):
    alice = await people("alice")
    room_id = await alice.create_room("general")
    page = (await alice.get(f"/rooms/{room_id}")).text
    assert "Notifications: @mentions only" in page
    fragment = await alice.post(f"/rooms/{room_id}/notify", {"notify": "on"}, htmx=True)
    assert 'id="notify-form"' in fragment.text and "every message" in fragment.text
    assert "Notifications: every message" in (await alice.get(f"/rooms/{room_id}")).text
    assert (await alice.post(f"/rooms/{room_id}/notify", {"notify": "maybe"})).status_code == 400


async def test_a_busy_rooms_counts_come_at_once_then_once_a_window(visitors):
    # In a busy room a count per message would be as many frames as the messages
    # themselves: the first goes out at once, the rest of a window as its newest count.
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    async with open_stream(bob.client, "/events") as rooms_tab:
        assert counts(await rooms_tab.next_of("unread"))["unread"] == 0
        started = time.monotonic()
        for n in range(10):
            await alice.say(room_id, f"m{n}")
        windows = (time.monotonic() - started) / COUNTS_WINDOW_SECONDS
        seen = [counts(await rooms_tab.next_of("unread"))["unread"]]
        while seen[-1] < 10:
            seen.append(counts(await rooms_tab.next_of("unread"))["unread"])
        assert seen[0] == 1 and seen == sorted(seen)
        assert len(seen) <= 2 + windows, seen  # not one a message
        await alice.say(room_id, "@bob now")  # a mention is never held back
        assert counts(await rooms_tab.next_of("unread")) == {
            "room": room_id,
            "unread": 11,
            "mentions": 1,
        }


def test_an_unread_frame_is_the_counts_as_json() -> None:
    for muted, mentions in ((False, 0), (False, 3), (True, 1)):
        room = RoomCounts(12, "general", 40, 7, mentions, False, False, muted)
        unread = 0 if muted else 33
        expected = {"room": 12, "unread": unread, "mentions": mentions}
        assert room.frame() == sse.encode("unread", json.dumps(expected))
