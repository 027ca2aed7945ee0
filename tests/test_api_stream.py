"""The API's live stream (issue 24): SSE with JSON payloads, the browser stream's cursors
and its exactly-once replay, against real servers."""

import json

import pytest

from chat.db import create_engine, create_sessionmaker
from chat.models import ApiToken, User
from tests.api_support import api_client, make_bot, token_for
from tests.support import LiveServer, client_for, open_stream


@pytest.fixture
async def live_db(server_env, live_server):
    """The live server's database, to make bots and tokens in."""
    engine = create_engine(server_env["CHAT_DATABASE_URL"])
    yield create_sessionmaker(engine)
    await engine.dispose()


async def ops_with_echo(visitors, live_db, visibility="private"):
    alice = await visitors("alice")
    room = await alice.create_room("ops", visibility)
    await make_bot(live_db, "echo", rooms=[room])
    return alice, room, await token_for(live_db, "echo")


def payloads(events):
    return [(event.event, event.id, json.loads(event.data)) for event in events]


async def test_the_stream_sends_json_messages_edits_and_deletes_with_the_pages_cursors(
    visitors, live_db, live_server
):
    alice, room, secret = await ops_with_echo(visitors, live_db)
    async with (
        api_client(live_server.url, secret, timeout=30) as bot,
        open_stream(bot, f"/api/v1/rooms/{room}/events") as stream,
    ):
        await alice.say(room, "hello @echo")
        [message] = await stream.messages(1)
        data = json.loads(message.data)
        assert message.id == "1" and data["seq"] == 1 and data["author"] == "alice"
        assert data["body"] == "hello @echo" and 'class="mention"' in data["html"]
        assert data["permalink"].endswith(f"/rooms/{room}?at=1#message-1")
        posted = await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": "hi"})
        assert posted.status_code == 201
        [own] = await stream.messages(1)
        assert own.id == "2" and json.loads(own.data)["author"] == "echo"
        await bot.patch(f"/api/v1/rooms/{room}/messages/2", json={"body": "hi!"})
        edit = await stream.next_of("edit")
        assert edit.id == "2.1" and json.loads(edit.data)["body"] == "hi!"
        await bot.delete(f"/api/v1/rooms/{room}/messages/2")
        deleted = await stream.next_of("delete")
        assert deleted.id == "2.2" and json.loads(deleted.data)["deleted"] is True


async def test_the_stream_replays_exactly_the_missed_events_across_a_server_restart(
    visitors, live_db, live_server, server_env, tmp_path
):
    alice, room, secret = await ops_with_echo(visitors, live_db)
    async with (
        api_client(live_server.url, secret, timeout=30) as bot,
        open_stream(bot, f"/api/v1/rooms/{room}/events") as stream,
    ):
        await alice.say(room, "one")
        await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": "two"})
        assert [e.id for e in await stream.messages(2)] == ["1", "2"]
        last_id = stream.last_id
    live_server.kill()
    again = LiveServer(server_env, log_path=tmp_path / "again.log").start()
    try:
        async with api_client(again.url, secret, timeout=30) as bot:
            base = f"/api/v1/rooms/{room}/messages"
            await bot.patch(f"{base}/2", json={"body": "two, edited"})
            await bot.post(base, json={"body": "three"})
            async with open_stream(
                bot, f"/api/v1/rooms/{room}/events", headers={"Last-Event-ID": last_id}
            ) as stream:
                edit = await stream.next()
                message = await stream.next()
                assert (edit.event, edit.id, json.loads(edit.data)["body"]) == (
                    "edit",
                    "2.1",
                    "two, edited",
                )
                assert (message.event, message.id) == ("message", "3.1")
                await bot.post(base, json={"body": "four"})
                live = await stream.next()
                assert (live.event, live.id, json.loads(live.data)["body"]) == (
                    "message",
                    "4.1",
                    "four",
                )
            # ?after= resumes as the header does; the later of the two wins.
            async with open_stream(
                bot, f"/api/v1/rooms/{room}/events?after=3.1", headers={"Last-Event-ID": "1"}
            ) as stream:
                [four] = await stream.messages(1)
                assert four.id == "4.1"
    finally:
        again.stop()


async def test_removing_the_bot_from_the_room_ends_its_stream(visitors, live_db, live_server):
    alice, room, secret = await ops_with_echo(visitors, live_db)
    async with (
        api_client(live_server.url, secret, timeout=30) as bot,
        open_stream(bot, f"/api/v1/rooms/{room}/events") as stream,
    ):
        await alice.say(room, "hello")
        await stream.messages(1)
        await alice.post(f"/rooms/{room}/members/2/remove")  # echo, the second user
        assert await stream.closed()
    async with api_client(live_server.url, secret) as bot:
        assert (await bot.get(f"/api/v1/rooms/{room}/events")).status_code == 404


async def test_a_token_revoked_on_the_bot_page_ends_its_open_stream_at_once(
    visitors, live_server, live_db
):
    alice = await visitors("alice")
    room = await alice.create_room("ops")
    async with live_db() as db:
        await (await User.by_username(db, "alice")).set_admin(db, True)
    await alice.post("/account/bots", {"name": "echo"})
    async with live_db() as db:
        echo = await User.by_username(db, "echo")
    token_page = await alice.post(f"/account/bots/{echo.id}/tokens", {"name": "t"})
    secret = token_page.text.split('id="new-token"')[1].split('value="')[1].split('"')[0]
    async with (
        api_client(live_server.url, secret, timeout=30) as bot,
        open_stream(bot, f"/api/v1/rooms/{room}/events") as stream,
    ):
        await alice.say(room, "hello")
        await stream.messages(1)
        async with live_db() as db:
            token = await ApiToken.by_secret(db, secret)
        await alice.post(f"/account/bots/{echo.id}/tokens/{token.id}/revoke")
        assert await stream.closed()


async def test_the_stream_refuses_what_the_other_routes_refuse(visitors, live_db, live_server):
    _, room, secret = await ops_with_echo(visitors, live_db)
    await make_bot(live_db, "outsider")
    outsider = await token_for(live_db, "outsider")
    async with client_for(live_server.url) as anonymous:
        response = await anonymous.get(f"/api/v1/rooms/{room}/events")
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    async with api_client(live_server.url, outsider) as bot:
        assert (await bot.get(f"/api/v1/rooms/{room}/events")).status_code == 404
    async with api_client(live_server.url, secret) as bot:
        response = await bot.get(f"/api/v1/rooms/{room}/events?after=x")
        assert response.status_code == 400 and response.json()["error"] == "bad_request"
