"""Permalinks (`?at=SEQ`) and paging forward through history (`?after=SEQ`)."""

import dataclasses
import re

import pytest

# Each test fills a room with more messages than a person could post in a minute.
pytestmark = pytest.mark.bulk

PAGE = 10
MESSAGES = 35


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, page_size=PAGE)


@pytest.fixture
async def room(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(1, MESSAGES + 1):
        await alice.say(room_id, f"message number {n}")
    return alice, room_id


def seqs(html: str) -> list[int]:
    return [int(seq) for seq in re.findall(r'data-seq="(\d+)"', html)]


def links(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<a class="{css_class}" href="([^"]+)"', html)


@pytest.mark.parametrize(
    ("at", "shown"),
    [(1, range(1, 11)), (17, range(12, 22)), (MESSAGES, range(MESSAGES - 5, MESSAGES + 1))],
    ids=["first", "middle", "last"],
)
async def test_a_permalink_opens_the_room_around_its_message(room, at, shown):
    alice, room_id = room
    page = await alice.get(f"/rooms/{room_id}?at={at}")
    assert page.status_code == 200
    assert seqs(page.text) == list(shown)
    article = rf'<article class="message is-target[^"]*" id="message-{at}"[^>]*>'
    target = re.search(article, page.text)
    assert target and 'tabindex="-1"' in target[0] and "autofocus" in target[0]
    assert page.text.count("is-target") == 1
    older = links(page.text, "older")
    assert older == ([] if at == 1 else [f"http://testserver/rooms/{room_id}?before={shown[0]}"])
    if at == MESSAGES:  # the newest message is in view: live from there on
        assert "sse-connect" in page.text and f"?after={MESSAGES}" in page.text
        assert "jump-latest" not in page.text and "Load newer" not in page.text
    else:
        assert "sse-connect" not in page.text and 'id="composer-body"' not in page.text
        assert links(page.text, "jump-latest") == [f"http://testserver/rooms/{room_id}"]
        assert links(page.text, "newer") == [f"http://testserver/rooms/{room_id}?after={shown[-1]}"]


async def test_every_message_links_to_its_permalink(room):
    alice, room_id = room
    page = await alice.get(f"/rooms/{room_id}")
    assert links(page.text, "permalink")[-1] == f"/rooms/{room_id}?at={MESSAGES}#message-{MESSAGES}"
    assert len(links(page.text, "permalink")) == PAGE


async def test_newer_pages_lead_back_to_the_live_room(room):
    alice, room_id = room
    page = await alice.get(f"/rooms/{room_id}?after=5")
    assert seqs(page.text) == list(range(6, 16))
    fragment = await alice.get(f"/rooms/{room_id}/messages?after=15")
    assert seqs(fragment.text) == list(range(16, 26))
    assert "<html" not in fragment.text and "older" not in fragment.text
    assert links(fragment.text, "newer") == [f"http://testserver/rooms/{room_id}?after=25"]
    last = await alice.get(f"/rooms/{room_id}/messages?after=25")
    assert seqs(last.text) == list(range(26, MESSAGES + 1))
    assert links(last.text, "newer") == [f"http://testserver/rooms/{room_id}"]


async def test_older_fragments_keep_only_their_older_link(room):
    alice, room_id = room
    fragment = await alice.get(f"/rooms/{room_id}/messages?before=15")
    assert seqs(fragment.text) == list(range(5, 15))
    assert links(fragment.text, "older") == [f"http://testserver/rooms/{room_id}?before=5"]
    assert 'class="newer"' not in fragment.text


async def test_a_permalink_past_the_end_shows_the_live_room(room):
    alice, room_id = room
    page = await alice.get(f"/rooms/{room_id}?at=999")
    assert seqs(page.text)[-1] == MESSAGES and "sse-connect" in page.text


async def test_bad_history_parameters_are_400(room):
    alice, room_id = room
    for url in [
        f"/rooms/{room_id}?at=x",
        f"/rooms/{room_id}?after=-1",
        f"/rooms/{room_id}/messages",
        f"/rooms/{room_id}/messages?before=3&after=1",
    ]:
        assert (await alice.get(url)).status_code == 400, url


async def test_a_permalink_into_a_private_room_is_404_for_outsiders(people):
    alice, mallory = await people("alice"), await people("mallory")
    room_id = await alice.create_room("secret", "private")
    await alice.say(room_id, "confidential plans")
    for url in [f"/rooms/{room_id}?at=1", f"/rooms/{room_id}/messages?after=0"]:
        response = await mallory.get(url)
        assert response.status_code == 404 and "confidential" not in response.text
