"""Direct messages: a private room of two, made by the first message, found again,
never duplicated, invisible and unjoinable to anyone else, listed apart from rooms."""

import asyncio
import json
import re

from sqlalchemy import func, select

from chat.models import Room, RoomKind
from tests.support import open_stream


def room_id_of(response) -> int:
    assert response.status_code == 303, response.text
    return int(re.search(r"/rooms/(\d+)", response.headers["location"]).group(1))


async def first_message(sender, recipient: str, body: str) -> int:
    return room_id_of(await sender.post(f"/direct/{recipient}/messages", {"body": body}))


async def direct_rooms(app) -> int:
    async with app.state.db() as db:
        return await db.scalar(
            select(func.count()).select_from(Room).where(Room.kind == RoomKind.DIRECT)
        )


def section(html: str, heading_id: str) -> str:
    """The part of the page from heading `heading_id` to the next heading."""
    start = html.index(f'id="{heading_id}"')
    end = html.find("<h2", start)
    return html[start : end if end != -1 else None]


async def test_opening_a_conversation_with_someone_new_shows_it_empty_and_stores_nothing(
    app, people
):
    alice, _ = await people("alice"), await people("bob")
    page = await alice.get("/direct/bob")
    assert page.status_code == 200
    assert '<h1 id="room-title">bob</h1>' in page.text
    assert 'action="http://testserver/direct/bob/messages"' in page.text
    assert 'name="body"' in page.text and "hx-post" not in page.text.split('id="composer"')[1]
    assert await direct_rooms(app) == 0


async def test_the_first_message_makes_the_conversation_and_both_find_it_again(app, people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await first_message(alice, "bob", "Hi Bob, a word in private?")
    assert (await alice.get("/direct/bob")).headers["location"].endswith(f"/rooms/{room_id}")
    assert (await bob.get("/direct/ALICE")).headers["location"].endswith(f"/rooms/{room_id}")
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "Hi Bob, a word in private?" in page
    assert '<h1 id="room-title">alice</h1>' in page
    assert room_id_of(await bob.post("/direct/alice/messages", {"body": "Sure"})) == room_id
    composer = await bob.post(f"/rooms/{room_id}/messages", {"body": "And more"}, htmx=True)
    assert 'placeholder="Message alice"' in composer.text
    assert await direct_rooms(app) == 1


async def test_an_empty_first_message_is_refused_and_makes_no_room(app, people):
    alice, _ = await people("alice"), await people("bob")
    response = await alice.post("/direct/bob/messages", {"body": "  "})
    assert response.status_code == 400
    assert "Type a message before sending." in response.text
    assert await direct_rooms(app) == 0


async def test_no_conversation_with_nobody_or_with_yourself(app, people):
    alice = await people("alice")
    assert (await alice.get("/direct/nobody")).status_code == 404
    assert (await alice.post("/direct/nobody/messages", {"body": "hi"})).status_code == 404
    assert (await alice.get("/direct/alice")).status_code == 400
    assert (await alice.post("/direct/alice/messages", {"body": "hi"})).status_code == 400
    assert await direct_rooms(app) == 0


async def test_the_new_direct_message_form_leads_to_the_conversation(people):
    alice, _ = await people("alice"), await people("bob")
    assert 'action="http://testserver/direct"' in (await alice.get("/")).text
    response = await alice.get("/direct", params={"username": " @bob "})
    assert response.status_code == 303
    assert response.headers["location"].endswith("/direct/bob")
    assert (await alice.get("/direct", params={"username": "../x"})).status_code == 404


async def test_concurrent_first_messages_from_both_sides_make_one_conversation(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    sends = [
        first_message(alice, "bob", f"from alice {n}")
        if n % 2 == 0
        else first_message(bob, "alice", f"from bob {n}")
        for n in range(10)
    ]
    room_ids = await asyncio.gather(*sends)
    assert len(set(room_ids)) == 1
    page = (await alice.get(f"/rooms/{room_ids[0]}")).text
    assert [int(seq) for seq in re.findall(r'data-seq="(\d+)"', page)] == list(range(1, 11))
    for n in range(10):
        assert f"from {'alice' if n % 2 == 0 else 'bob'} {n}<" in page
    index = (await bob.get("/")).text
    assert section(index, "direct-messages").count("data-room-link") == 1


async def test_a_third_person_cannot_see_join_stream_post_or_search_it(visitors):
    alice, _, carol = await visitors("alice"), await visitors("bob"), await visitors("carol")
    room_id = await first_message(alice, "bob", "pineapple plans")
    room = f"/rooms/{room_id}"
    assert (await carol.get(room)).status_code == 404
    assert (await carol.get(f"{room}?at=1")).status_code == 404
    assert (await carol.get(f"{room}/messages?before=5")).status_code == 404
    assert (await carol.post(f"{room}/join")).status_code == 404
    assert (await carol.post(f"{room}/messages", {"body": "let me in"})).status_code == 404
    async with open_stream(carol.client, f"{room}/events") as stream:
        assert stream.response.status_code == 404
    for query in ("pineapple", 'pineapple in:"alice and bob"'):
        results = (await carol.get("/search", params={"q": query})).text
        assert 'class="search-hit"' not in results
    assert "pineapple" in (await alice.get("/search", params={"q": "pineapple"})).text
    index = (await carol.get("/")).text
    assert room not in index


async def test_direct_messages_are_listed_apart_by_the_other_persons_name_with_unread_counts(
    people,
):
    alice, bob = await people("alice"), await people("bob")
    general = await alice.create_room("general")
    await bob.join(general)
    room_id = await first_message(alice, "bob", "psst")
    await alice.post("/direct/bob/messages", {"body": "are you there?"})
    index = (await bob.get("/")).text
    rooms, directs = section(index, "your-rooms"), section(index, "direct-messages")
    assert f"/rooms/{general}" in rooms and f"/rooms/{room_id}" not in rooms
    link = re.search(rf'<a href="[^"]*/rooms/{room_id}".*?</a>', directs, re.S).group(0)
    assert '<span class="room-name">alice</span>' in link
    assert 'data-unread="2"' in link and "2 unread" in link
    assert "private" not in link
    # Beside a room too, and named for each person by the other.
    page = (await alice.get(f"/rooms/{general}")).text
    assert '<span class="room-name">bob</span>' in section(page, "direct-nav-title")


async def test_room_only_actions_do_not_apply_to_a_conversation(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await first_message(alice, "bob", "hello")
    await people("carol")
    page = (await alice.get(f"/rooms/{room_id}")).text
    assert "Leave room" not in page and "Add a member" not in page and "Remove" not in page
    assert 'class="tag">direct message<' in page
    assert (await alice.post(f"/rooms/{room_id}/leave")).status_code == 400
    assert (await alice.post(f"/rooms/{room_id}/members", {"username": "carol"})).status_code == 400
    assert (await alice.post(f"/rooms/{room_id}/members/2/remove")).status_code == 400
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 200


async def test_a_rooms_member_list_offers_to_message_everyone_but_yourself(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    members = section((await alice.get(f"/rooms/{room_id}")).text, "members-title")
    assert 'href="http://testserver/direct/bob"' in members
    assert "/direct/alice" not in members


async def test_a_conversation_is_live_for_the_other_person(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    room_id = await first_message(alice, "bob", "first")
    async with open_stream(bob.client, f"/rooms/{room_id}/events?after=1") as stream:
        await alice.say(room_id, "second, live")
        (frame,) = await stream.messages(1)
    assert "second, live" in frame.data


async def test_signed_out_visitors_are_sent_to_log_in(anonymous):
    for path in ("/direct/bob", "/direct?username=bob"):
        response = await anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].endswith("/login")


async def test_the_rooms_page_counts_and_notifies_every_direct_message(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    room_id = await first_message(alice, "bob", "first")
    async with open_stream(bob.client, "/events") as rooms_tab:
        assert json.loads((await rooms_tab.next_of("unread")).data) == {
            "room": room_id,
            "unread": 1,
            "mentions": 0,
        }
        await alice.say(room_id, "are you around?")
        assert json.loads((await rooms_tab.next_of("unread")).data)["unread"] == 2
        notice = json.loads((await rooms_tab.next_of("notify")).data)
    assert notice["title"] == "alice" and notice["body"] == "are you around?"
