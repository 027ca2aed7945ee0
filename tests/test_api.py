"""The JSON API under /api/v1 (issue 24): bearer tokens only, the pages' rules for who may
read and write where, JSON errors, the browser's message path."""

import json

import pytest

from chat.models import message_pages
from chat.search import PAGE_SIZE
from tests.api_support import app_client, make_bot, token_for

ROOM = "/api/v1/rooms/{room}"
MESSAGE = ROOM + "/messages/1"

# Every route: (method, path, JSON body, whether it writes).
ROUTES = [
    ("GET", "/api/v1/rooms", None, False),
    ("GET", ROOM, None, False),
    ("POST", ROOM + "/join", None, True),
    ("GET", ROOM + "/messages", None, False),
    ("POST", ROOM + "/messages", {"body": "hello"}, True),
    ("GET", MESSAGE, None, False),
    ("PATCH", MESSAGE, {"body": "changed"}, True),
    ("POST", MESSAGE + "/reactions", {"emoji": "👍"}, True),
    ("DELETE", MESSAGE, None, True),
    ("GET", "/api/v1/search?q=hello", None, False),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _, _ in ROUTES]


@pytest.fixture
async def room_with_bot(people, app):
    """alice's private room "ops" with message 1 by the bot `echo`, a member."""
    alice = await people("alice")
    room = await alice.create_room("ops", "private")
    await make_bot(app, "echo", rooms=[room], owner="alice")
    async with app_client(app, await token_for(app, "echo")) as echo:
        assert (await echo.post(f"/api/v1/rooms/{room}/messages", json={"body": "hi"})).is_success
    return room


async def call(client, method: str, path: str, body, room: int):
    return await client.request(method, path.format(room=room), json=body)


@pytest.mark.parametrize(("method", "path", "body", "writes"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_refuses_a_request_without_a_token(
    app, room_with_bot, method, path, body, writes
):
    async with app_client(app, None) as client:
        response = await call(client, method, path, body, room_with_bot)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body", "writes"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_refuses_a_revoked_token(app, room_with_bot, method, path, body, writes):
    secret = await token_for(app, "echo", revoked=True)
    async with app_client(app, secret) as client:
        response = await call(client, method, path, body, room_with_bot)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(("method", "path", "body", "writes"), ROUTES, ids=ROUTE_IDS)
async def test_a_read_only_token_may_read_and_not_write(
    app, room_with_bot, method, path, body, writes
):
    secret = await token_for(app, "echo", write=False)
    async with app_client(app, secret) as client:
        response = await call(client, method, path, body, room_with_bot)
    if writes:
        assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    else:
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "body", "writes"), ROUTES, ids=ROUTE_IDS)
async def test_a_member_bot_may_use_every_route(app, room_with_bot, method, path, body, writes):
    secret = await token_for(app, "echo")
    async with app_client(app, secret) as client:
        response = await call(client, method, path, body, room_with_bot)
    assert response.status_code in (200, 201), response.text
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("method", "path", "body", "writes"), ROUTES, ids=ROUTE_IDS)
async def test_a_private_room_is_404_to_a_non_member_bot_and_to_a_token_of_other_rooms(
    app, people, room_with_bot, method, path, body, writes
):
    await make_bot(app, "outsider")
    bob = await people("bob")
    elsewhere = await bob.create_room("elsewhere")
    await make_bot(app, "scoped", rooms=[room_with_bot, elsewhere])
    for secret in (
        await token_for(app, "outsider"),
        await token_for(app, "scoped", rooms=[elsewhere]),
    ):
        async with app_client(app, secret) as client:
            response = await call(client, method, path, body, room_with_bot)
        if path == "/api/v1/rooms" or path.startswith("/api/v1/search"):
            assert response.status_code == 200
            assert "ops" not in response.text and "hi" not in response.text
        else:
            assert response.status_code == 404, response.text
            assert response.json() == {
                "error": "not_found",
                "detail": "There is no such room, or this token may not see it.",
            }


async def test_an_id_of_thousands_of_digits_in_the_path_is_a_json_404_not_a_500(app, room_with_bot):
    huge = "9" * 5000  # past what Python converts to an int
    async with app_client(app, await token_for(app, "echo")) as echo:
        for method, path, body, _ in ROUTES:
            if "{room}" in path:
                response = await call(echo, method, path, body, huge)
                assert response.status_code == 404, (method, path, response.status_code)
                assert response.json()["error"] == "not_found"
        response = await echo.get(f"/api/v1/rooms/{room_with_bot}/messages/{huge}")
        assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_a_non_member_bot_reads_a_public_room_and_must_join_to_post(app, people):
    alice = await people("alice")
    room = await alice.create_room("lobby")
    await alice.say(room, "welcome")
    await make_bot(app, "visitor")
    async with app_client(app, await token_for(app, "visitor")) as bot:
        page = await bot.get(f"/api/v1/rooms/{room}/messages")
        assert [m["body"] for m in page.json()["messages"]] == ["welcome"]
        refused = await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": "hi"})
        assert refused.status_code == 403 and refused.json()["error"] == "not_a_member"
        assert (await bot.post(f"/api/v1/rooms/{room}/join")).status_code == 201
        posted = await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": "hi"})
        assert posted.status_code == 201


async def test_a_post_answers_201_with_its_seq_and_permalink_and_reaches_the_browser_stream(
    app, people
):
    """In-process: the stream is the browser's own (the message path is shared)."""
    alice = await people("alice")
    room = await alice.create_room("ops")
    await alice.say(room, "first")
    await make_bot(app, "echo", rooms=[room])
    async with app_client(app, await token_for(app, "echo")) as bot:
        posted = await bot.post(
            f"/api/v1/rooms/{room}/messages", json={"body": "**hello** @alice", "reply_to": 1}
        )
    assert posted.status_code == 201, posted.text
    message = posted.json()["message"]
    assert message["seq"] == 2 and message["reply_to"] == 1 and message["author"] == "echo"
    assert message["author_is_bot"] and "<strong>hello</strong>" in message["html"]
    assert 'class="mention"' in message["html"]
    assert message["permalink"] == f"http://testserver/rooms/{room}?at=2#message-2"
    assert posted.headers["location"] == message["permalink"]
    page = await alice.get(f"/rooms/{room}")
    assert "hello" in page.text and 'data-author="echo"' in page.text


async def test_pages_of_messages_are_keyset_by_seq(app, people):
    alice = await people("alice")
    room = await alice.create_room("ops")
    await make_bot(app, "echo", rooms=[room])
    async with app_client(app, await token_for(app, "echo")) as bot:
        for number in range(1, 6):
            await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": f"m{number}"})

        async def seqs(query: str) -> tuple[list[int], bool]:
            page = (await bot.get(f"/api/v1/rooms/{room}/messages?{query}")).json()
            return [m["seq"] for m in page["messages"]], page["has_more"]

        assert await seqs("limit=2") == ([4, 5], True)
        assert await seqs("limit=2&before=4") == ([2, 3], True)
        assert await seqs("limit=2&before=2") == ([1], False)
        assert await seqs("limit=2&after=1") == ([2, 3], True)
        assert await seqs("limit=2&after=3") == ([4, 5], False)
        assert await seqs("limit=2&after=1&before=5") == ([2, 3], True)
        assert await seqs("limit=3&after=1&before=5") == ([2, 3, 4], False)
        for bad in ("before=x", "limit=0", "limit=101", "after=99999999999"):
            response = await bot.get(f"/api/v1/rooms/{room}/messages?{bad}")
            assert response.status_code == 400 and "error" in response.json(), bad


async def test_edit_delete_and_react_follow_the_pages_rules(app, people):
    alice = await people("alice")
    room = await alice.create_room("ops")
    await alice.say(room, "alice's")
    await make_bot(app, "echo", rooms=[room])
    async with app_client(app, await token_for(app, "echo")) as bot:
        base = f"/api/v1/rooms/{room}/messages"
        await bot.post(base, json={"body": "mine"})
        edited = await bot.patch(f"{base}/2", json={"body": "mine, edited"})
        assert edited.status_code == 200 and edited.json()["message"]["edited_at"]
        assert (await bot.patch(f"{base}/1", json={"body": "no"})).status_code == 403
        assert (await bot.delete(f"{base}/1")).status_code == 403
        reacted = await bot.post(f"{base}/1/reactions", json={"emoji": "👍"})
        assert reacted.json()["reacted"] is True
        assert reacted.json()["message"]["reactions"] == [{"emoji": "👍", "users": ["echo"]}]
        again = await bot.post(f"{base}/1/reactions", json={"emoji": "👍"})
        assert again.json()["reacted"] is False and again.json()["message"]["reactions"] == []
        assert (await bot.post(f"{base}/1/reactions", json={"emoji": "x"})).status_code == 422
        deleted = await bot.delete(f"{base}/2")
        assert deleted.json()["message"]["deleted"] is True
        assert (await bot.delete(f"{base}/2")).status_code == 404
        assert (await bot.patch(f"{base}/99", json={"body": "x"})).status_code == 404


async def test_search_uses_the_query_language_and_the_tokens_rooms(app, people):
    alice = await people("alice")
    ops = await alice.create_room("ops")
    other = await alice.create_room("other")
    await alice.say(ops, "deploy finished")
    await alice.say(other, "deploy started")
    await make_bot(app, "echo", rooms=[ops, other])
    async with app_client(app, await token_for(app, "echo", rooms=[ops])) as bot:
        found = (await bot.get("/api/v1/search", params={"q": "deploy"})).json()
        assert [hit["room"] for hit in found["results"]] == ["ops"]
        assert "<mark>deploy</mark>" in found["results"][0]["snippet"]
        scoped = (await bot.get("/api/v1/search", params={"q": "deploy in:ops"})).json()
        assert len(scoped["results"]) == 1
        assert (await bot.get("/api/v1/search", params={"q": "x" * 501})).status_code == 400


async def test_a_room_limited_tokens_search_finds_its_rooms_matches_under_newer_ones_elsewhere(
    app, people
):
    alice = await people("alice")
    ops, other = await alice.create_room("ops"), await alice.create_room("other")
    await alice.say(ops, "deploy finished")
    for number in range(PAGE_SIZE + 1):  # a whole page of newer matches the token may not see
        await alice.say(other, f"deploy {number}")
    await make_bot(app, "echo", rooms=[ops, other])
    async with app_client(app, await token_for(app, "echo", rooms=[ops])) as bot:
        found = (await bot.get("/api/v1/search", params={"q": "deploy"})).json()
    assert [hit["room"] for hit in found["results"]] == ["ops"]
    assert found["before"] is None


@pytest.mark.parametrize(
    ("headers", "content", "status", "error"),
    [
        ({"content-type": "text/plain"}, b'{"body": "x"}', 415, "unsupported_media_type"),
        ({"content-type": "application/json"}, b"{not json", 400, "invalid_json"),
        ({"content-type": "application/json"}, b"[1, 2]", 400, "invalid_json"),
        ({"content-type": "application/json"}, b"\xff\xfe", 400, "invalid_json"),
        ({"content-type": "application/json"}, b'{"body": 5}', 422, "invalid"),
        ({"content-type": "application/json"}, b'{"body": "x", "reply_to": true}', 422, "invalid"),
        ({"content-type": "application/json"}, b'{"body": "x", "reply_to": -1}', 422, "invalid"),
        ({"content-type": "application/json"}, b'{"body": "   "}', 422, "invalid_message"),
        ({"content-type": "application/json"}, b'{"body": "\\udc00"}', 422, "invalid"),
        (
            {"content-type": "application/json"},
            b'{"body": "x", "reply_to": 7}',
            422,
            "invalid_message",
        ),
        ({"content-type": "application/json"}, b'{"body": "\\u0000"}', 422, "invalid_message"),
        (
            {"content-type": "application/json"},
            json.dumps({"body": "x" * 40_000}).encode(),
            413,
            "too_large",
        ),
        (
            {"content-type": "application/json"},
            json.dumps({"body": "x" * 70_000}).encode(),
            413,
            "too_large",
        ),
    ],
    ids=[
        "not json type",
        "malformed",
        "not an object",
        "not utf-8",
        "body not a string",
        "reply_to a bool",
        "reply_to negative",
        "empty",
        "lone surrogate",
        "reply to nothing",
        "control character",
        "over the API cap",
        "over the form cap",
    ],
)
async def test_bad_bodies_are_json_4xx_and_change_nothing(
    app, people, headers, content, status, error
):
    alice = await people("alice")
    room = await alice.create_room("ops")
    await make_bot(app, "echo", rooms=[room])
    async with app_client(app, await token_for(app, "echo")) as bot:
        response = await bot.post(
            f"/api/v1/rooms/{room}/messages", headers=headers, content=content
        )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    async with app.state.db() as db:
        assert await message_pages.page(db, room) == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer chat_" + "a" * 42, "chat_" + "a" * 43],
)
async def test_a_malformed_authorization_header_is_401(app, room_with_bot, authorization):
    async with app_client(app, None) as client:
        response = await client.get("/api/v1/rooms", headers={"Authorization": authorization})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_a_request_with_cookies_and_a_token_is_refused(app, room_with_bot):
    secret = await token_for(app, "echo")
    async with app_client(app, secret) as client:
        response = await client.get("/api/v1/rooms", headers={"Cookie": "chat_session=abc"})
    assert response.status_code == 400 and response.json()["error"] == "cookies_refused"


async def test_a_browser_session_cannot_use_the_api(people):
    alice = await people("alice")
    response = await alice.client.get("/api/v1/rooms")
    assert response.status_code == 400 and response.json()["error"] == "cookies_refused"


async def test_unknown_api_paths_and_methods_answer_json(app, room_with_bot):
    async with app_client(app, await token_for(app, "echo")) as client:
        missing = await client.get("/api/v1/nothing")
        wrong = await client.put(f"/api/v1/rooms/{room_with_bot}/messages")
        huge = await client.get("/api/v1/rooms/9999999999")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert huge.status_code == 404 and huge.json()["error"] == "not_found"


async def test_the_rooms_list_names_the_users_rooms_within_the_tokens_scope(app, people):
    alice = await people("alice")
    ops = await alice.create_room("ops")
    other = await alice.create_room("other")
    await make_bot(app, "echo", rooms=[ops, other])
    async with app_client(app, await token_for(app, "echo")) as bot:
        names = [room["name"] for room in (await bot.get("/api/v1/rooms")).json()["rooms"]]
    assert names == ["ops", "other"]
    async with app_client(app, await token_for(app, "echo", rooms=[other])) as bot:
        rooms = (await bot.get("/api/v1/rooms")).json()["rooms"]
    assert [room["id"] for room in rooms] == [other]


async def test_a_personal_token_acts_as_its_person(app, people):
    alice = await people("alice")
    room = await alice.create_room("ops", "private")
    async with app_client(app, await token_for(app, "alice")) as script:
        posted = await script.post(f"/api/v1/rooms/{room}/messages", json={"body": "from cron"})
    assert posted.status_code == 201 and posted.json()["message"]["author"] == "alice"
    assert posted.json()["message"]["author_is_bot"] is False


@pytest.mark.parametrize("limit", ["post", "api"])
async def test_rate_limits_count_per_token(app, people, limit):
    from dataclasses import replace

    from chat.rate_limits import RateLimits

    settings = replace(app.state.settings, limit_post="2 per minute", limit_api="3 per minute")
    app.state.rate_limits = RateLimits(settings)
    alice = await people("alice")
    room = await alice.create_room("ops")
    await make_bot(app, "echo", rooms=[room])
    first, second = await token_for(app, "echo"), await token_for(app, "echo")
    async with app_client(app, first) as one, app_client(app, second) as other:
        url = f"/api/v1/rooms/{room}/messages"
        for _ in range(2 if limit == "post" else 3):
            if limit == "post":
                assert (await one.post(url, json={"body": "x"})).status_code == 201
            else:
                assert (await one.get(url)).status_code == 200
        refused = await (one.post(url, json={"body": "x"}) if limit == "post" else one.get(url))
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) > 0
        assert (await other.post(url, json={"body": "x"})).status_code == 201


async def test_a_tokens_last_use_is_written(app, room_with_bot):
    from chat.models import ApiToken

    secret = await token_for(app, "echo")
    async with app_client(app, secret) as client:
        await client.get("/api/v1/rooms")
    async with app.state.db() as db:
        assert (await ApiToken.by_secret(db, secret)).last_used_at is not None
