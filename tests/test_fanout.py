"""The fan-out path: a live frame written to each idle stream by the publishing task.

Unit tests pin down each piece (the broker's `direct` hook, the stream's in-order rule,
the response's non-waiting write); the tests against a real server check what a client
sees. tests/test_slow_subscribers.py covers a client that stops reading.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import select

from bench.protocol import ChunkedDecoder, Event, SSEParser
from chat import sse
from chat.app import create_app
from chat.broker import MemoryBroker, room_channel, user_channel
from chat.message_path import end_session_signal, leave_room_signal, room_state_signal
from chat.models import User
from chat.room_stream import RoomStream
from chat.sse import Cursor
from chat.streams import RoomStreamResponse, fan_out
from chat.subscriptions import SubscriptionOverflow
from tests.support import LiveServer, open_stream
from tests.test_streams import room_with

ROOM = room_channel(1)


async def waiting(subscription) -> asyncio.Task:
    """A consumer parked in `get()`, as a stream's task is between frames."""
    task = asyncio.create_task(subscription.get())
    await asyncio.sleep(0)
    return task


async def test_a_waiting_subscriber_is_handed_payloads_directly_and_in_order():
    broker = MemoryBroker(queue_size=8)
    handed: list[bytes] = []
    async with broker.subscribe(ROOM) as subscription:
        subscription.direct = lambda channel, payload: handed.append(payload) or True
        consumer = await waiting(subscription)
        for n in range(3):
            await broker.publish(ROOM, b"frame %d" % n)
        assert handed == [b"frame 0", b"frame 1", b"frame 2"]
        assert not consumer.done()
        consumer.cancel()


async def test_a_refused_payload_and_all_after_it_are_queued_until_the_consumer_catches_up():
    broker = MemoryBroker(queue_size=8)
    handed: list[bytes] = []

    def direct(channel: str, payload: bytes) -> bool:
        if payload == b"gap":
            return False
        handed.append(payload)
        return True

    async with broker.subscribe(ROOM) as subscription:
        subscription.direct = direct
        consumer = await waiting(subscription)
        for payload in (b"one", b"gap", b"two", b"three"):
            await broker.publish(ROOM, payload)
        # "two" could have been handed over, but would then overtake "gap".
        assert handed == [b"one"]
        assert await consumer == (ROOM, b"gap")
        assert await subscription.get() == (ROOM, b"two")
        assert await subscription.get() == (ROOM, b"three")
        consumer = await waiting(subscription)
        await broker.publish(ROOM, b"four")
        assert handed == [b"one", b"four"]
        consumer.cancel()


async def test_a_failing_direct_delivery_cuts_that_stream_off_and_not_the_publisher():
    broker = MemoryBroker(queue_size=8)
    async with broker.subscribe(ROOM) as broken, broker.subscribe(ROOM) as healthy:
        broken.direct = lambda channel, payload: 1 / 0
        broken_consumer = await waiting(broken)
        await broker.publish(ROOM, b"frame")
        assert await healthy.get() == (ROOM, b"frame")
        with pytest.raises(SubscriptionOverflow):
            await broken_consumer


def frame(kind: str, cursor: Cursor) -> bytes:
    return sse.encode(kind, f"<p>{kind} {cursor}</p>", id=cursor)


def idle_stream(sent: Cursor, *, writes: bool = True) -> tuple[RoomStream, list[bytes]]:
    """A room-1 stream of user 5 that has sent `sent`, writing into a list (or, with
    `writes=False`, to a client whose connection takes nothing more)."""
    stream = RoomStream(None, 1, 5, "session", sent)  # type: ignore[arg-type]
    written: list[bytes] = []
    stream.deliver_now = fan_out(stream, lambda chunk: writes and (written.append(chunk) or True))
    return stream, written


def test_the_next_message_is_written_at_once_and_moves_the_cursor():
    stream, written = idle_stream(Cursor(4, 2))
    next_message = frame("message", Cursor(5, 2))

    assert stream.deliver_now(ROOM, next_message) is True
    assert written == [next_message]
    assert stream.sent == Cursor(5, 2)


def test_a_message_already_sent_is_dropped_without_writing():
    stream, written = idle_stream(Cursor(4, 2))

    assert stream.deliver_now(ROOM, frame("message", Cursor(4, 2))) is True
    assert written == []


@pytest.mark.parametrize(
    "ahead",
    [
        frame("message", Cursor(6, 2)),  # seq 5 is missing
        frame("message", Cursor(5, 3)),  # its post saw change 3, not sent yet
        frame("edit", Cursor(4, 4)),  # change 3 is missing
        frame("edit", Cursor(5, 3)),  # a change to message 5, not sent yet
    ],
)
def test_a_frame_after_a_gap_goes_to_the_queue_unwritten(ahead: bytes):
    stream, written = idle_stream(Cursor(4, 2))

    assert stream.deliver_now(ROOM, ahead) is False
    assert written == []
    assert stream.sent == Cursor(4, 2)


def test_a_change_to_an_older_message_is_written_with_the_cursor_that_keeps_the_client_ahead():
    stream, written = idle_stream(Cursor(4, 2))
    edit = frame("edit", Cursor(2, 3))

    assert stream.deliver_now(ROOM, edit) is True
    assert written == [edit + sse.cursor_frame(Cursor(4, 3))]
    assert stream.sent == Cursor(4, 3)


def test_a_client_that_takes_nothing_more_leaves_the_frame_to_the_queue_and_the_cursor_alone():
    stream, _ = idle_stream(Cursor(4, 2), writes=False)

    assert stream.deliver_now(ROOM, frame("message", Cursor(5, 2))) is False
    assert stream.sent == Cursor(4, 2)


def test_signals_that_end_the_stream_are_queued_and_others_dropped():
    stream, written = idle_stream(Cursor(4, 2))
    own = user_channel(5)

    assert stream.deliver_now(own, end_session_signal("session")) is False
    assert stream.deliver_now(own, leave_room_signal(1)) is False
    assert stream.deliver_now(own, room_state_signal(1)) is True
    assert written == []


class FakeServer:
    """An ASGI server's send: writes unless its transport is paused, then waits, on a
    future of its own each time, as uvicorn's drain does."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False
        self.waits_abandoned = 0

    async def send(self, message: dict) -> None:
        if self.paused:
            try:
                await asyncio.get_running_loop().create_future()
            except GeneratorExit:
                self.waits_abandoned += 1
                raise
        self.written.append(message["body"])


async def test_writing_now_never_waits_for_a_client_whose_connection_is_paused():
    server = FakeServer()
    response = RoomStreamResponse.__new__(RoomStreamResponse)
    response._send = server.send
    response._direct = None  # not uvicorn's connection: every chunk goes through `send`

    assert response.send_now(b"one") is True
    server.paused = True
    assert response.send_now(b"two") is False
    assert server.written == [b"one"]
    assert server.waits_abandoned == 1


class RawStream:
    """A room's event stream read off the socket: the bytes of the body exactly as the
    server wrote them (chunked encoding removed)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = ChunkedDecoder()
        self.body = b""

    @classmethod
    async def open(cls, port: int, person, room_id: int) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        cookies = "; ".join(f"{k}={v}" for k, v in person.client.cookies.items())
        writer.write(
            f"GET /rooms/{room_id}/events?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: {cookies}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return cls(reader, writer)

    async def frame_with(self, marker: bytes) -> bytes:
        """The whole frame holding `marker`, once it has arrived."""
        while (start := self.body.find(marker)) < 0 or b"\n\n" not in self.body[start:]:
            self.body += self.decoder.feed(await asyncio.wait_for(self.reader.read(65536), 10))
        start = self.body.rfind(b"\n\n", 0, start) + 2 if b"\n\n" in self.body[:start] else 0
        return self.body[start : self.body.index(b"\n\n", start) + 2]


async def test_every_subscriber_is_written_the_very_same_bytes_and_they_parse_as_sse(
    visitors, live_server: LiveServer
):
    room_id, people = await room_with(visitors, "alice", "bob", "carol")
    streams = [await RawStream.open(live_server.port, person, room_id) for person in people]
    # Each stream is open (its retry frame arrived) before anything is posted, so the
    # message reaches every one of them live, not from SQL.
    for stream in streams:
        await stream.frame_with(b"retry: ")
    await people[0].say(room_id, "first line\n\nsecond *line*")

    frames = [await stream.frame_with(b"id: 1\n") for stream in streams]
    for stream in streams:
        stream.writer.close()
    assert frames[0].startswith(b"id: 1\nevent: message\ndata: ")
    assert frames[0] == frames[1] == frames[2]
    [event] = SSEParser().feed(frames[0])
    assert event == Event("message", event.data, "1")
    assert "<p>first line</p>\n<p>second <em>line</em></p>" in event.data
    assert frames[0].count(b"\ndata: ") == event.data.count("\n") + 1


class HeldBack:
    """A broker that publishes nothing and keeps what it was given."""

    is_up = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, channel: str, payload: bytes, also=()) -> None:
        self.published += [(channel, payload), *also]


# Needs a broker this process shares with the server (Redis): no SQLite variant.
@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_live_frame_after_a_gap_brings_the_gap_from_sql_first(backend, settings, visitors):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    # In process, on the server's database and Redis: it can store without publishing.
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.db() as db:
            author = await db.scalar(select(User).where(User.username == "alice"))
        held_back = HeldBack()
        unpublished = dataclasses.replace(app.state.messages, broker=held_back)
        async with open_stream(bob.client, f"/rooms/{room_id}/events?after=0") as stream:
            await alice.say(room_id, "one")
            [one] = await stream.messages(1)
            # Stored and not published, as when another post's frame overtakes it.
            await unpublished.post(room_id, author, "two")
            await unpublished.post(room_id, author, "three")
            channel, three = held_back.published[-2]
            assert channel == room_channel(room_id) and sse.cursor_of(three) == Cursor(3)
            await app.state.broker.publish(channel, three)

            two, three = await stream.messages(2)
    assert [one.seq, two.seq, three.seq] == [1, 2, 3]
    assert "two" in two.data and "three" in three.data


async def test_a_gap_that_every_stream_finds_at_once_is_read_from_the_database_once(
    app, people, monkeypatch
):
    from chat import message_path
    from chat.sse import Cursor

    alice = await people("alice")
    room_id = await alice.create_room()
    for body in ("one", "two", "three"):
        await alice.say(room_id, body)
    pages = []
    page = message_path.message_pages.page

    async def counted(*args, **kwargs):
        pages.append(kwargs.get("before"))
        return await page(*args, **kwargs)

    monkeypatch.setattr(message_path.message_pages, "page", counted)
    messages = app.state.messages

    async def gap(before_seq: int) -> list[bytes]:
        return [frame async for _, frame in messages.replay(room_id, Cursor(1), before_seq)]

    # Twenty streams of one room, each shown seq 3 while it stands at seq 1.
    gaps = await asyncio.gather(*(gap(3) for _ in range(20)), gap(4))

    assert sorted(pages) == [3, 4]  # one read per distinct gap, not per stream
    assert all(len(found) == 1 and b"two" in found[0] for found in gaps[:20])
    assert len(gaps[20]) == 2
    assert await gap(3) == gaps[0] and pages[2:] == [3]  # read again once it is done
