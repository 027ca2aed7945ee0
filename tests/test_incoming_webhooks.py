"""Incoming webhooks (issue 24): a room owner's secret URL that posts as a bot of its own."""

import json
import re

import httpx
import pytest

from chat.models import IncomingWebhook, message_pages

HOOK_URL = re.compile(r'id="new-hook-url"[^>]*value="([^"]+)"')


async def make_hook(person, room: int, name: str = "ci-bot") -> str:
    """The webhook's path, as the page shows it once."""
    response = await person.post(f"/rooms/{room}/webhooks", {"name": name})
    assert response.status_code == 200, response.text
    return httpx.URL(HOOK_URL.search(response.text).group(1)).path


def machine(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://testserver", transport=httpx.ASGITransport(app=app))


async def test_a_json_text_posts_to_the_room_as_the_webhooks_bot(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops", "private")
    path = await make_hook(alice, room)
    async with machine(app) as ci:
        response = await ci.post(path, json={"text": "build **42** passed @alice"})
    assert response.status_code == 200, response.text
    assert response.json()["seq"] == 1
    assert response.json()["permalink"].endswith(f"/rooms/{room}?at=1#message-1")
    async with app.state.db() as db:
        [message] = await message_pages.page(db, room)
    assert message.author.username == "ci-bot" and message.author.is_bot
    assert "<strong>42</strong>" in message.html and 'class="mention"' in message.html
    page = await alice.get(f"/rooms/{room}")
    assert 'data-author="ci-bot"' in page.text


async def test_a_slack_form_with_a_payload_field_posts_too(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    path = await make_hook(alice, room)
    async with machine(app) as ci:
        response = await ci.post(path, data={"payload": json.dumps({"text": "deployed"})})
    assert response.status_code == 200
    async with app.state.db() as db:
        assert [m.body for m in await message_pages.page(db, room)] == ["deployed"]


async def test_markup_is_sanitized_as_for_people(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    path = await make_hook(alice, room)
    async with machine(app) as ci:
        await ci.post(path, json={"text": "<script>alert(1)</script> [x](javascript:alert(1))"})
    async with app.state.db() as db:
        [message] = await message_pages.page(db, room)
    assert "<script" not in message.html and "&lt;script&gt;" in message.html
    assert 'href="javascript' not in message.html


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"json": {"body": "x"}}, 422, "invalid"),
        ({"json": {"text": 5}}, 422, "invalid"),
        ({"json": {"text": "  "}}, 422, "invalid_message"),
        ({"json": ["text"]}, 400, "invalid_json"),
        (
            {"content": b"{nope", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
        ),
        ({"data": {"text": "form, not payload"}}, 400, "invalid_json"),
        ({"data": {"payload": "{nope"}}, 400, "invalid_json"),
        (
            {"content": b"text", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {"text": "x" * 40_000}}, 413, "too_large"),
        ({"json": {"text": "x" * 5000}}, 422, "invalid_message"),
    ],
    ids=[
        "no text",
        "text not a string",
        "empty",
        "not an object",
        "malformed",
        "form without payload",
        "payload not json",
        "plain text",
        "over the cap",
        "over the message limit",
    ],
)
async def test_bad_bodies_are_json_4xx_and_post_nothing(people, app, kwargs, status, error):
    alice = await people("alice")
    room = await alice.create_room("ops")
    path = await make_hook(alice, room)
    async with machine(app) as ci:
        response = await ci.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    async with app.state.db() as db:
        assert await message_pages.page(db, room) == []


@pytest.mark.parametrize("secret", ["nope", "chat_" + "a" * 43, "x" * 5000])
async def test_an_unknown_webhook_is_404(app, secret):
    async with machine(app) as ci:
        response = await ci.post(f"/hooks/{secret}", json={"text": "x"})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_a_removed_webhook_posts_nothing(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    path = await make_hook(alice, room)
    async with app.state.db() as db:
        [hook] = await IncomingWebhook.of_room(db, room)
    response = await alice.post(f"/rooms/{room}/webhooks/{hook.id}/remove")
    assert response.status_code == 303
    async with machine(app) as ci:
        assert (await ci.post(path, json={"text": "x"})).status_code == 404


async def test_only_the_rooms_owners_manage_its_webhooks(people):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room = await alice.create_room("ops")
    private = await alice.create_room("secret", "private")
    await bob.join(room)
    assert (await bob.get(f"/rooms/{room}/webhooks")).status_code == 403
    assert (await bob.post(f"/rooms/{room}/webhooks", {"name": "ci"})).status_code == 403
    assert (await carol.get(f"/rooms/{private}/webhooks")).status_code == 404
    assert (await alice.get(f"/rooms/{room}/webhooks")).status_code == 200
    assert (await alice.post(f"/rooms/{room}/webhooks", {"name": "bob"})).status_code == 400


async def test_webhook_posts_are_rate_limited_per_webhook(people, app):
    from dataclasses import replace

    from chat.rate_limits import RateLimits

    app.state.rate_limits = RateLimits(replace(app.state.settings, limit_hook="2 per minute"))
    alice = await people("alice")
    room = await alice.create_room("ops")
    one, two = await make_hook(alice, room, "one"), await make_hook(alice, room, "two")
    async with machine(app) as ci:
        for _ in range(2):
            assert (await ci.post(one, json={"text": "x"})).status_code == 200
        refused = await ci.post(one, json={"text": "x"})
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert (await ci.post(two, json={"text": "x"})).status_code == 200


async def test_the_secret_never_reaches_the_log(people, app, capsys):
    alice = await people("alice")
    room = await alice.create_room("ops")
    path = await make_hook(alice, room)
    async with machine(app) as ci:
        await ci.post(path, json={"text": "x"})
    secret = path.rsplit("/", 1)[1]
    logged = capsys.readouterr().err
    assert '"path": "/hooks/{secret}"' in logged and secret not in logged
