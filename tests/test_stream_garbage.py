"""A stream that ends is freed by reference counting alone: it leaves no cycle among its
objects and the server's connection for the garbage collector (chat/streams.py,
chat/stream_connection.py, chat/activity.py). With a crowd connected, every full
collection walks all of their open streams, so each ended stream left as a cycle brings
the next pause nearer."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tests.support import Person, client_for
from tests.test_fanout import RawStream
from tests.test_stream_serving import ServedInProcess

# Whose objects must not be left for the collector: the app's, and the server's and
# framework's that a stream holds. (asyncio's own selector transport refers to itself
# and waits for the collector whatever the app does; uvloop's, under `chat serve`, does
# not.)
OURS = ("chat.", "uvicorn.", "starlette.", "sse_starlette.")


async def open_rooms_page_stream(port: int, person: Person) -> RawStream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cookies = "; ".join(f"{k}={v}" for k, v in person.client.cookies.items())
    writer.write(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {cookies}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return RawStream(reader, writer)


def left_for_the_collector() -> list[str]:
    """The types, among OURS, of what a full collection finds unreachable now."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted(
            f"{type(found).__module__}.{type(found).__qualname__}"
            for found in gc.garbage
            if type(found).__module__.startswith(OURS)
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_streams_that_end_are_freed_without_the_garbage_collector(settings, engine):
    async with ServedInProcess(settings) as served:
        base_url = f"http://127.0.0.1:{served.port}"
        async with client_for(base_url) as client:
            alice = await Person(client, "alice").signup()
            room_id = await alice.create_room()
            streams = [
                await RawStream.open(served.port, alice, room_id),
                await open_rooms_page_stream(served.port, alice),
            ]
            for stream in streams:
                await stream.frame_with(b"retry:")
            await alice.say(room_id, "hello")  # the fan-out path and the counts, used
            await streams[0].frame_with(b"hello")
            open_streams = served.app.state.streams
            assert len(open_streams) == 2
            gc.collect()
            gc.disable()
            try:
                responses = [weakref.ref(response) for response in open_streams._open]
                for stream in streams:
                    stream.writer.close()
                # Until the streams' tasks have ended: with Redis, a stream that has
                # left the open ones still tells Redis its user went.
                tasks = served.server.server_state.tasks
                while len(open_streams) or tasks:  # noqa: ASYNC110 (the server's own teardown)
                    await asyncio.sleep(0.01)
                for _ in range(5):  # the connections' callbacks, scheduled as they close
                    await asyncio.sleep(0)
                assert [ref() for ref in responses] == [None, None]
                assert left_for_the_collector() == []
            finally:
                gc.enable()
