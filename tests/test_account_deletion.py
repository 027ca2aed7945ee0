"""Deleting your own account (issue 23, "Accounts")."""

from datetime import timedelta

from sqlalchemy import select, update

from chat.models import Membership, Message, User, utcnow
from tests.support import PASSWORD, Person
from tests.test_account import second_browser
from tests.test_attachments import png, send, stored_files


async def test_a_wrong_password_or_choice_deletes_nothing(people, app):
    alice = await people("alice")
    for form, status in (
        ({"password": "not it at all", "messages": "keep"}, 400),
        ({"password": PASSWORD, "messages": "shred"}, 400),
    ):
        response = await alice.post("/account/delete", form)
        assert response.status_code == status
    assert (await alice.get("/")).status_code == 200
    async with app.state.db() as db:
        assert (await User.by_username(db, "alice")).deleted_at is None


async def test_deleting_keeps_the_messages_by_deleted_user_and_hands_rooms_on(
    people, app, anonymous
):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    await alice.say(room_id, "remember this")
    assert 'data-author="alice"' in (await bob.get(f"/rooms/{room_id}")).text  # now cached
    other = await second_browser(app, "alice")
    try:
        response = await alice.post("/account/delete", {"password": PASSWORD, "messages": "keep"})
        assert response.status_code == 303 and response.headers["location"].endswith("/login")
        assert (await alice.get("/")).status_code == 303
        assert (await other.get("/")).status_code == 303
    finally:
        await other.client.aclose()
    response = await anonymous.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403

    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "remember this" in page and "deleted user" in page and 'data-author="alice"' not in page
    async with app.state.db() as db:
        roles = dict(
            (
                await db.execute(
                    select(Membership.user_id, Membership.role).where(Membership.room_id == room_id)
                )
            ).all()
        )
        bob_id = (await User.by_username(db, "bob")).id
    assert roles == {bob_id: "owner"}  # alice left; the room kept an owner

    # The username is reserved for a while, then free.
    taken = await anonymous.post("/signup", {"username": "Alice", "password": PASSWORD})
    assert taken.status_code == 400 and "taken" in taken.text
    async with app.state.db() as db:
        await db.execute(update(User).values(deleted_at=utcnow() - timedelta(days=31)))
        await db.commit()
    await Person(anonymous.client, "alice").signup()
    assert "deleted user" in (await bob.get(f"/rooms/{room_id}")).text


async def test_deleting_with_the_text_removed_empties_the_messages_and_files(
    people, app, media_dir
):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    await alice.say(room_id, "secret plans")
    assert (await send(alice, room_id, [("plan.png", png(), "image/png")])).status_code == 200
    await bob.say(room_id, "bob stays")
    assert stored_files(media_dir)
    response = await alice.post("/account/delete", {"password": PASSWORD, "messages": "remove"})
    assert response.status_code == 303
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "secret plans" not in page and "Message deleted" in page and "bob stays" in page
    async with app.state.db() as db:
        rows = (await db.execute(select(Message.body, Message.author_id))).all()
        bob_id = (await User.by_username(db, "bob")).id
    assert sorted(rows, key=str) == sorted([("", None), ("", None), ("bob stays", bob_id)], key=str)
    assert not stored_files(media_dir)


async def test_an_administrator_cannot_reactivate_a_deleted_account(people, app, settings):
    from tests.test_admin import make_admin

    root, alice = await people("root"), await people("alice")
    await make_admin(settings.database_url, "root")
    await alice.post("/account/delete", {"password": PASSWORD, "messages": "keep"})
    async with app.state.db() as db:
        alice_id = (await User.by_username(db, "alice")).id
    page = (await root.get("/admin", params={"q": "alice"})).text
    assert "deleted" in page and f"/admin/users/{alice_id}/reactivate" not in page
    assert (await root.post(f"/admin/users/{alice_id}/reactivate")).status_code == 400
