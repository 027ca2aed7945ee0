"""Several workers on PostgreSQL + Redis: `chat serve --workers`; posting while Redis is down."""

import asyncio
import os
import subprocess
import sys
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import func, select

from chat.models import Message
from tests.support import ROOT, LiveServer, Person, client_for, open_stream


def test_more_than_one_worker_with_the_in_process_broker_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "chat", "serve", "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "CHAT_BROKER_URL": "memory://", "CHAT_SECRET_KEY": "k" * 40},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "needs a shared broker" in result.stderr


@pytest.fixture
def backend():
    return "postgres"


@pytest.fixture
def two_workers(server_env, tmp_path):
    server = LiveServer(server_env, log_path=tmp_path / "server.log", workers=2).start()
    yield server
    server.stop()


async def test_streams_on_every_worker_of_chat_serve_workers_2_get_every_message(two_workers):
    async with client_for(two_workers.url, timeout=30) as health:
        assert (await health.get("/healthz")).json() == {
            "status": "ok",
            "database": "ok",
            "broker": "ok",
        }
    # Each connection lands on whichever worker accepts it first; with eight of them,
    # both workers hold streams (and with memory:// this could not pass at all).
    async with AsyncExitStack() as stack:
        alice, bob = [
            await Person(
                await stack.enter_async_context(client_for(two_workers.url, timeout=30)), name
            ).signup()
            for name in ("alice", "bob")
        ]
        room_id = await alice.create_room()
        await bob.join(room_id)
        streams = []
        for _ in range(8):
            tab = client_for(two_workers.url, timeout=30, cookies=bob.client.cookies)
            await stack.enter_async_context(tab)
            streams.append(
                await stack.enter_async_context(open_stream(tab, f"/rooms/{room_id}/events"))
            )
        for n in range(30):
            await (alice if n % 2 else bob).say(room_id, f"message {n}")
        for stream in streams:
            assert [e.seq for e in await stream.messages(30)] == list(range(1, 31))


@pytest.fixture
def broker_env(private_redis):
    return {"CHAT_BROKER_URL": private_redis.url, "CHAT_BROKER_PREFIX": "chat-test:"}


async def test_a_post_while_redis_is_down_is_a_clear_503_and_stores_nothing(
    people, app, private_redis
):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "before")
    private_redis.stop()
    while app.state.broker.is_up:  # noqa: ASYNC110 (the broker notices on its own)
        await asyncio.sleep(0.02)
    response = await alice.post(f"/rooms/{room_id}/messages", {"body": "during"}, htmx=True)
    assert response.status_code == 503
    assert "nothing was sent" in response.text
    assert (await alice.get("/healthz")).status_code == 503

    private_redis.start()
    while not app.state.broker.is_up:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await alice.say(room_id, "after")
    async with app.state.db() as db:
        bodies = (await db.scalars(select(Message.body).order_by(Message.seq))).all()
        assert bodies == ["before", "after"]
        assert await db.scalar(select(func.max(Message.seq))) == 2
