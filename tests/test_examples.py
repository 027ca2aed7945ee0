"""The README's example bot (examples/echo_bot.py) runs against a live server and answers."""

import asyncio
import contextlib
import json
import subprocess
import sys

import pytest

from chat.db import create_engine, create_sessionmaker
from tests.api_support import api_client, make_bot, token_for
from tests.support import ROOT, open_stream

ECHO_BOT = ROOT / "examples" / "echo_bot.py"


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_the_example_bot_is_about_twenty_lines_of_code():
    code = [
        line
        for line in ECHO_BOT.read_text().splitlines()
        if line.strip() and not line.startswith(("import ", '"""'))
    ]
    assert len(code) <= 20


async def test_the_echo_bot_answers_an_echo_in_the_room(visitors, live_server, server_env):
    alice = await visitors("alice")
    room = await alice.create_room("ops")
    await alice.say(room, "@echo from before the bot started")  # not answered: old
    engine = create_engine(server_env["CHAT_DATABASE_URL"])
    sessions = create_sessionmaker(engine)
    await make_bot(sessions, "echo", rooms=[room])
    bot_token, alice_token = await token_for(sessions, "echo"), await token_for(sessions, "alice")
    await engine.dispose()
    bot = subprocess.Popen(  # noqa: ASYNC220 (it runs beside the test until killed)
        [sys.executable, str(ECHO_BOT), live_server.url, bot_token, str(room)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with (
            api_client(live_server.url, alice_token, timeout=30) as client,
            open_stream(client, f"/api/v1/rooms/{room}/events?after=1") as stream,
        ):
            # The bot connects when it likes: ask again until it has answered once.
            replies: asyncio.Queue = asyncio.Queue()

            async def read() -> None:
                while True:
                    data = json.loads((await stream.next_of("message", timeout=60)).data)
                    if data["author"] == "echo":
                        await replies.put(data)

            reader = asyncio.create_task(read())
            try:
                for attempt in range(100):
                    posted = await client.post(
                        f"/api/v1/rooms/{room}/messages", json={"body": f"@echo hello {attempt}"}
                    )
                    with contextlib.suppress(TimeoutError):
                        answered = await asyncio.wait_for(replies.get(), 0.5)
                        break
                else:
                    bot.kill()
                    raise AssertionError(bot.communicate()[1].decode())
            finally:
                reader.cancel()
            assert answered["body"].startswith("hello ") and answered["author_is_bot"]
            assert answered["reply_to"] in range(2, posted.json()["message"]["seq"] + 1)
    finally:
        bot.kill()
        bot.wait()
