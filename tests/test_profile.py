"""The profile on /account (issue 23, "Accounts"): display name and time zone."""

import io

from PIL import Image

from chat.models import User
from tests.support import Person
from tests.test_attachments import png, png_header_only


async def profile_of(app, username: str) -> tuple[str, str]:
    async with app.state.db() as db:
        user = await User.by_username(db, username)
        return user.display_name, user.time_zone


async def test_a_display_name_shows_beside_every_message_and_mentions_keep_the_username(
    people, app
):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    await alice.say(room_id, "before the change")
    assert "Alice Liddell" not in (await bob.get(f"/rooms/{room_id}")).text  # now cached
    response = await alice.post(
        "/account/profile", {"display_name": "  Alice   Liddell ", "time_zone": "Europe/Paris"}
    )
    assert response.status_code == 303
    assert await profile_of(app, "alice") == ("Alice Liddell", "Europe/Paris")
    await alice.say(room_id, "after the change")
    await bob.say(room_id, "thanks @alice")
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert page.count('<span class="author">Alice Liddell</span>') == 2
    assert page.count('<span class="author-username">@alice</span>') == 2
    assert 'data-author="alice"' in page and 'data-username="alice"' in page  # the mention
    assert '<span class="member-username">@alice</span>' in page  # the member list too
    assert 'data-time-zone="Europe/Paris"' in (await alice.get("/")).text
    assert "data-time-zone" not in (await bob.get("/")).text

    await alice.post("/account/profile", {"display_name": "", "time_zone": ""})
    assert "Alice Liddell" not in (await bob.get(f"/rooms/{room_id}")).text


async def test_a_new_display_name_shows_in_member_lists_of_rooms_never_written_in(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await bob.create_room("quiet")
    await alice.join(room_id)
    assert "Alice Liddell" not in (await bob.get(f"/rooms/{room_id}")).text  # now kept
    await alice.post("/account/profile", {"display_name": "Alice Liddell", "time_zone": ""})
    assert "<span>Alice Liddell</span>" in (await bob.get(f"/rooms/{room_id}")).text


async def test_bad_profile_input_is_400_and_changes_nothing(people, app):
    alice = await people("alice")
    await alice.post("/account/profile", {"display_name": "Alice", "time_zone": "UTC"})
    for form in (
        {"display_name": "x" * 65, "time_zone": "UTC"},
        {"display_name": "bell\x07", "time_zone": "UTC"},
        {"display_name": "ok\u202eevil", "time_zone": "UTC"},
        {"display_name": "Alice", "time_zone": "Mars/Olympus_Mons"},
    ):
        response = await alice.post("/account/profile", form)
        assert response.status_code == 400 and 'role="alert"' in response.text, form
    assert await profile_of(app, "alice") == ("Alice", "UTC")


async def test_the_profile_form_is_on_the_account_page(people):
    alice: Person = await people("alice")
    page = (await alice.get("/account")).text
    assert 'name="display_name"' in page and '<option selected value="">' not in page
    assert "<option>Europe/Paris</option>" in page


async def test_a_picture_is_re_encoded_to_a_small_square_and_shown_beside_messages(
    people, app, media_dir
):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("team")
    await bob.join(room_id)
    await alice.say(room_id, "hello")
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert 'class="avatar avatar-c' in page and ">AL</span>" in page  # initials first

    big = png(300, 200, comment="secret exif-like text")
    response = await alice.post("/account/avatar", files=[("files", ("me.png", big, "image/png"))])
    assert response.status_code == 303, response.text
    async with app.state.db() as db:
        key = (await User.by_username(db, "alice")).avatar_key
    assert key
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert f'src="/avatars/{key}"' in page
    picture = await bob.get(f"/avatars/{key}")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.size == (128, 128) and "Comment" not in image.info
    assert b"secret exif-like text" not in picture.content

    for name, data in (("notes.txt", b"just text"), ("bomb.png", png_header_only(20000, 20000))):
        response = await alice.post("/account/avatar", files=[("files", (name, data, "image/png"))])
        assert response.status_code == 400 and 'role="alert"' in response.text
    async with app.state.db() as db:
        assert (await User.by_username(db, "alice")).avatar_key == key  # unchanged

    assert (await alice.post("/account/avatar/remove")).status_code == 303
    assert (await bob.get(f"/avatars/{key}")).status_code == 404
    assert f"/avatars/{key}" not in (await bob.get(f"/rooms/{room_id}")).text
