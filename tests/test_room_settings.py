"""Room settings (issue 23, "Rooms"): rename, topic, archive, mute, mark all as read, and
the administrators' rooms list (archive, delete)."""

import re

import httpx
from sqlalchemy import func, select

from chat.models import AdminEvent, ApiToken, Membership, Message, Room, User
from tests.support import open_stream
from tests.test_admin import make_admin, user_named


async def room_named(app, room_id: int) -> Room:
    async with app.state.db() as db:
        return await db.get(Room, room_id)


def unread_of(page: str, room_id: int) -> int:
    match = re.search(rf'data-room-id="{room_id}"(?: data-unread="(\d+)")?', page)
    assert match, f"room {room_id} is not listed"
    return int(match[1] or 0)


def listed_rooms(page: str) -> set[int]:
    return {int(n) for n in re.findall(r'data-room-id="(\d+)"', page)}


async def test_an_owner_renames_a_room_and_duplicates_in_any_case_are_refused(people, app):
    alice = await people("alice")
    room_id = await alice.create_room("general")
    await alice.create_room("Random")
    response = await alice.post(f"/rooms/{room_id}/settings/name", {"name": "  Team   room "})
    assert response.status_code == 303
    assert (await room_named(app, room_id)).name == "Team room"
    assert "Team room" in (await alice.get(f"/rooms/{room_id}")).text
    for name, why in (("RANDOM", "already a room"), ("", "1 to 80"), ("x" * 81, "1 to 80")):
        response = await alice.post(f"/rooms/{room_id}/settings/name", {"name": name})
        assert response.status_code == 400 and why in response.text, name
        assert 'role="alert"' in response.text
    assert (await room_named(app, room_id)).name == "Team room"


async def test_only_owners_change_settings_and_private_rooms_stay_hidden(people, app):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("general")
    secret_id = await alice.create_room("secret", "private")
    await bob.join(room_id)
    assert (await bob.get(f"/rooms/{room_id}/settings")).status_code == 200
    for path, form in (
        ("settings/name", {"name": "bobs"}),
        ("settings/topic", {"topic": "bobs"}),
        ("settings/archive", {"archived": "on"}),
    ):
        assert (await bob.post(f"/rooms/{room_id}/{path}", form)).status_code == 403
        assert (await carol.post(f"/rooms/{room_id}/{path}", form)).status_code == 403
        assert (await carol.post(f"/rooms/{secret_id}/{path}", form)).status_code == 404
    assert (await carol.get(f"/rooms/{secret_id}/settings")).status_code == 404
    room = await room_named(app, room_id)
    assert (room.name, room.topic, room.is_archived) == ("general", "", False)


async def test_the_topic_is_one_line_of_markdown_shown_escaped_under_the_name(people, app):
    alice = await people("alice")
    room_id = await alice.create_room("general")
    topic = "Release **friday** <script>alert(1)</script> see https://example.org"
    response = await alice.post(f"/rooms/{room_id}/settings/topic", {"topic": topic})
    assert response.status_code == 303
    page = (await alice.get(f"/rooms/{room_id}")).text
    shown = re.search(r'<p class="room-topic">(.*?)</p>', page)[1]
    assert "<strong>friday</strong>" in shown and "&lt;script&gt;" in shown
    assert '<a href="https://example.org"' in shown and "<script>" not in shown
    for bad in ("two\nlines", "x" * 251, "bell\x07"):
        response = await alice.post(f"/rooms/{room_id}/settings/topic", {"topic": bad})
        assert response.status_code == 400
    assert (await room_named(app, room_id)).topic == topic
    await alice.post(f"/rooms/{room_id}/settings/topic", {"topic": "  "})
    assert 'class="room-topic"' not in (await alice.get(f"/rooms/{room_id}")).text


async def test_an_archived_room_is_read_only_unlisted_and_searchable_by_members(people, app):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "the archived release notes")
    response = await alice.post(f"/rooms/{room_id}/settings/archive", {"archived": "on"})
    assert response.status_code == 303

    for person in (alice, bob):
        assert room_id not in listed_rooms((await person.get("/")).text)
        assert f'data-room-id="{room_id}"' in (await person.get("/rooms/archived")).text
        found = (await person.get("/search", params={"q": "archived"})).text
        assert f"/rooms/{room_id}?at=1" in found
    assert room_id not in listed_rooms((await carol.get("/")).text)  # not joinable either
    found = (await carol.get("/search", params={"q": "archived"})).text
    assert f"/rooms/{room_id}?at=1" not in found

    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "read-only" in page and 'name="body"' not in page
    for path, form in (
        ("messages", {"body": "still here?"}),
        ("messages/1", {"body": "edited"}),
        ("messages/1/delete", {}),
        ("messages/1/reactions", {"emoji": "👍"}),
    ):
        response = await alice.post(f"/rooms/{room_id}/{path}", form)
        assert response.status_code == 409 and "archived" in response.text, path
    async with app.state.db() as db:
        _, secret = await ApiToken.issue(db, await user_named(app, "alice"), "t", may_write=True)
    api = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        base_url="http://testserver", transport=httpx.ASGITransport(app=app)
    ) as machine:
        response = await machine.post(
            f"/api/v1/rooms/{room_id}/messages", json={"body": "by the API"}, headers=api
        )
    assert response.status_code == 409 and response.json()["error"] == "archived"
    async with app.state.db() as db:
        [message] = await db.scalars(select(Message).where(Message.room_id == room_id))
    assert message.body == "the archived release notes" and message.deleted_at is None

    await alice.post(f"/rooms/{room_id}/settings/archive", {"archived": "off"})
    assert room_id in listed_rooms((await bob.get("/")).text)
    await bob.say(room_id, "back again")
    response = await alice.post(f"/rooms/{room_id}/settings/archive", {"archived": "x"})
    assert response.status_code == 400


async def test_a_muted_room_counts_only_mentions_and_mark_all_read_clears_every_room(people):
    alice, bob = await people("alice"), await people("bob")
    quiet, loud = await alice.create_room("quiet"), await alice.create_room("loud")
    for room_id in (quiet, loud):
        await bob.join(room_id)
    response = await bob.post(f"/rooms/{quiet}/mute", {"muted": "on"})
    assert response.status_code == 303
    await alice.say(quiet, "nobody listens")
    await alice.say(loud, "hello there")
    page = (await bob.get("/")).text
    assert unread_of(page, quiet) == 0 and unread_of(page, loud) == 1
    await alice.say(quiet, "@bob this one is for you")
    page = (await bob.get("/")).text
    assert re.search(rf'data-room-id="{quiet}".*?1 @mention', page, re.S)
    assert (await bob.post(f"/rooms/{quiet}/mute", {"muted": "maybe"})).status_code == 400

    assert (await bob.post("/rooms/read")).status_code == 303
    page = (await bob.get("/")).text
    assert unread_of(page, quiet) == 0 and unread_of(page, loud) == 0
    assert "@mention" not in page
    await bob.post(f"/rooms/{quiet}/mute", {"muted": "off"})
    await alice.say(quiet, "heard again")
    assert unread_of((await bob.get("/")).text, quiet) == 1


async def test_administrators_archive_and_delete_rooms_others_get_404(people, app, settings):
    root, alice, bob = await people("root"), await people("alice"), await people("bob")
    await make_admin(settings.database_url, "root")
    room_id = await alice.create_room("doomed")
    await bob.join(room_id)
    await alice.say(room_id, "last words")
    for path in ("/admin/rooms", f"/admin/rooms/{room_id}/delete"):
        assert (await alice.get(path)).status_code == 404
    for path, form in (("delete", {"confirm": "delete"}), ("archive", {"archived": "on"})):
        assert (await alice.post(f"/admin/rooms/{room_id}/{path}", form)).status_code == 404

    page = (await root.get("/admin/rooms", params={"q": "DOOM"})).text
    assert f'data-room-id="{room_id}"' in page
    response = await root.post(f"/admin/rooms/{room_id}/archive", {"archived": "on"})
    assert response.status_code == 303
    assert (await room_named(app, room_id)).is_archived
    confirm = await root.get(f"/admin/rooms/{room_id}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    assert (await root.post(f"/admin/rooms/{room_id}/delete")).status_code == 400
    assert await room_named(app, room_id) is not None
    response = await root.post(f"/admin/rooms/{room_id}/delete", {"confirm": "delete"})
    assert response.status_code == 303
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 404
    async with app.state.db() as db:
        assert await db.scalar(select(func.count()).select_from(Message)) == 0
        events = [(e.action, e.target) for e in await AdminEvent.newest(db, 10)]
    assert events == [
        ("room_deleted", f"room #{room_id} doomed"),
        ("room_archived", f"room #{room_id} doomed"),
    ]
    assert (await root.get(f"/admin/rooms/{room_id}/delete")).status_code == 404


async def test_direct_conversations_are_not_in_the_administrators_reach(people, settings):
    root, alice = await people("root"), await people("alice")
    await make_admin(settings.database_url, "root")
    response = await alice.post("/direct/root/messages", {"body": "hi"})
    room_id = int(re.search(r"/rooms/(\d+)", response.headers["location"])[1])
    assert (await root.get(f"/admin/rooms/{room_id}/delete")).status_code == 404
    assert f'data-room-id="{room_id}"' not in (await root.get("/admin/rooms")).text
    response = await alice.post(f"/rooms/{room_id}/settings/name", {"name": "ours"})
    assert response.status_code == 400


async def test_deleting_a_room_closes_its_members_streams(visitors, database_url):
    root, alice = await visitors("root"), await visitors("alice")
    await make_admin(database_url, "root")
    room_id = await alice.create_room("doomed")
    async with open_stream(alice.client, f"/rooms/{room_id}/events") as stream:
        assert stream.response.status_code == 200
        response = await root.post(f"/admin/rooms/{room_id}/delete", {"confirm": "delete"})
        assert response.status_code == 303
        assert await stream.closed()


async def test_an_administrator_makes_someone_owner_of_a_room(people, app, settings):
    root, alice, bob = await people("root"), await people("alice"), await people("bob")
    await people("carol")
    await make_admin(settings.database_url, "root")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    for username in ("nobody", ""):
        response = await root.post(f"/admin/rooms/{room_id}/owner", {"username": username})
        assert response.status_code == 400
    assert (await bob.post(f"/admin/rooms/{room_id}/owner", {"username": "bob"})).status_code == 404
    for username in ("bob", "carol"):  # a member, and someone who joins as owner
        response = await root.post(f"/admin/rooms/{room_id}/owner", {"username": username})
        assert response.status_code == 303
    topic = await bob.post(f"/rooms/{room_id}/settings/topic", {"topic": "bob's now"})
    assert topic.status_code == 303
    async with app.state.db() as db:
        roles = dict(
            (
                await db.execute(
                    select(User.username, Membership.role)
                    .join(Membership, Membership.user_id == User.id)
                    .where(Membership.room_id == room_id)
                )
            ).all()
        )
        events = [e.action for e in await AdminEvent.newest(db, 10)]
    assert roles == {"alice": "owner", "bob": "owner", "carol": "owner"}
    assert events == ["room_owner_made", "room_owner_made"]
