"""Invite links (issue 23, "Rooms"): random, expiring, with a use limit, revocable;
signed out they lead through sign-up or login first; the `invite` sign-up policy."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from chat.models import Invite, Membership, User, utcnow
from tests.support import PASSWORD, Person
from tests.test_admin import make_admin


async def make_invite(owner: Person, room_id: int, expires="7d", max_uses="10") -> str:
    response = await owner.post(
        f"/rooms/{room_id}/invites", {"expires": expires, "max_uses": max_uses}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    link = re.search(r'id="new-invite" type="text" value="([^"]+)"', response.text)[1]
    return link.removeprefix("http://testserver")


async def members_of(app, room_id: int) -> set[str]:
    async with app.state.db() as db:
        rows = await db.scalars(
            select(User.username)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.room_id == room_id)
        )
        return set(rows)


async def test_opening_an_invite_signed_in_offers_join_and_joining_takes_one_use(people, app):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("secret", "private")
    path = await make_invite(alice, room_id, max_uses="1")
    assert re.fullmatch(r"/invites/[A-Za-z0-9_-]{32}", path)

    page = await bob.get(path)
    assert page.status_code == 200 and "Join secret" in page.text
    assert await members_of(app, room_id) == {"alice"}  # opening alone joins no one
    response = await bob.post(path)
    assert response.status_code == 303 and response.headers["location"].endswith(f"/{room_id}")
    assert (await bob.get(f"/rooms/{room_id}")).status_code == 200
    # A member opening it again goes to the room, and takes no use.
    assert (await bob.get(path)).status_code == 303
    assert (await bob.post(path)).status_code == 303

    page = await carol.get(path)  # its one use is taken
    assert page.status_code == 410 and "used as many times" in page.text
    assert (await carol.post(path)).status_code == 410
    assert await members_of(app, room_id) == {"alice", "bob"}


async def test_signed_out_the_invite_leads_through_sign_up_and_login_then_back(
    people, anonymous, app
):
    alice = await people("alice")
    room_id = await alice.create_room("team", "private")
    path = await make_invite(alice, room_id)
    page = (await anonymous.get(path)).text
    signup = re.search(r'href="(http://testserver/signup\?[^"]+)"', page)[1].replace("&amp;", "&")
    login = re.search(r'href="(http://testserver/login\?[^"]+)"', page)[1].replace("&amp;", "&")

    form = (await anonymous.get(signup)).text
    token = path.rsplit("/", 1)[1]
    assert f'name="invite" value="{token}"' in form and f'name="next" value="{path}"' in form
    response = await anonymous.post(
        "/signup",
        {"username": "dave", "password": PASSWORD, "invite": token, "next": path},
    )
    assert response.status_code == 303 and response.headers["location"] == path
    assert (await anonymous.post(path)).status_code == 303
    assert "dave" in await members_of(app, room_id)

    erin = await people("erin")
    await erin.post("/logout")
    assert 'name="next" value="' + path in (await erin.get(login)).text
    response = await erin.post("/login", {"username": "erin", "password": PASSWORD, "next": path})
    assert response.headers["location"] == path
    assert (await erin.post(path)).status_code == 303
    assert "erin" in await members_of(app, room_id)


async def test_the_invite_policy_lets_only_people_with_a_working_link_sign_up(
    people, anonymous, app, settings
):
    root, alice = await people("root"), await people("alice")
    await make_admin(settings.database_url, "root")
    await root.post("/admin/signup", {"policy": "invite"})
    room_id = await alice.create_room("team")
    path = await make_invite(alice, room_id)
    token = path.rsplit("/", 1)[1]

    for invite in ("", "not-a-token", "x" * 500):
        response = await anonymous.post(
            "/signup", {"username": "mallory", "password": PASSWORD, "invite": invite}
        )
        assert response.status_code == 403, invite
    assert (await anonymous.get(f"/signup?invite={token}")).status_code == 200
    weak = await anonymous.post(
        "/signup", {"username": "dave", "password": "dave", "invite": token, "next": path}
    )
    assert weak.status_code == 400 and f'value="{token}"' in weak.text  # kept for the retry
    response = await anonymous.post(
        "/signup", {"username": "dave", "password": PASSWORD, "invite": token, "next": path}
    )
    assert response.status_code == 303
    async with app.state.db() as db:
        assert await User.by_username(db, "mallory") is None

    await root.post("/admin/signup", {"policy": "closed"})
    anonymous.client.cookies.clear()
    response = await anonymous.post(
        "/signup", {"username": "frank", "password": PASSWORD, "invite": token}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("how", ["expired", "revoked", "archived"])
async def test_expired_revoked_and_archived_invites_are_friendly_410s(people, app, how):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    path = await make_invite(alice, room_id)
    if how == "expired":
        async with app.state.db() as db:
            await db.execute(update(Invite).values(expires_at=utcnow() - timedelta(seconds=1)))
            await db.commit()
    elif how == "revoked":
        settings_page = (await alice.get(f"/rooms/{room_id}/settings")).text
        revoke = re.search(
            r'action="http://testserver(/rooms/\d+/invites/\d+/revoke)"', settings_page
        )[1]
        assert (await alice.post(revoke)).status_code == 303
        assert (await alice.post(revoke)).status_code == 404
        assert (
            "No invite link of this room works now"
            in (await alice.get(f"/rooms/{room_id}/settings")).text
        )
    else:
        await alice.post(f"/rooms/{room_id}/settings/archive", {"archived": "on"})
    page = await bob.get(path)
    assert page.status_code == 410 and "Ask whoever sent it" in page.text
    assert (await bob.post(path)).status_code == 410
    assert await members_of(app, room_id) == {"alice"}


async def test_only_owners_make_and_revoke_invites_and_bad_choices_are_400(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    form = {"expires": "7d", "max_uses": "10"}
    assert (await bob.post(f"/rooms/{room_id}/invites", form)).status_code == 403
    assert 'id="invites-heading"' not in (await bob.get(f"/rooms/{room_id}/settings")).text
    for bad in ({"expires": "1y", "max_uses": "10"}, {"expires": "7d", "max_uses": "1000"}, {}):
        assert (await alice.post(f"/rooms/{room_id}/invites", bad)).status_code == 400
    await make_invite(alice, room_id, max_uses="")
    async with app.state.db() as db:
        [invite] = await db.scalars(select(Invite))
    assert invite.max_uses is None
    assert (await bob.post(f"/rooms/{room_id}/invites/{invite.id}/revoke")).status_code == 403
    for path in ("/invites/nope", "/invites/" + "x" * 200):
        assert (await bob.get(path)).status_code == 404


async def test_an_invite_token_never_reaches_the_log(people, capsys):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("secret", "private")
    path = await make_invite(alice, room_id)
    capsys.readouterr()
    await bob.get(path)
    await bob.post(path)
    logged = capsys.readouterr().err
    token = path.rsplit("/", 1)[1]
    assert '"path": "/invites/{secret}"' in logged and token not in logged
