"""@mentions: parsed safely, only for members, stored, and counted apart from unread."""

import pytest
from sqlalchemy import select

from chat.models import Mention
from chat.sanitize import mention_candidates, render

MEMBERS = {"alice": "alice", "bob": "Bob"}


def mention(username: str, written: str) -> str:
    return f'<span class="mention" data-username="{username}">{written}</span>'


def test_a_members_name_becomes_a_mention_in_their_own_spelling():
    html = render("hi @bob and @ALICE!", MEMBERS)
    assert html == f"<p>hi {mention('Bob', '@bob')} and {mention('alice', '@ALICE')}!</p>\n"


@pytest.mark.parametrize(
    "text",
    [
        "@@bob",  # doubled @
        "@unknown",  # not a member
        "bob@example.com",  # an e-mail address
        "write to alice@bob.com",
        "@bob@example.com",
        "x@bob",
        "`@bob`",  # inline code
        "```\n@bob\n```",  # a code block
        "[@bob](https://example.com)",  # inside a link's text
        "https://example.com/@bob",
        "@bobby",  # a longer name is another name
    ],
)
def test_tricky_text_is_not_a_mention(text):
    assert "mention" not in render(text, MEMBERS), text


def test_angle_brackets_around_a_mention_stay_text():
    assert render("<@bob>", MEMBERS) == f"<p>&lt;{mention('Bob', '@bob')}&gt;</p>\n"


@pytest.mark.parametrize(
    "text",
    [
        '<span class="mention" data-username="bob">@bob</span>',
        '<span class="mention x" onclick="alert(1)">hi</span>',
        "[@bob](javascript:alert(1))",
        "*@bob<img src=x onerror=alert(1)>*",
    ],
)
def test_user_text_cannot_forge_a_mention_or_any_markup(text):
    html = render(text, MEMBERS).replace(mention("Bob", "@bob"), "")
    assert "<span" not in html and "<img" not in html and "<a" not in html, html


def test_mention_candidates_are_lower_cased_names_outside_code():
    assert mention_candidates("@Bob `@carol` @dave, mail@erin.com @@frank") == {"bob", "dave"}


async def test_posting_stores_mentions_of_members_only(app, people):
    alice, bob, _carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "@bob and @carol, look")  # carol is not in the room
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert mention("bob", "@bob") in page
    assert "@carol" in page and mention("carol", "@carol") not in page
    async with app.state.db() as db:
        stored = (await db.execute(select(Mention.message_id, Mention.user_id))).all()
    assert stored == [(1, 2)]  # message 1 mentions user 2 (bob)


async def test_mentions_count_apart_from_unread_until_the_room_is_read(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    await alice.say(room_id, "hello all")
    await alice.say(room_id, "@bob are you there?")
    await alice.say(room_id, "@Bob?")
    rooms = (await bob.get("/")).text
    assert "3 unread" in rooms and "2 @mentions" in rooms
    assert "@mention" not in (await alice.get("/")).text
    await bob.get(f"/rooms/{room_id}")
    assert "@mention" not in (await bob.get("/")).text
    await alice.say(room_id, "one more, @bob")
    assert "1 @mention" in (await bob.get("/")).text
