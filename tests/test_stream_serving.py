"""How event streams are served (chat/streams.py): one task per stream, one heartbeat and
one shutdown watch for the whole process, the client's disconnect noticed without a task.

What a client sees of its stream (order, replay, cut-offs, presence) is tested in
tests/test_streams.py, tests/test_fanout.py, tests/test_slow_subscribers.py and
tests/test_presence.py, which all run through this.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import anyio

from chat.streams import HEARTBEAT, OpenStreams, RoomStreamResponse, watch_disconnect
from tests.support import open_stream
from tests.test_fanout import FakeServer
from tests.test_streams import room_with


def open_response(streams: OpenStreams) -> tuple[RoomStreamResponse, FakeServer]:
    """A response as `serve` leaves it while its stream is open, writing to a fake server."""
    server = FakeServer()
    response = RoomStreamResponse.__new__(RoomStreamResponse)
    response._send = server.send
    response.stream = SimpleNamespace(user_id=1)
    response._scope = anyio.CancelScope()
    response.wrote = False
    response.stalled_since = None
    streams.add(response)
    return response, server


async def test_the_heartbeat_writes_only_to_streams_that_wrote_nothing_since_it_last_looked():
    streams = OpenStreams(presence=None, heartbeat_seconds=15, send_timeout=30)
    busy, busy_server = open_response(streams)
    _, idle_server = open_response(streams)

    busy.send_now(b"data: a message\n\n")
    await streams.beat()
    assert busy_server.written == [b"data: a message\n\n"]
    assert idle_server.written == [HEARTBEAT]

    # The heartbeat itself counts as a write: an idle stream gets one every other beat.
    await streams.beat()
    await streams.beat()
    assert idle_server.written == [HEARTBEAT, HEARTBEAT]
    assert busy_server.written == [b"data: a message\n\n", HEARTBEAT]


async def test_a_client_that_refuses_heartbeats_for_the_send_timeout_is_cut_off():
    streams = OpenStreams(presence=None, heartbeat_seconds=15, send_timeout=0.05)
    stalled, server = open_response(streams)
    server.paused = True

    await streams.beat()
    assert not stalled._scope.cancel_called
    await asyncio.sleep(0.06)
    await streams.beat()
    assert stalled._scope.cancel_called
    assert server.written == []


async def test_a_stream_opened_while_the_server_shuts_down_ends_at_once():
    streams = OpenStreams(presence=None, heartbeat_seconds=15, send_timeout=30)
    streams._shutting_down = True
    response, _ = open_response(streams)
    assert response._scope.cancel_called


async def test_the_clients_disconnect_is_noticed_without_a_task():
    lost = asyncio.Event()
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await lost.wait()
        return {"type": "http.disconnect"}

    noticed: list[bool] = []
    tasks = len(asyncio.all_tasks())
    watch_disconnect(receive, lambda: noticed.append(True))
    assert len(asyncio.all_tasks()) == tasks
    await asyncio.sleep(0)
    assert noticed == []

    lost.set()
    await asyncio.sleep(0)
    assert noticed == [True]


async def test_a_watch_that_was_stopped_notices_nothing_and_leaves_no_waiter():
    lost = asyncio.Event()

    async def receive() -> dict:
        await lost.wait()
        return {"type": "http.disconnect"}

    noticed: list[bool] = []
    stop = watch_disconnect(receive, lambda: noticed.append(True))
    stop()
    assert not lost._waiters
    lost.set()
    await asyncio.sleep(0)
    assert noticed == []


async def test_a_server_asked_to_stop_ends_its_open_streams_itself(visitors, live_server):
    room_id, (alice,) = await room_with(visitors, "alice")
    async with open_stream(alice.client, f"/rooms/{room_id}/events") as tab:
        await alice.say(room_id, "hello")
        assert (await tab.next_of("message")).event == "message"
        stopping = asyncio.create_task(asyncio.to_thread(live_server.stop))
        assert await tab.closed()
        await stopping
    log = live_server.log_path.read_text()
    # Otherwise uvicorn cancels it after its graceful-shutdown timeout and says so.
    assert "timeout graceful shutdown exceeded" not in log


async def test_a_watch_stopped_while_its_disconnect_is_due_notices_nothing_and_raises_nothing():
    lost = asyncio.Event()

    async def receive() -> dict:
        await lost.wait()
        return {"type": "http.disconnect"}

    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    noticed: list[bool] = []
    stop = watch_disconnect(receive, lambda: noticed.append(True))
    lost.set()  # the client went: the watch's next step is due...
    stop()  # ...when the stream ends for another reason
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert noticed == []
    assert errors == []
