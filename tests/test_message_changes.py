"""Editing, deleting and reacting to messages: permissions, live `edit`/`delete` events,
and a reconnecting client getting the current state of the messages it already has."""

import asyncio
import random
import re

import pytest

from tests.support import open_stream


async def room_with(visitors, *names):
    people = [await visitors(name) for name in names]
    room_id = await people[0].create_room("general", "public")
    for person in people[1:]:
        await person.join(room_id)
    return room_id, people


# Events about messages; presence and typing frames come on the same stream between them.
HISTORY_EVENTS = {"message", "edit", "delete"}


async def next_about_messages(tab):
    while (event := await tab.next()) is not None and event.event not in HISTORY_EVENTS:
        pass
    return event


def message_path(room_id, seq):
    return f"/rooms/{room_id}/messages/{seq}"


async def edit(person, room_id, seq, body, **kwargs):
    return await person.post(message_path(room_id, seq), {"body": body}, **kwargs)


async def test_author_edits_and_every_tab_sees_the_new_text_marked_edited(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await alice.say(room_id, "helo wrold")
    url = f"/rooms/{room_id}/events?after=1"
    async with open_stream(bob.client, url) as tab:
        reply = await edit(alice, room_id, 1, "hello **world**", htmx=True)
        assert reply.status_code == 200
        assert "<strong>world</strong>" in reply.text and "(edited)" in reply.text
        event = await tab.next_of("edit")
        assert event.cursor == (1, 1)
        assert 'id="message-1"' in event.data
        assert "<strong>world</strong>" in event.data and "(edited)" in event.data
        # The room's next message carries the change count in its cursor.
        await bob.say(room_id, "next")
        [message] = await tab.messages(1)
        assert message.id == "2.1"
    page = await bob.get(f"/rooms/{room_id}")
    assert "hello <strong>world</strong>" in page.text and "helo wrold" not in page.text


async def test_only_the_author_may_edit_and_a_refused_edit_changes_nothing(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await alice.say(room_id, "original")
    assert (await edit(bob, room_id, 1, "hijacked")).status_code == 403
    assert (await edit(alice, room_id, 1, "   ")).status_code == 400
    assert (await edit(alice, room_id, 1, "x" * 4001)).status_code == 400
    assert (await edit(alice, room_id, 2, "no such message")).status_code == 404
    assert (await edit(alice, room_id, 10**30, "huge seq")).status_code == 404
    page = await alice.get(f"/rooms/{room_id}")
    assert "original" in page.text and "(edited)" not in page.text
    # Nothing was counted as a change either: the next one is number 1.
    async with open_stream(alice.client, f"/rooms/{room_id}/events?after=1") as tab:
        await edit(alice, room_id, 1, "fixed")
        assert (await tab.next_of("edit")).cursor == (1, 1)


async def test_a_private_rooms_messages_cannot_be_changed_by_outsiders(visitors):
    alice, mallory = await visitors("alice"), await visitors("mallory")
    room_id = await alice.create_room("secret", "private")
    await alice.say(room_id, "private words")
    for path, form in [
        (message_path(room_id, 1), {"body": "owned"}),
        (message_path(room_id, 1) + "/delete", {}),
        (message_path(room_id, 1) + "/reactions", {"emoji": "👍"}),
    ]:
        assert (await mallory.post(path, form)).status_code == 404
    assert (await mallory.get(message_path(room_id, 1) + "/edit")).status_code == 404
    assert "private words" in (await alice.get(f"/rooms/{room_id}")).text


async def test_deleting_replaces_the_message_for_everyone(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await alice.say(room_id, "regrettable")
    async with open_stream(bob.client, f"/rooms/{room_id}/events?after=1") as tab:
        assert (await bob.post(message_path(room_id, 1) + "/delete", {})).status_code == 403
        reply = await alice.post(message_path(room_id, 1) + "/delete", {})
        assert reply.status_code == 303
        assert reply.headers["location"].endswith(f"/rooms/{room_id}?at=1#message-1")
        event = await tab.next_of("delete")
        assert "Message deleted" in event.data and "regrettable" not in event.data
        assert 'data-seq="1"' in event.data
    page = (await bob.get(f"/rooms/{room_id}")).text
    assert "regrettable" not in page and "Message deleted" in page
    # Gone is gone: it can be neither edited nor deleted again.
    assert (await edit(alice, room_id, 1, "undo")).status_code == 404
    assert (await alice.post(message_path(room_id, 1) + "/delete", {})).status_code == 404


async def test_room_owner_may_delete_anyones_message_but_not_edit_it(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await bob.say(room_id, "spam spam spam")
    assert (await edit(alice, room_id, 1, "not yours")).status_code == 403
    assert (await alice.post(message_path(room_id, 1) + "/delete", {})).status_code == 303
    assert "spam spam spam" not in (await bob.get(f"/rooms/{room_id}")).text


async def test_search_follows_edits_and_deletes(visitors):
    room_id, (alice,) = await room_with(visitors, "alice")
    await alice.say(room_id, "the quokka smiles")
    await alice.say(room_id, "a wombat digs")

    async def found(word):
        return "message-" in (await alice.get("/search", params={"q": word})).text

    assert await found("quokka") and await found("wombat")
    await edit(alice, room_id, 1, "the numbat smiles")
    await alice.post(message_path(room_id, 2) + "/delete", {})
    assert not await found("quokka") and await found("numbat")
    assert not await found("wombat")
    # Operators alone match no deleted message either.
    results = (await alice.get("/search", params={"q": "from:alice"})).text
    assert "?at=1#message-1" in results and "?at=2#message-2" not in results


async def test_reactions_toggle_live_and_name_who_reacted(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    await alice.say(room_id, "ship it?")
    react = message_path(room_id, 1) + "/reactions"
    async with open_stream(alice.client, f"/rooms/{room_id}/events?after=1") as tab:
        await bob.post(react, {"emoji": "👍"})
        await alice.post(react, {"emoji": "👍"})
        await bob.post(react, {"emoji": "🦄"})
        events = [await tab.next_of("edit") for _ in range(3)]
        assert [e.cursor.change for e in events] == [1, 2, 3]
        last = events[-1].data
        assert re.search(r'aria-label="👍 2: bob, alice\. Toggle your reaction"', last)
        assert 'data-by="bob alice"' in last and 'aria-label="🦄 1: bob.' in last
        await bob.post(react, {"emoji": "👍"})  # toggles bob's off again
        assert 'aria-label="👍 1: alice.' in (await tab.next_of("edit")).data
    for bad in ["", "hello", "<script>", "👍" * 20, "\x00"]:
        assert (await bob.post(react, {"emoji": bad})).status_code == 400, bad


async def test_reconnecting_client_gets_edits_and_deletes_it_missed(visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    for n in range(1, 5):
        await alice.say(room_id, f"message {n}")
    async with open_stream(bob.client, f"/rooms/{room_id}/events?after=4") as tab:
        await edit(alice, room_id, 2, "message 2, edited once")
        await tab.next_of("edit")
        resume = tab.last_id
    assert resume == "4.1"
    # While bob is away: another edit, a delete, a reaction and a new message.
    await edit(alice, room_id, 2, "message 2, edited twice")
    await alice.post(message_path(room_id, 3) + "/delete", {})
    await alice.post(message_path(room_id, 1) + "/reactions", {"emoji": "🎉"})
    await alice.say(room_id, "message 5")
    async with open_stream(
        bob.client, f"/rooms/{room_id}/events", {"Last-Event-ID": resume}
    ) as tab:
        got = [await next_about_messages(tab) for _ in range(4)]
    assert [(e.event, e.id) for e in got] == [
        ("edit", "4.2"),
        ("delete", "4.3"),
        ("edit", "4.4"),
        ("message", "5.4"),
    ]
    assert "edited twice" in got[0].data and 'data-seq="2"' in got[0].data
    assert 'data-seq="3"' in got[1].data and 'data-seq="1"' in got[2].data


async def test_interleaved_posts_and_changes_reach_every_client_as_they_stand(visitors):
    """Posts, edits, deletes and reactions race each other while a reader keeps
    dropping its connection and resuming from the id it last saw: in the end it shows
    every message exactly once, each exactly as the database has it."""
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    rng = random.Random(7)
    shown: dict[int, str] = {}
    received_messages: list[int] = []

    async def read(stop: asyncio.Event):
        resume = "0"
        while not stop.is_set():
            async with open_stream(
                bob.client, f"/rooms/{room_id}/events", {"Last-Event-ID": resume}
            ) as tab:
                for _ in range(rng.randint(3, 12)):
                    try:
                        event = await tab.next(timeout=0.5)
                    except TimeoutError:
                        break
                    if event is None:
                        break
                    if event.event not in HISTORY_EVENTS:  # presence, typing
                        continue
                    seq = int(re.search(r'data-seq="(\d+)"', event.data)[1])
                    if event.event == "message":
                        received_messages.append(seq)
                    shown[seq] = event.data
                resume = tab.last_id or resume

    async def write(person, count):
        for n in range(count):
            roll = rng.random()
            posted = max(received_messages, default=0)
            if roll < 0.5 or posted < 3:
                await person.say(room_id, f"{person.username} {n}")
            else:
                seq = rng.randint(1, posted)
                if roll < 0.7:
                    await edit(person, room_id, seq, f"edited {n}")
                elif roll < 0.8:
                    await person.post(message_path(room_id, seq) + "/delete", {})
                else:
                    await person.post(message_path(room_id, seq) + "/reactions", {"emoji": "👍"})

    stop = asyncio.Event()
    reader = asyncio.create_task(read(stop))
    await asyncio.gather(write(alice, 40), write(bob, 40))
    await asyncio.sleep(1.0)
    stop.set()
    await reader
    # A last resume picks up whatever the final connection had not read yet.
    async with open_stream(bob.client, f"/rooms/{room_id}/events?after=0") as tab:
        final = {}
        while (event := await tab.next(timeout=2.0)) is not None:
            if event.event not in HISTORY_EVENTS:
                continue
            seq = int(re.search(r'data-seq="(\d+)"', event.data)[1])
            final[seq] = event.data
            if len(final) == len(shown) and event.event == "message" and seq == max(shown):
                break
    assert received_messages == sorted(set(received_messages)), "a message came twice or late"
    assert sorted(final) == list(range(1, len(final) + 1))
    assert sorted(shown) == sorted(final)
    for seq, html in final.items():
        assert normalised(shown[seq]) == normalised(html), seq


def normalised(partial):
    """A message partial without the per-request CSRF field."""
    return re.sub(r'<input type="hidden" name="csrf_token"[^>]*>', "", partial)


@pytest.mark.parametrize("kind", ["edit", "delete"])
async def test_changes_work_without_javascript(visitors, kind):
    room_id, (alice,) = await room_with(visitors, "alice")
    await alice.say(room_id, "typo")
    if kind == "edit":
        form = await alice.get(message_path(room_id, 1) + "/edit")
        assert form.status_code == 200
        assert '<textarea id="edit-body-1" name="body"' in form.text
        assert ">typo</textarea>" in form.text
        reply = await edit(alice, room_id, 1, "fixed")
    else:
        reply = await alice.post(message_path(room_id, 1) + "/delete", {})
    assert reply.status_code == 303
    page = await alice.get(reply.headers["location"])
    assert ("fixed" if kind == "edit" else "Message deleted") in page.text


async def test_the_menu_offers_each_reader_only_what_they_may_do(visitors):
    room_id, (alice, bob, carol) = await room_with(visitors, "alice", "bob", "carol")
    await bob.say(room_id, "bob's words")
    menus = {
        person.username: (
            await person.get(message_path(room_id, 1) + "/actions", headers={"HX-Request": "true"})
        ).text
        for person in (alice, bob, carol)
    }
    assert ">Edit</a>" in menus["bob"] and ">Delete</button>" in menus["bob"]
    assert ">Edit</a>" not in menus["alice"] and ">Delete</button>" in menus["alice"]  # owner
    assert ">Edit</a>" not in menus["carol"] and ">Delete</button>" not in menus["carol"]
    for menu in menus.values():
        assert 'aria-label="React with thumbs up"' in menu and "<html" not in menu
    page = await carol.get(message_path(room_id, 1) + "/actions")
    assert "<html" in page.text and "words</p>" in page.text
    # The partial everyone is sent names no reader's rights.
    await alice.say(room_id, "x")
    assert "Delete" not in (await alice.get(f"/rooms/{room_id}")).text
