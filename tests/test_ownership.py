"""A room always keeps an owner; leaving and removing are asked twice."""

import asyncio

from sqlalchemy import select

from chat.models import Membership, Role, User


async def user_id(app, username: str) -> int:
    async with app.state.db() as db:
        return await db.scalar(select(User.id).where(User.username == username))


async def roles(app, room_id: int) -> dict[str, str]:
    async with app.state.db() as db:
        rows = await db.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.room_id == room_id)
        )
        return dict(rows.all())


async def test_the_only_owner_cannot_leave_and_is_told_why(people, app):
    alice, _ = await people("alice"), await people("bob")
    room_id = await alice.create_room("secret", "private")
    await alice.post(f"/rooms/{room_id}/members", {"username": "bob"})
    response = await alice.post(f"/rooms/{room_id}/leave")
    assert response.status_code == 409
    assert "only owner of secret" in response.text
    assert await roles(app, room_id) == {"alice": Role.OWNER, "bob": Role.MEMBER}
    # Asked first, the confirmation says the same and offers nothing to press.
    page = await alice.get(f"/rooms/{room_id}/leave")
    assert page.status_code == 200 and "only owner of secret" in page.text
    assert f'action="http://testserver/rooms/{room_id}/leave"' not in page.text


async def test_an_owner_makes_someone_else_owner_and_may_then_leave(people, app):
    alice, _ = await people("alice"), await people("bob")
    room_id = await alice.create_room("secret", "private")
    await alice.post(f"/rooms/{room_id}/members", {"username": "bob"})
    bob_id = await user_id(app, "bob")
    assert "Make owner" in (await alice.get(f"/rooms/{room_id}")).text
    response = await alice.post(f"/rooms/{room_id}/members/{bob_id}/owner")
    assert response.status_code == 303
    assert await roles(app, room_id) == {"alice": Role.OWNER, "bob": Role.OWNER}
    page = await alice.get(f"/rooms/{room_id}/leave")
    assert f'action="http://testserver/rooms/{room_id}/leave"' in page.text
    assert (await alice.post(f"/rooms/{room_id}/leave")).status_code == 303
    assert await roles(app, room_id) == {"bob": Role.OWNER}
    assert (await alice.get(f"/rooms/{room_id}")).status_code == 404


async def test_only_owners_make_owners_and_only_of_members(people, app):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    alice_id, carol_id = await user_id(app, "alice"), await user_id(app, "carol")
    assert "Make owner" not in (await bob.get(f"/rooms/{room_id}")).text
    assert (await bob.post(f"/rooms/{room_id}/members/{alice_id}/owner")).status_code == 403
    assert (await alice.post(f"/rooms/{room_id}/members/{carol_id}/owner")).status_code == 404
    assert (await alice.post(f"/rooms/{room_id}/members/99999/owner")).status_code == 404
    assert await roles(app, room_id) == {"alice": Role.OWNER, "bob": Role.MEMBER}
    del carol


async def test_two_owners_leaving_at_once_leave_one_owner_behind(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.post(f"/rooms/{room_id}/members/{await user_id(app, 'bob')}/owner")
    answers = await asyncio.gather(
        alice.post(f"/rooms/{room_id}/leave"), bob.post(f"/rooms/{room_id}/leave")
    )
    assert sorted(answer.status_code for answer in answers) == [303, 409]
    assert list((await roles(app, room_id)).values()) == [Role.OWNER]


async def test_removing_a_member_is_confirmed_on_a_page_first(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    bob_id = await user_id(app, "bob")
    page = await alice.get(f"/rooms/{room_id}/members/{bob_id}/remove")
    assert page.status_code == 200 and "Remove bob from general?" in page.text
    assert f'action="http://testserver/rooms/{room_id}/members/{bob_id}/remove"' in page.text
    assert await roles(app, room_id) == {"alice": Role.OWNER, "bob": Role.MEMBER}
    assert (await bob.get(f"/rooms/{room_id}/members/{bob_id}/remove")).status_code == 403
    alice_id = await user_id(app, "alice")
    assert (await alice.get(f"/rooms/{room_id}/members/{alice_id}/remove")).status_code == 400
    assert (await alice.get(f"/rooms/{room_id}/members/99999/remove")).status_code == 404
    assert (await alice.post(f"/rooms/{room_id}/members/{bob_id}/remove")).status_code == 303
    assert await roles(app, room_id) == {"alice": Role.OWNER}


async def test_leaving_is_confirmed_on_a_page_first(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    page = await bob.get(f"/rooms/{room_id}/leave")
    assert page.status_code == 200 and "Leave general?" in page.text
    assert f'action="http://testserver/rooms/{room_id}/leave"' in page.text
    assert "bob" in await roles(app, room_id)
