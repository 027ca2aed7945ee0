from sqlalchemy import func, select

from chat.models import Membership, Room


async def count(app, model):
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).select_from(model))


async def test_created_room_lists_its_owner_as_member(people):
    alice = await people("alice")
    room_id = await alice.create_room("general")
    page = await alice.get(f"/rooms/{room_id}")
    assert page.status_code == 200
    assert '<h1 id="room-title">general</h1>' in page.text
    assert "owner" in page.text
    assert 'name="body"' in page.text


async def test_public_room_can_be_found_and_joined(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    index = await bob.get("/")
    assert f'action="http://testserver/rooms/{room_id}/join"' in index.text
    await bob.join(room_id)
    page = await bob.get(f"/rooms/{room_id}")
    assert 'name="body"' in page.text
    assert "bob" in page.text


async def test_private_room_is_404_for_outsiders_exactly_like_a_missing_room(people):
    alice, mallory = await people("alice"), await people("mallory")
    room_id = await alice.create_room("secret", "private")
    hidden = await mallory.get(f"/rooms/{room_id}")
    missing = await mallory.get("/rooms/999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    assert "secret" not in (await mallory.get("/")).text
    for path in ("join", "leave", "messages", "events"):
        method = mallory.get if path == "events" else mallory.post
        assert (await method(f"/rooms/{room_id}/{path}")).status_code == 404, path
    assert (await mallory.get(f"/rooms/{room_id}/messages?before=5")).status_code == 404


async def test_owner_adds_a_member_to_a_private_room(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("secret", "private")
    response = await alice.post(f"/rooms/{room_id}/members", {"username": "BOB"})
    assert response.status_code == 303
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 200


async def test_adding_an_unknown_user_is_a_clear_400(people):
    alice = await people("alice")
    room_id = await alice.create_room("secret", "private")
    response = await alice.post(f"/rooms/{room_id}/members", {"username": "ghost"})
    assert response.status_code == 400
    assert "There is no user called “ghost”." in response.text


async def test_only_owners_change_members(people):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    assert (await bob.post(f"/rooms/{room_id}/members", {"username": "carol"})).status_code == 403
    response = await bob.get(f"/rooms/{room_id}")
    assert "Remove alice" not in response.text
    del carol


async def test_leaving_and_being_removed_end_membership(people, app):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("secret", "private")
    for name in ("bob", "carol"):
        await alice.post(f"/rooms/{room_id}/members", {"username": name})
    assert (await bob.post(f"/rooms/{room_id}/leave")).status_code == 303
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 404
    async with app.state.db() as db:
        carol_id = await db.scalar(
            select(Membership.user_id)
            .where(Membership.room_id == room_id)
            .order_by(Membership.user_id.desc())
        )
    response = await alice.post(f"/rooms/{room_id}/members/{carol_id}/remove")
    assert response.status_code == 303
    assert (await carol.get(f"/rooms/{room_id}")).status_code == 404


async def test_bad_room_names_and_visibility_are_refused_and_nothing_is_created(people, app):
    alice = await people("alice")
    for name, visibility in [
        ("", "public"),
        ("   ", "public"),
        ("x" * 81, "public"),
        ("ok", "secret"),
        ("bell\x07", "public"),
    ]:
        response = await alice.post("/rooms", {"name": name, "visibility": visibility})
        assert response.status_code == 400, (name, visibility)
    assert await count(app, Room) == 0


async def test_room_ids_that_are_not_numbers_or_too_big_are_404(people):
    alice = await people("alice")
    for path in ("/rooms/abc", "/rooms/-1", "/rooms/99999999999999999999999999", "/rooms/1.5"):
        assert (await alice.get(path)).status_code == 404, path


async def test_unread_counts_on_the_room_list(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    for n in range(3):
        await alice.say(room_id, f"message {n}")
    assert "3 unread" in (await bob.get("/")).text
    await bob.get(f"/rooms/{room_id}")
    assert "unread" not in (await bob.get("/")).text
    assert "unread" not in (await alice.get("/")).text


async def test_the_rooms_address_typed_by_hand_leads_to_the_rooms_page(people, anonymous):
    alice = await people("alice")
    response = await alice.client.get("/rooms")
    assert response.status_code == 303 and response.headers["location"].endswith("/")
    assert (await alice.client.get("/rooms", follow_redirects=True)).status_code == 200
    # Signed out, straight to log in, as every app page does.
    response = await anonymous.client.get("/rooms")
    assert response.status_code == 303 and response.headers["location"].endswith("/login")
