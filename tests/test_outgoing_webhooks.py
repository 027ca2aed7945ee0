"""Outgoing webhooks (issue 24): signed POSTs to a bot's URL on @mention or in a watched
room, retried with backoff, stored so a restart sends them, answered with a reply; never in
the way of posting. The receiver is a loopback server of the test's own."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest
from sqlalchemy import select

from chat.app import create_app
from chat.models import Bot, DeliveryState, Room, WebhookDelivery, message_pages
from chat.webhooks import UnsafeTarget, check_target, pinned, sign, verify_signature
from tests.api_support import make_bot


@pytest.fixture
def settings(settings):
    """Loopback receivers allowed; retries and timeouts short enough for a test."""
    return replace(
        settings,
        webhook_allow_private=True,
        webhook_backoff_seconds=0.05,
        webhook_timeout_seconds=1.0,
        public_url="http://chat.example",
    )


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that answers each request with `answer(number)`:
    (status, extra headers, body), or waits on `release` first when `hang` is set."""

    answer: Callable[[int], tuple[int, dict[str, str], bytes]] = lambda n: (200, {}, b"")
    hang: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            name.lower(): value
            for name, _, value in (line.partition(": ") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        self.arrived.set()
        if self.hang:
            await self.release.wait()
        status, extra, content = self.answer(len(self.requests))
        extra_lines = "".join(f"{name}: {value}\r\n" for name, value in extra.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(content)}\r\n{extra_lines}"
            "Connection: close\r\n\r\n".encode()
            + content
        )
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> "Receiver":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        self._server.close()


async def outgoing_bot(app, room: int, url: str, *, watch: bool = False) -> Bot:
    await make_bot(app, "echo", rooms=[room])
    async with app.state.db() as db:
        bot = await Bot.get(db, (await db.scalar(select(Bot.user_id))))
        await bot.set_outgoing(db, url, [room] if watch else [])
    await app.state.webhooks.refresh()
    return bot


async def deliveries(app) -> list[WebhookDelivery]:
    async with app.state.db() as db:
        return list(await db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for `check` to hold (the sender runs in the background)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (the database is what changes)
            await asyncio.sleep(0.02)


async def delivered(app, count: int = 1) -> list[WebhookDelivery]:
    async def done() -> bool:
        rows = await deliveries(app)
        finished = (DeliveryState.DELIVERED, DeliveryState.FAILED)
        return len(rows) >= count and all(row.state in finished for row in rows)

    await until(done)
    return await deliveries(app)


async def test_a_mention_is_posted_signed_and_the_answer_is_the_bots_reply(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver(lambda n: (200, {}, json.dumps({"text": "pong"}).encode())) as receiver:
        bot = await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo ping")
        [row] = await delivered(app)
    assert row.state == DeliveryState.DELIVERED and row.attempts == 1 and row.last_status == 200
    [(headers, body)] = receiver.requests
    assert verify_signature(bot.signing_secret, headers["x-chat-signature"], body)
    event = json.loads(body)
    assert event["event"] == "mention" and event["bot"] == "echo"
    assert event["room"] == {"id": room, "name": "ops", "url": f"http://chat.example/rooms/{room}"}
    assert event["message"]["body"] == "@echo ping" and event["message"]["author"] == "alice"
    assert event["message"]["permalink"] == f"http://chat.example/rooms/{room}?at=1#message-1"
    assert event["delivery"] == row.id

    async def replied() -> bool:
        async with app.state.db() as db:
            return len(await message_pages.page(db, room)) == 2

    await until(replied)
    async with app.state.db() as db:
        reply = (await message_pages.page(db, room))[-1]
    assert reply.body == "pong" and reply.author.username == "echo" and reply.reply_to_seq == 1
    assert len(receiver.requests) == 1  # the bot's own reply triggers nothing


async def test_a_watched_room_sends_every_message_and_others_send_none(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    other = await alice.create_room("other")
    async with Receiver() as receiver:
        await outgoing_bot(app, room, receiver.url, watch=True)
        await alice.say(other, "not watched")
        await alice.say(room, "no mention here")
        [row] = await delivered(app)
    assert json.loads(row.payload)["event"] == "message" and row.room_id == room


async def test_a_500_is_retried_with_backoff_until_it_is_taken(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver(lambda n: (500, {}, b"oops") if n < 3 else (200, {}, b"")) as receiver:
        await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo once")
        [row] = await delivered(app)
    assert row.state == DeliveryState.DELIVERED and row.attempts == 3
    bodies = [body for _, body in receiver.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same event each time


async def test_a_delivery_fails_after_its_attempts_and_the_bot_page_logs_it(people, app):
    app.state.settings = replace(app.state.settings, webhook_attempts=2, bot_creators="everyone")
    app.state.webhooks.settings = app.state.settings
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver(lambda n: (302, {"Location": "http://169.254.169.254/"}, b"")) as receiver:
        await make_bot(app, "echo", rooms=[room], owner="alice")
        async with app.state.db() as db:
            bot = await Bot.get(db, await db.scalar(select(Bot.user_id)))
            await bot.set_outgoing(db, receiver.url, [])
        await app.state.webhooks.refresh()
        await alice.say(room, "@echo hello")
        [row] = await delivered(app)
    assert row.state == DeliveryState.FAILED and row.attempts == 2
    assert row.last_status == 302 and len(receiver.requests) == 2  # the redirect not followed
    page = await alice.get(f"/account/bots/{bot.user_id}")
    assert "failed" in page.text and "answered 302" in page.text


async def test_a_hanging_receiver_does_not_slow_posting(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver(hang=True) as receiver:
        await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo first")
        await receiver.arrived.wait()  # the first delivery is now hanging
        # These return while it hangs: a post that waited for it would never return.
        for n in range(3):
            await alice.say(room, f"@echo more {n}")
        async with app.state.db() as db:
            assert len(await message_pages.page(db, room)) == 4
        receiver.release.set()
        rows = await delivered(app, 4)
    assert len(rows) == 4


async def test_a_huge_answer_is_a_delivery_but_no_reply(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    huge = json.dumps({"text": "x" * 200_000}).encode()
    async with Receiver(lambda n: (200, {}, huge)) as receiver:
        await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo big")
        [row] = await delivered(app)
    assert row.state == DeliveryState.DELIVERED
    async with app.state.db() as db:
        assert len(await message_pages.page(db, room)) == 1


async def test_pending_deliveries_survive_a_restart(people, app, settings):
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver(lambda n: (503, {}, b"") if n == 1 else (200, {}, b"")) as receiver:
        await outgoing_bot(app, room, receiver.url)
        # The first attempt fails; the retry waits long enough to outlive this app.
        app.state.webhooks.settings = replace(settings, webhook_backoff_seconds=3600)
        await alice.say(room, "@echo survive")

        async def failed_once() -> bool:
            rows = await deliveries(app)
            return bool(rows) and rows[0].attempts == 1

        await until(failed_once)
        async with app.state.db() as db:  # due now, as if the hour had passed
            row = (await deliveries(app))[0]
            await db.execute(
                WebhookDelivery.__table__.update()
                .where(WebhookDelivery.id == row.id)
                .values(due_at=row.created_at)
            )
            await db.commit()
        again = create_app(settings)
        async with again.router.lifespan_context(again):
            [row] = await delivered(again)
    assert row.state == DeliveryState.DELIVERED and row.attempts == 2
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pass@example.com/hook",
        "javascript:alert(1)",
        "http:///nohost",
    ],
)
async def test_hostile_targets_are_refused(url):
    with pytest.raises(UnsafeTarget):
        await check_target(url, allow_private=False)


async def test_the_bot_page_refuses_a_private_url_unless_allowed(people, app):
    app.state.settings = replace(
        app.state.settings, webhook_allow_private=False, bot_creators="everyone"
    )
    alice = await people("alice")
    room = await alice.create_room("ops")
    response = await alice.post("/account/bots", {"name": "echo"})
    bot_id = int(response.headers["location"].split("/account/bots/")[1].split("?")[0])
    await alice.post(f"/account/bots/{bot_id}/rooms", {"room_id": str(room)})
    url = f"/account/bots/{bot_id}/outgoing"
    refused = await alice.post(url, {"url": "http://127.0.0.1/hook"})
    assert refused.status_code == 400 and "private" in refused.text
    assert (await alice.post(url, {"url": "http://x", "watch": "999"})).status_code == 400
    app.state.settings = replace(app.state.settings, webhook_allow_private=True)
    saved = await alice.post(url, {"url": "http://127.0.0.1/hook", "watch": str(room)})
    assert saved.status_code == 303
    async with app.state.db() as db:
        bot = await Bot.get(db, bot_id)
    assert bot.outgoing_url == "http://127.0.0.1/hook" and bot.watched_rooms == {room}


async def test_a_private_address_is_refused_again_when_sending(people, app):
    """A URL saved while allowed (or a name that now resolves privately) is checked anew."""
    alice = await people("alice")
    room = await alice.create_room("ops")
    app.state.settings = replace(app.state.settings, webhook_attempts=1)
    app.state.webhooks.settings = replace(app.state.settings, webhook_allow_private=False)
    async with Receiver() as receiver:
        await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo hi")
        [row] = await delivered(app)
    assert row.state == DeliveryState.FAILED and "private" in row.last_error
    assert receiver.requests == []


def test_a_signature_is_refused_when_forged_tampered_or_replayed_late():
    body = b'{"event": "mention"}'
    header = sign("secret", body, 1_000_000)
    assert verify_signature("secret", header, body, now=1_000_010)
    assert not verify_signature("other", header, body, now=1_000_010)
    assert not verify_signature("secret", header, body + b" ", now=1_000_010)
    assert not verify_signature("secret", header, body, now=1_000_000 + 301)  # replayed
    assert not verify_signature("secret", "t=abc,v1=00", body, now=1_000_010)
    assert not verify_signature("secret", "", body)


async def test_a_room_the_bot_left_sends_nothing(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver() as receiver:
        bot = await outgoing_bot(app, room, receiver.url, watch=True)
        async with app.state.db() as db:
            await (await db.get(Room, room)).remove_member(db, bot.user_id)
        await alice.say(room, "anyone?")
        await asyncio.sleep(0.2)
    assert await deliveries(app) == [] and receiver.requests == []


async def test_finished_deliveries_are_forgotten_after_a_week(people, app):
    from datetime import timedelta

    from chat.models import utcnow

    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver() as receiver:
        await outgoing_bot(app, room, receiver.url)
        await alice.say(room, "@echo one")
        [row] = await delivered(app)
    async with app.state.db() as db:
        assert await WebhookDelivery.prune(db, utcnow() - timedelta(days=7)) == 0
        assert await WebhookDelivery.prune(db, row.finished_at + timedelta(seconds=1)) == 1
    assert await deliveries(app) == []


@pytest.mark.parametrize(
    ("url", "address", "sent_to", "host", "sni"),
    [
        (
            "http://hooks.example.com/in",
            "93.184.215.14",
            "http://93.184.215.14/in",
            "hooks.example.com",
            None,
        ),
        (
            "https://hooks.example.com:8443/in?a=1",
            "2606:2800:21f::1",
            "https://[2606:2800:21f::1]:8443/in?a=1",
            "hooks.example.com:8443",
            "hooks.example.com",
        ),
    ],
)
def test_a_delivery_goes_to_the_address_that_was_checked(url, address, sent_to, host, sni):
    """Not to what the name resolves to a moment later (DNS rebinding)."""
    pinned_url, headers, extensions = pinned(url, address)
    assert pinned_url == sent_to and headers == {"Host": host}
    assert extensions.get("sni_hostname") == sni


async def test_a_pinned_delivery_keeps_the_hosts_name_in_its_host_header(people, app, monkeypatch):
    """End to end: `hooks.test` resolves (for the check only, and to loopback counted as
    public for once); the request goes to that address and still names the host."""
    import socket

    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def resolve(host, port, **kwargs):
        if host != "hooks.test":  # the database's and Redis's own connections
            return await real(host, port, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    monkeypatch.setattr("chat.webhooks._special", lambda address: False)
    app.state.webhooks.settings = replace(app.state.settings, webhook_allow_private=False)
    alice = await people("alice")
    room = await alice.create_room("ops")
    async with Receiver() as receiver:
        await outgoing_bot(app, room, f"http://hooks.test:{receiver.port}/hook")
        await alice.say(room, "@echo pinned")
        [row] = await delivered(app)
    assert row.state == DeliveryState.DELIVERED
    [(headers, _)] = receiver.requests
    assert headers["host"] == f"hooks.test:{receiver.port}"
