import asyncio
import sqlite3

import pytest
from sqlalchemy import func, select
from starlette.requests import Request

import chat.wal_checkpoints
from chat.models import Message, Room
from chat.settings import Settings


async def stored(app):
    async with app.state.db() as db:
        return list(await db.scalars(select(Message).order_by(Message.room_id, Message.seq)))


async def test_posting_with_htmx_returns_a_fresh_composer(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.say(room_id, "  hello *world*  ")
    assert response.text.lstrip().startswith('<form id="composer"')
    assert "<textarea" in response.text
    [message] = await stored(app)
    assert (message.seq, message.body, message.html) == (
        1,
        "hello *world*",
        "<p>hello <em>world</em></p>\n",
    )


async def test_each_poster_gets_the_kept_composer_with_their_own_csrf_token(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    answers = [await person.say(room_id, "hi") for person in (alice, bob, alice, bob)]
    for person, answer in zip((alice, bob, alice, bob), answers, strict=True):
        assert answer.text.count(person.csrf_token) == 1
        assert f'value="{person.csrf_token}"' in answer.text
    assert answers[0].text == answers[2].text != answers[1].text == answers[3].text
    # Byte for byte what rendering it for that request gives.
    async with app.state.db() as db:
        room = await db.get(Room, room_id)
    scope = {
        "type": "http",
        "app": app,
        "method": "POST",
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "path": f"/rooms/{room_id}/messages",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "state": {"csrf_token": bob.csrf_token},
    }
    rendered = app.state.templates.TemplateResponse(
        Request(scope), "messages/_composer.html", {"room": room, "error": "", "body": ""}
    )
    assert answers[3].text == rendered.body.decode()


async def test_sqlite_checkpoints_its_log_apart_from_the_commits(people, app, backend):
    checkpoints = app.state.wal_checkpoints
    if backend != "sqlite":
        assert checkpoints is None
        return
    engine = app.state.db.kw["bind"]
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(20):
        await alice.say(room_id, f"message {n}")
    busy, logged, copied = await checkpoints.checkpoint()
    assert busy == 0 and logged > 0 and copied == logged


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_starts_its_log_over_though_its_checkpoint_could_not_copy_all_of_it(
    people, app, monkeypatch
):
    """Under a steady stream of posts, the checkpoint beside the app's connection never
    copies the whole log: commits land while it runs (here, a reader's snapshot holds it
    back in the same way). The round's second checkpoint, on the app's own connection,
    still lets the log start over instead of growing for ever."""
    checkpoints = app.state.wal_checkpoints
    monkeypatch.setattr(chat.wal_checkpoints, "LOG_LIMIT_FRAMES", 0)
    alice = await people("alice")
    room_id = await alice.create_room()
    reader = sqlite3.connect(checkpoints._path, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()
    for n in range(5):
        await alice.say(room_id, f"message {n}")
    beside = checkpoints._checkpoint

    def held_back_by_the_reader():
        outcome = beside()
        reader.rollback()
        return outcome

    monkeypatch.setattr(checkpoints, "_checkpoint", held_back_by_the_reader)
    _, logged_so_far, copied = await checkpoints.checkpoint()
    reader.close()
    assert copied < logged_so_far
    monkeypatch.setattr(checkpoints, "_checkpoint", beside)
    await alice.say(room_id, "after the checkpoint")
    _, logged, _ = await checkpoints.checkpoint()
    # The log holds that one post, not everything written since the start.
    assert 0 < logged < logged_so_far / 2


async def test_posting_without_javascript_redirects_back_to_the_room(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.post(f"/rooms/{room_id}/messages", {"body": "hi"})
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"/rooms/{room_id}#message-1")
    page = await alice.get(f"/rooms/{room_id}")
    assert 'data-seq="1" data-author="alice"' in page.text


async def test_message_partial_escapes_the_body(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, '<script>alert(1)</script><img src=x onerror="alert(2)">')
    page = await alice.get(f"/rooms/{room_id}")
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


async def test_empty_huge_and_control_character_bodies_are_400_and_store_nothing(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for body, message in [
        ("", "Type a message"),
        ("   \n  ", "Type a message"),
        ("x" * 4001, "at most 4,000 characters"),
        ("nul\x00byte", "control characters"),
    ]:
        for htmx in (True, False):
            response = await alice.post(f"/rooms/{room_id}/messages", {"body": body}, htmx=htmx)
            assert response.status_code == 400, (body[:10], htmx)
            assert message in response.text
    assert await stored(app) == []
    await alice.say(room_id, "x" * 4000)
    assert len(await stored(app)) == 1


async def test_a_refused_message_keeps_the_typed_text_in_the_composer(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.post(f"/rooms/{room_id}/messages", {"body": "y" * 4001}, htmx=True)
    assert ">" + "y" * 4001 + "</textarea>" in response.text


async def test_invalid_utf8_is_400_and_stores_nothing(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.client.post(
        f"/rooms/{room_id}/messages",
        content=f"csrf_token={alice.csrf_token}&body=%FF%FEbad".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "not valid UTF-8" in response.text
    assert await stored(app) == []


async def test_non_members_cannot_post_to_a_public_room(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    response = await bob.post(f"/rooms/{room_id}/messages", {"body": "hi"}, htmx=True)
    assert response.status_code == 403
    assert await stored(app) == []


async def test_concurrent_posts_get_contiguous_unique_seqs(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await asyncio.gather(
        *(
            person.say(room_id, f"{person.username} {n}")
            for n in range(25)
            for person in (alice, bob)
        )
    )
    messages = await stored(app)
    assert [m.seq for m in messages] == list(range(1, 51))
    async with app.state.db() as db:
        assert await db.scalar(select(Room.last_seq).where(Room.id == room_id)) == 50
        assert await db.scalar(select(func.count(func.distinct(Message.body)))) == 50


@pytest.mark.bulk
async def test_history_pages_backwards_by_seq_with_a_working_older_link(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(1, 121):
        await alice.say(room_id, f"message number {n}")
    page = await alice.get(f"/rooms/{room_id}")
    assert page.text.count("data-seq=") == 50
    assert 'data-seq="71"' in page.text and 'data-seq="120"' in page.text
    assert f'href="http://testserver/rooms/{room_id}?before=71"' in page.text
    fragment = await alice.get(
        f"/rooms/{room_id}/messages?before=71", headers={"HX-Request": "true"}
    )
    assert fragment.text.count("data-seq=") == 50
    assert 'data-seq="21"' in fragment.text and 'data-seq="70"' in fragment.text
    assert fragment.text.index('data-seq="21"') < fragment.text.index('data-seq="70"')
    assert "?before=21" in fragment.text
    last = await alice.get(f"/rooms/{room_id}/messages?before=21")
    assert last.text.count("data-seq=") == 20
    assert "before=" not in last.text  # nothing older than seq 1
    no_js = await alice.get(f"/rooms/{room_id}?before=71")
    assert 'data-seq="21"' in no_js.text and 'data-seq="71"' not in no_js.text
    assert "Jump to the latest messages" in no_js.text


async def test_bad_before_values_are_400(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    for value in ("abc", "-1", "1e9", "99999999999999999999999"):
        response = await alice.get(f"/rooms/{room_id}/messages?before={value}")
        assert response.status_code == 400, value


def test_default_message_limit_is_4000_characters():
    assert Settings().max_message_chars == 4000
