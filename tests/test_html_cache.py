"""Cached message HTML (chat/html_cache.py): a page renders the messages it has not cached
from plain rows (message_pages.contents), the stream frames and POST replies from the model.
Both must give the same bytes, or a page and a live tab would show a message apart."""

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from jinja2 import DictLoader, Environment, UndefinedError
from sqlalchemy.orm.attributes import set_committed_value

from chat.hot_statements import run_sync_work
from chat.html_cache import HtmlCache, csrf_field
from chat.models import Message, User, message_pages
from chat.sse import Cursor
from tests.support import PASSWORD, Person
from tests.test_attachments import png, send
from tests.test_message_changes import edit, message_path
from tests.test_replies import reply


async def test_a_message_renders_from_rows_exactly_as_from_the_model(app, people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await send(bob, room_id, [("plan.png", png(), "image/png"), ("notes.txt", b"hi", "text/plain")])
    await reply(alice, room_id, 1, "**nice** <b>plan</b> @bob")  # quotes files alone
    for person, emoji in ((bob, "👍"), (alice, "🎉"), (bob, "🎉")):
        await person.post(message_path(room_id, 2) + "/reactions", {"emoji": emoji})
    assert (await edit(alice, room_id, 2, "**nicer** @bob")).status_code == 303
    await bob.say(room_id, "gone soon")
    await reply(alice, room_id, 3, "to a deleted one")
    assert (await bob.post(message_path(room_id, 3) + "/delete", {})).status_code == 303

    async with app.state.db() as db:
        models = [await Message.find(db, room_id, seq, deleted=True) for seq in range(1, 5)]
    rows = await run_sync_work(
        app.state.db, lambda db: message_pages.contents(db, [m.id for m in models])
    )
    template = app.state.templates.get_template("messages/_content.html")
    assert sorted(row.id for row in rows) == [model.id for model in models]
    for model in models:
        row = next(row for row in rows if row.id == model.id)
        assert row.version == model.version
        paths = app.state.html_cache.paths
        assert template.render(message=row, csrf_field="", url_for=paths) == template.render(
            message=model, csrf_field="", url_for=paths
        )
    quoting_files, quoting_deleted = (next(row for row in rows if row.seq == s) for s in (2, 4))
    assert quoting_files.quote.excerpt == "plan.png, notes.txt"
    assert quoting_files.reaction_groups == [("👍", ["bob"]), ("🎉", ["alice", "bob"])]
    assert quoting_deleted.quote.excerpt == ""


async def test_a_streamed_message_is_the_article_its_room_page_shows(app, people):
    """One partial for the page and the frame: a frame's data is, byte for byte, the
    message's article on the room page of a reader who did not write it."""
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await alice.say(room_id, "hello **there** @bob, see https://example.com")
    await bob.say(room_id, "> quoted\n\n- a\n- b")
    await reply(alice, room_id, 2, "a reply")
    page = (await bob.get(f"/rooms/{room_id}")).text
    frames = [frame async for _, frame in app.state.messages.replay(room_id, Cursor(0))]
    assert len(frames) == 3
    for seq, frame in enumerate(frames, start=1):
        data = "\n".join(
            line.removeprefix("data: ")
            for line in frame.decode().splitlines()
            if line.startswith("data: ")
        )
        article = re.search(
            rf'<article class="message[^"]*" id="message-{seq}".*?</article>', page, re.S
        )
        assert article, seq
        # The page marks bob's own message for him; a frame is for every reader.
        assert data == article.group(0).replace('class="message mine"', 'class="message"')


def member_item(page: str, username: str) -> str:
    match = re.search(rf"<li>\s*<span>{username}</span>.*?</li>", page, re.S)
    assert match, f"{username} is not listed"
    return match.group(0)


async def test_cached_member_items_carry_each_readers_own_csrf_token_and_presence(
    app, people, anonymous
):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    alice_again = Person(anonymous.client, "alice")  # a second browser, its own session
    login = await alice_again.post("/login", {"username": "alice", "password": PASSWORD})
    assert login.status_code == 303
    first = (await alice.get(f"/rooms/{room_id}")).text
    second = (await alice_again.get(f"/rooms/{room_id}")).text
    assert alice.csrf_token != alice_again.csrf_token
    for person, page in ((alice, first), (alice_again, second)):
        remove_bob = member_item(page, "bob")
        assert f'name="csrf_token" value="{person.csrf_token}"' in remove_bob
        assert "Make owner<span" in remove_bob and "Message<span" in remove_bob
        assert "Remove<span" in remove_bob
        assert "Remove<span" not in member_item(page, "alice")  # your own: no actions
    bobs_view = (await bob.get(f"/rooms/{room_id}")).text
    assert "csrf_token" not in member_item(bobs_view, "alice")  # not an owner: no form

    # Presence is part of what an item shows, so a cached item never shows it stale.
    assert ">offline<" in member_item((await bob.get(f"/rooms/{room_id}")).text, "alice")
    async with app.state.db() as db:
        alice_id = (await User.by_username(db, "alice")).id
    async with app.state.presence.connected(alice_id):
        assert ">online<" in member_item((await bob.get(f"/rooms/{room_id}")).text, "alice")


def test_a_cached_item_that_asks_for_the_reader_fails_instead_of_being_shared():
    templates = Environment(
        loader=DictLoader(
            {
                "leaky.html": "<li>{{ request.state.csrf_token }}</li>",
                "messages/_content.html": "",
            }
        ),
        autoescape=True,
    )
    HtmlCache(templates, {})
    reader = SimpleNamespace(
        app=None, base_url="http://chat/", state=SimpleNamespace(csrf_token="secret")
    )
    with pytest.raises(UndefinedError):
        templates.globals["cached_items"]("leaky.html", reader, [{"member": 1}])


async def test_a_message_whose_html_is_dropped_after_the_pages_reads_is_read_again(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "cached, then dropped")
    html_cache = app.state.html_cache

    def read_page(db):
        heads = message_pages.heads(db, room_id)
        return heads, html_cache.read_uncached(db, heads)

    heads, uncached = await run_sync_work(app.state.db, read_page)
    assert uncached == [] or not html_cache.fast  # rendered when it was posted, so cached
    html_cache.versions.clear()  # as if dropped for newer ones meanwhile
    contents = await html_cache.contents(app.state.db, heads, csrf_field(None), uncached)
    assert "cached, then dropped" in contents[heads[0].id]


def fresh_message(number: int, author: User | None, room_id: int = 1, **values) -> Message:
    """A message as MessagePath.post leaves it: its relationships set, never in a session."""
    message = Message(
        id=number,
        room_id=room_id,
        seq=number,
        author_id=author.id if author else None,
        body="text",
        html=values.pop("html", "<p>text</p>\n"),
        created_at=values.pop("created_at", datetime(2026, 12, 7, 20, 1, 2, 345678, tzinfo=UTC)),
        reply_to_seq=None,
        changed=0,
        **values,
    )
    for name, value in (
        ("author", author),
        ("reactions", []),
        ("attachments", []),
        ("reply_to", None),
    ):
        set_committed_value(message, name, value)
    return message


async def test_a_new_messages_content_from_its_stencil_is_the_templates(app):
    html_cache = app.state.html_cache
    authors = [
        User(id=1, username="alice", display_name="", avatar_key=None),
        User(id=2, username="bob", display_name='Bób <b>"&', avatar_key="a1b2c3"),
        User(id=3, username="carol", display_name="Carol", avatar_key=None),
        None,  # a deleted account's message
    ]
    number = 0
    for author in authors:
        for room_id in (1, 12):
            for html, created_at in (
                ("<p>a &amp; b</p>\n", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
                ("", datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
                ('<p><a href="https://example.com">x</a></p>\n', datetime.now(UTC)),
            ):
                number += 1
                message = fresh_message(number, author, room_id, html=html, created_at=created_at)
                stencilled = html_cache.stencils.content(message)
                assert stencilled is not None
                assert stencilled == html_cache._render_content(message, html_cache.versions.marker)
    # Shapes it does not take: the template renders them.
    edited = fresh_message(number + 1, authors[0], edited_at=datetime.now(UTC))
    assert html_cache.stencils.content(edited) is None


@pytest.mark.parametrize(
    ("template", "stencilled"),
    [
        ("{{ message.seq }} {{ message.created_at.isoformat() }} {{ message.html|safe }}", True),
        ("{{ message.seq }} {{ message.created_at.year }}", False),  # a format it does not fill
        ("{{ message.html }}", False),  # escaped
        ("{{ message.body }}", False),  # a value it does not fill at all
        # A test of a value: the two stand-ins fall on either side of this one.
        ("{% if message.seq > 70000000000000000 %}big{% endif %}", False),
    ],
)
def test_a_template_that_uses_a_fresh_messages_values_otherwise_makes_no_stencil(
    template, stencilled
):
    templates = Environment(
        loader=DictLoader({"messages/_content.html": template}), autoescape=True
    )
    html_cache = HtmlCache(templates, {})
    message = fresh_message(1, User(id=1, username="alice", display_name="", avatar_key=None))
    content = html_cache.stencils.content(message)
    assert (content is not None) is stencilled
    if content is not None:
        assert content == html_cache._render_content(message, html_cache.versions.marker)


async def test_a_new_messages_frame_from_its_stencil_is_the_macros(app):
    path, html_cache = app.state.messages, app.state.html_cache
    article = app.state.templates.get_template("messages/_message.html").module.article
    authors = [
        User(id=1, username="alice", display_name="", avatar_key=None),
        User(id=2, username="bob", display_name='Bób <b>"&', avatar_key="a1b2c3"),
        None,
    ]
    for number, author in enumerate(authors, start=1):
        message = fresh_message(number, author, html='<p>x &amp; <a href="/y">y</a></p>\n')
        assert path.render(message) == str(article(message, html_cache.content(message)))
    # The plain path (make test's CHAT_FAST_PATHS=0 run) renders every frame, keeping none.
    kept = 3 if app.state.settings.fast_paths else 0
    assert sum(stencil is not None for stencil in path._articles._stencils.values()) == kept
