"""Replies: a message quotes an escaped excerpt of another of its room, with a permalink."""

import re
from contextlib import contextmanager

from sqlalchemy import event, func, select

from chat.models import QUOTE_CHARS, Message
from tests.support import open_stream


def article(html: str, seq: int) -> str:
    match = re.search(rf'<article[^>]* data-seq="{seq}".*?</article>', html, re.S)
    assert match, f"no message {seq}"
    return match.group(0)


def quote(html: str, seq: int) -> str:
    match = re.search(r'<blockquote class="reply-quote".*?</blockquote>', article(html, seq), re.S)
    assert match, f"message {seq} quotes nothing"
    return match.group(0)


async def reply(person, room_id: int, reply_to: int | str, body: str, *, htmx: bool = True):
    return await person.post(
        f"/rooms/{room_id}/messages", {"body": body, "reply_to": str(reply_to)}, htmx=htmx
    )


async def stored_count(app, room_id: int) -> int:
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).where(Message.room_id == room_id))


async def test_a_reply_quotes_the_original_escaped_with_its_author_and_a_permalink(people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.say(room_id, "<script>alert(1)</script> **bold** plan")
    response = await reply(alice, room_id, 1, "Sounds good")
    assert response.status_code == 200

    page = (await alice.get(f"/rooms/{room_id}")).text
    quoted = quote(page, 2)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; **bold** plan" in quoted
    assert "<script>" not in quoted and "<strong>" not in quoted
    assert f'href="/rooms/{room_id}?at=1#message-1">bob wrote</a>' in quoted
    assert "reply-quote" not in article(page, 1)


async def test_a_long_original_is_quoted_by_its_first_characters_on_one_line(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "first line\n\n" + "word " * 100)
    await reply(alice, room_id, 1, "re")
    quoted = quote((await alice.get(f"/rooms/{room_id}")).text, 2)
    excerpt = re.search(r'<span class="reply-excerpt">(.*?)</span>', quoted).group(1)
    assert excerpt.startswith("first line word word")
    assert excerpt.endswith("…") and len(excerpt) <= QUOTE_CHARS


async def test_a_reply_to_another_rooms_message_is_refused_and_nothing_is_stored(app, people):
    alice = await people("alice")
    room_id = await alice.create_room("here")
    other_id = await alice.create_room("elsewhere")
    await alice.say(other_id, "over there")
    await alice.say(room_id, "over here")
    refused = await reply(alice, room_id, 2, "answer")  # seq 2 exists only in the other room
    assert refused.status_code == 400
    assert "only reply to a message of this room" in refused.text
    for reply_to in (2, 99, "x", "-1"):
        for htmx in (True, False):
            response = await reply(alice, room_id, reply_to, "answer", htmx=htmx)
            assert response.status_code == 400, (reply_to, htmx)
    assert await stored_count(app, room_id) == 1


async def test_a_reply_whose_original_was_deleted_quotes_message_deleted(app, people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.say(room_id, "a secret I regret")
    await reply(alice, room_id, 1, "noted")
    # Seen once, so the reply's HTML is cached (chat/html_cache.py) when the original goes.
    assert "a secret I regret" in quote((await alice.get(f"/rooms/{room_id}")).text, 2)
    assert (await bob.post(f"/rooms/{room_id}/messages/1/delete", {})).status_code == 303
    quoted = quote((await alice.get(f"/rooms/{room_id}")).text, 2)
    assert "message deleted" in quoted and "secret" not in quoted


async def test_replying_without_javascript_uses_the_reply_link_and_a_plain_form(app, people):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.say(room_id, "Lunch at <noon>?")
    page = (await alice.get(f"/rooms/{room_id}")).text
    assert f'href="/rooms/{room_id}?reply=1#composer"' in article(page, 1)
    assert re.search(r"data-reply-bar hidden", page)

    page = (await alice.get(f"/rooms/{room_id}?reply=1")).text
    bar = re.search(r"<div class=\"reply-bar\".*?</div>", page, re.S).group(0)
    assert " hidden" not in bar.split(">", 1)[0]
    assert '<input type="hidden" name="reply_to" value="1">' in bar
    assert "@bob" in bar and "Lunch at &lt;noon&gt;?" in bar
    assert f'/rooms/{room_id}#composer" data-cancel-reply>Cancel reply</a>' in bar

    response = await reply(alice, room_id, 1, "Yes", htmx=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith("#message-2")
    assert "bob wrote" in quote((await alice.get(f"/rooms/{room_id}")).text, 2)


async def test_a_failed_reply_keeps_its_text_and_its_reply_bar(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "original")
    response = await reply(alice, room_id, 1, "   ")
    assert response.status_code == 400
    assert '<input type="hidden" name="reply_to" value="1">' in response.text


async def test_the_quote_is_in_the_live_stream_frame(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.say(room_id, "<b>original</b> idea")
    async with open_stream(bob.client, f"/rooms/{room_id}/events?after=1") as stream:
        await reply(alice, room_id, 1, "agreed")
        (frame,) = await stream.messages(1)
    assert frame.seq == 2
    assert 'class="reply-quote"' in frame.data
    assert "&lt;b&gt;original&lt;/b&gt; idea" in frame.data and "<b>" not in frame.data
    assert "?at=1#message-1" in frame.data


@contextmanager
def counting_queries(app):
    engine = app.state.db.kw["bind"].sync_engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_a_page_of_replies_is_read_without_a_query_per_message(app, people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "one")
    await reply(alice, room_id, 1, "reply")
    with counting_queries(app) as few:
        await alice.get(f"/rooms/{room_id}")
    for n in range(20):
        await reply(alice, room_id, n + 1, f"reply {n}")
    with counting_queries(app) as many:
        page = (await alice.get(f"/rooms/{room_id}")).text
    assert page.count('class="reply-quote"') == 21
    assert len(many) == len(few), many
