"""CHAT_FAST_PATHS=0 serves the plain paths: the hot statements in an ordinary
AsyncSession (chat/hot_statements.py), every template rendered as an ordinary render
(chat/html_cache.py) and every event stream by sse-starlette's EventSourceResponse
(chat/streams.py). The fast paths are optimisations only: the answers must be the same
bytes either way. Two apps, one fast and one plain, serve the same database here."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from chat.app import create_app
from chat.settings import Settings
from tests.conftest import BASE_URL
from tests.support import LiveServer, Person, client_for
from tests.test_attachments import png, send
from tests.test_message_changes import edit, message_path
from tests.test_replies import reply


@pytest.fixture
async def fast_and_plain(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[tuple[Starlette, Starlette]]:
    # Small pages: a few messages make several, with older and newer links.
    fast = create_app(dataclasses.replace(settings, fast_paths=True, page_size=4))
    plain = create_app(dataclasses.replace(settings, fast_paths=False, page_size=4))
    async with fast.router.lifespan_context(fast), plain.router.lifespan_context(plain):
        yield fast, plain


def person(app: Starlette, username: str, cookies: httpx.Cookies | None = None) -> Person:
    return Person(
        client_for(BASE_URL, transport=httpx.ASGITransport(app=app), cookies=cookies), username
    )


def twin(of: Person, app: Starlette) -> Person:
    """The same browser (cookies, CSRF token) talking to another app."""
    other = person(app, of.username, of.client.cookies)
    other.csrf_token = of.csrf_token
    return other


async def test_pages_and_fragments_are_the_same_bytes_on_the_plain_paths(fast_and_plain):
    fast, plain = fast_and_plain
    alice, bob = await person(fast, "alice").signup(), await person(fast, "bob").signup()
    room_id = await alice.create_room()
    await bob.join(room_id)
    await send(bob, room_id, [("plan.png", png(), "image/png"), ("notes.txt", b"hi", "text/plain")])
    await reply(alice, room_id, 1, "**nice** <b>plan</b> @bob, see https://example.com")
    for who, emoji in ((bob, "👍"), (alice, "🎉"), (bob, "🎉")):
        await who.post(message_path(room_id, 2) + "/reactions", {"emoji": emoji})
    await edit(alice, room_id, 2, "**nicer** @bob")
    await bob.say(room_id, "gone soon")
    await bob.post(message_path(room_id, 3) + "/delete", {})
    for seq in range(4, 12):  # more than a page: history has older and newer links
        await alice.say(room_id, f"message {seq}")

    htmx = {"HX-Request": "true"}
    for viewer in (alice, bob):
        plain_viewer = twin(viewer, plain)
        for url, headers in [
            (f"/rooms/{room_id}", {}),
            (f"/rooms/{room_id}?at=2", {}),
            (f"/rooms/{room_id}/messages?before=6", htmx),
            (f"/rooms/{room_id}/messages?after=1", htmx),
            (message_path(room_id, 2), htmx),
            (message_path(room_id, 2) + "/actions", htmx),
            ("/", {}),
        ]:
            await viewer.client.get(url, headers=headers)  # marks read: settles the page
            fast_answer = await viewer.client.get(url, headers=headers)
            plain_answer = await plain_viewer.client.get(url, headers=headers)
            assert fast_answer.status_code == plain_answer.status_code == 200, url
            assert fast_answer.content == plain_answer.content, url
        await plain_viewer.client.aclose()

    # A post's reply: the empty composer, cached on the fast path.
    plain_alice = twin(alice, plain)
    fast_reply = await alice.say(room_id, "from the fast app")
    plain_reply = await plain_alice.say(room_id, "from the plain app")
    assert fast_reply.status_code == plain_reply.status_code == 200
    assert fast_reply.content == plain_reply.content
    assert b'id="composer"' in fast_reply.content
    for client in (alice.client, bob.client, plain_alice.client):
        await client.aclose()


@pytest.fixture
def fast_and_plain_servers(
    server_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """`chat serve` twice on one migrated database: CHAT_FAST_PATHS=1, then 0."""
    url = server_env["CHAT_DATABASE_URL"]
    if url.startswith("sqlite"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), make_url(url).database)
    servers = []
    try:
        for flag in ("1", "0"):
            env = {**server_env, "CHAT_FAST_PATHS": flag}
            servers.append(LiveServer(env, log_path=tmp_path / f"fast-{flag}.log").start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


async def test_a_stream_is_the_same_bytes_on_the_plain_path(fast_and_plain_servers):
    """sse-starlette's EventSourceResponse (plain) and RoomStreamResponse (fast) send the
    same status, headers and frames: here a room's history replayed from SQL."""
    fast, plain = fast_and_plain_servers
    async with client_for(fast.url, timeout=30) as client:
        alice = await Person(client, "alice").signup()
        room_id = await alice.create_room()
        for text in ("one", "**two**", "three"):
            await alice.say(room_id, text)
        await edit(alice, room_id, 2, "two, edited")
        cookies = client.cookies

    answers = []
    for server in (fast, plain):
        async with (
            client_for(server.url, timeout=30, cookies=cookies) as client,
            client.stream("GET", f"/rooms/{room_id}/events?after=0") as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if body.count(b"event: message\n") == 3:
                    break
            headers = [
                (name, value)
                for name, value in response.headers.multi_items()
                if name not in {"date", "x-request-id"}  # different for every answer
            ]
            answers.append((response.status_code, headers, body))
    assert answers[0][2].startswith(b"retry: 1000\n\n")
    assert answers[0] == answers[1]
