"""How event streams are served (chat/streams.py): one task per stream, one heartbeat and
one shutdown watch for the whole process, the client's disconnect noticed without a task,
and body chunks written straight to uvicorn's connection under `chat serve` (the same
bytes its ASGI `send` would write).

What a client sees of its stream (order, replay, cut-offs, presence) is tested in
tests/test_streams.py, tests/test_fanout.py, tests/test_slow_subscribers.py and
tests/test_presence.py, which all run through this.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from types import SimpleNamespace

import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as HttpToolsCycle

from bench.protocol import ChunkedDecoder, Event, SSEParser
from chat import sse
from chat.app import create_app
from chat.cli import UVICORN_OPTIONS
from chat.sse import RETRY_FRAME, Cursor
from chat.stream_connection import DirectWrite, watch_disconnect
from chat.streams import HEARTBEAT, OpenStreams, RoomStreamResponse
from tests.support import Person, client_for, free_port, open_stream
from tests.test_fanout import FakeServer, RawStream
from tests.test_streams import room_with


def open_response(streams: OpenStreams) -> tuple[RoomStreamResponse, FakeServer]:
    """A response as `serve` leaves it while its stream is open, writing to a fake server."""
    server = FakeServer()
    response = RoomStreamResponse.__new__(RoomStreamResponse)
    response._send = server.send
    response._direct = None  # not uvicorn's connection: every chunk goes through `send`
    response.stream = SimpleNamespace(user_id=1)
    response._task = None
    response._cancelled = False
    response.ending = False
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
    assert not stalled.ending
    await asyncio.sleep(0.06)
    await streams.beat()
    assert stalled.ending
    assert server.written == []


async def test_a_stream_opened_while_the_server_shuts_down_ends_at_once():
    streams = OpenStreams(presence=None, heartbeat_seconds=15, send_timeout=30)
    streams._shutting_down = True
    response, _ = open_response(streams)
    assert response.ending


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


# --- writing straight to uvicorn's connection (DirectWrite) ---------------------------------


class RecordingTransport:
    """What uvicorn's connection writes to: the bytes, in order."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def httptools_connection() -> tuple[HttpToolsCycle, RecordingTransport]:
    """uvicorn's own request cycle for a GET, as a stream sees it once its start is sent."""
    transport = RecordingTransport()
    connection = HttpToolsCycle(
        scope={"type": "http", "method": "GET", "http_version": "1.1"},  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("uvicorn.error"),
        access_logger=logging.getLogger("uvicorn.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    return connection, transport


async def test_under_uvicorn_the_disconnect_is_noticed_without_waiting_on_receive():
    connection, _ = httptools_connection()
    connection.message_event.set()  # the GET's request was complete before the app ran
    noticed: list[bool] = []
    tasks = len(asyncio.all_tasks())
    watch_disconnect(connection.receive, lambda: noticed.append(True))
    assert len(asyncio.all_tasks()) == tasks
    assert not isinstance(connection.message_event, asyncio.Event)  # no waiter at all

    connection.message_event.set()  # what a request body or the response's end does
    assert noticed == []
    # What uvicorn's connection_lost does for a response that is not complete.
    connection.disconnected = True
    connection.message_event.set()
    connection.message_event.set()
    assert noticed == [True]


async def test_under_uvicorn_a_stopped_watch_notices_nothing():
    connection, _ = httptools_connection()
    noticed: list[bool] = []
    stop = watch_disconnect(connection.receive, lambda: noticed.append(True))
    stop()
    connection.disconnected = True
    connection.message_event.set()
    assert noticed == []


async def test_under_uvicorn_a_client_gone_before_the_watch_is_noticed_at_once():
    connection, _ = httptools_connection()
    connection.disconnected = True
    noticed: list[bool] = []
    watch_disconnect(connection.receive, lambda: noticed.append(True))
    assert noticed == [True]


def streaming_response(connection: HttpToolsCycle) -> RoomStreamResponse:
    response = RoomStreamResponse.__new__(RoomStreamResponse)
    response._send = connection.send
    response._direct = DirectWrite.to(connection.receive)
    response.wrote = False
    return response


# The empty chunk: uvicorn writes nothing for it (a framed one would end the body).
CHUNKS = [RETRY_FRAME, sse.encode("message", "<p>one\ntwo</p>", id=Cursor(7, 2)), b"", HEARTBEAT]


async def test_a_direct_write_puts_on_the_wire_exactly_what_uvicorns_send_would():
    through_send, sent = httptools_connection()
    direct, written_directly = httptools_connection()
    headers = RoomStreamResponse.raw_headers
    for connection in (through_send, direct):
        await connection.send({"type": "http.response.start", "status": 200, "headers": headers})
    response = streaming_response(direct)
    assert response._direct is not None

    for chunk in CHUNKS:
        await through_send.send({"type": "http.response.body", "body": chunk, "more_body": True})
        assert response.send_now(chunk) is True
    assert written_directly.written == sent.written
    assert response.wrote
    decoded = ChunkedDecoder().feed(bytes(sent.written).partition(b"\r\n\r\n")[2])
    assert decoded == b"".join(CHUNKS)
    [event] = SSEParser().feed(decoded)
    assert event == Event("message", "<p>one\ntwo</p>", "7.2")


async def test_a_paused_connection_is_written_nothing_and_the_chunk_is_refused():
    connection, transport = httptools_connection()
    await connection.send({"type": "http.response.start", "status": 200, "headers": []})
    response = streaming_response(connection)
    before = bytes(transport.written)
    connection.flow.pause_writing()

    assert response.send_now(HEARTBEAT) is False
    assert transport.written == before
    assert not response.wrote


@pytest.mark.parametrize("state", ["not started", "disconnected", "complete"])
async def test_any_other_state_of_the_connection_is_left_to_uvicorns_send(state: str):
    connection, transport = httptools_connection()
    response = streaming_response(connection)
    if state != "not started":
        await connection.send({"type": "http.response.start", "status": 200, "headers": []})
    if state == "disconnected":
        connection.disconnected = True
    if state == "complete":
        await connection.send({"type": "http.response.body", "body": b"", "more_body": False})
    before = bytes(transport.written)

    assert response._direct.write(HEARTBEAT) is None  # type: ignore[union-attr]
    if state == "disconnected":
        assert response.send_now(HEARTBEAT) is True  # as uvicorn's send: nothing to do
    else:
        with pytest.raises(RuntimeError):  # as uvicorn's send: a protocol error
            response.send_now(HEARTBEAT)
    assert transport.written == before


def test_under_any_other_server_every_chunk_goes_through_its_send():
    async def receive() -> dict:
        return {"type": "http.disconnect"}

    assert DirectWrite.to(receive) is None


class ServedInProcess:
    """The app served by uvicorn with `chat serve`'s own options, in this process, so a
    test can look at its open streams."""

    def __init__(self, settings) -> None:
        self.app = create_app(settings)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, **UVICORN_OPTIONS)
        )

    async def __aenter__(self) -> ServedInProcess:
        self.serving = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        await self.serving


class RawBody:
    """A stream's response body exactly as it came off the socket, chunk framing and
    all, read from its start."""

    def __init__(self, stream: RawStream) -> None:
        self.stream = stream
        self.raw = b""

    async def read_until(self, marker: bytes) -> None:
        while marker not in self.raw or not self.raw.endswith(b"\r\n"):
            self.raw += await asyncio.wait_for(self.stream.reader.read(65536), 10)

    def chunks(self) -> list[bytes]:
        """Each chunk as written (size line, data, CRLF), checking the framing."""
        chunks, rest = [], self.raw
        while rest:
            size = rest[: rest.index(b"\r\n")]
            end = len(size) + 2 + int(size, 16) + 2
            assert rest[end - 2 : end] == b"\r\n"
            chunks.append(rest[:end])
            rest = rest[end:]
        return chunks


async def test_chat_serve_writes_live_frames_straight_to_the_connection_and_the_bytes_match(
    settings, engine
):
    async with ServedInProcess(settings) as served:
        base_url = f"http://127.0.0.1:{served.port}"
        async with client_for(base_url) as alice_client, client_for(base_url) as bob_client:
            alice = await Person(alice_client, "alice").signup()
            bob = await Person(bob_client, "bob").signup()
            room_id = await alice.create_room()
            await bob.join(room_id)
            bodies = [
                RawBody(await RawStream.open(served.port, person, room_id))
                for person in (alice, bob)
            ]
            for body in bodies:
                await body.read_until(b"retry: ")
            responses = list(served.app.state.streams._open)
            assert len(responses) == 2
            # The point of this test: if a uvicorn upgrade or a middleware wrapping
            # `receive` turned this off, every delivery would silently cost twice as much.
            assert all(isinstance(response._direct, DirectWrite) for response in responses)
            # Bob's now goes through the ASGI send, for the bytes to compare.
            next(r for r in responses if r.stream.user_id != 1)._direct = None

            await alice.say(room_id, "first line\n\nsecond *line*")
            for body in bodies:
                await body.read_until(b"second")
                body.stream.writer.close()

    direct, through_send = (
        next(chunk for chunk in body.chunks() if b"second" in chunk) for body in bodies
    )
    assert direct == through_send
    [event] = SSEParser().feed(ChunkedDecoder().feed(direct))
    assert event.event == "message" and event.id == "1"
    assert "<p>first line</p>\n<p>second <em>line</em></p>" in event.data


async def test_an_open_streams_connection_parses_a_pipelined_request_with_a_parser_made_then(
    settings, engine
):
    """The parser is let go while the stream is open (`ParserOnDemand`); a request
    pipelined behind the stream is still parsed, and answered once the stream ends."""
    from chat.stream_connection import ParserOnDemand

    async with ServedInProcess(settings) as served:
        base_url = f"http://127.0.0.1:{served.port}"
        async with client_for(base_url) as client:
            alice = await Person(client, "alice").signup()
            room_id = await alice.create_room()
            stream = await RawStream.open(served.port, alice, room_id)
            body = RawBody(stream)
            await body.read_until(b"retry: ")
            (response,) = served.app.state.streams._open
            protocol = response._direct._connection.on_response.__self__
            assert isinstance(protocol.parser, ParserOnDemand)

            stream.writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await stream.writer.drain()
            async with asyncio.timeout(10):
                while len(protocol.pipeline) == 0:  # noqa: ASYNC110 (uvicorn queues it, no event)
                    await asyncio.sleep(0.01)
            assert not isinstance(protocol.parser, ParserOnDemand)
            response.end()
            rest = b""
            while b"\r\n\r\n" not in rest.partition(b"0\r\n\r\n")[2]:
                rest += await asyncio.wait_for(stream.reader.read(65536), 10)
            stream.writer.close()
    after_the_stream = rest.partition(b"0\r\n\r\n")[2]
    assert after_the_stream.startswith(b"HTTP/1.1 200 "), after_the_stream


async def test_an_idle_streams_task_waits_under_three_coroutines_with_a_scope_of_asgis_keys(
    settings, engine
):
    """What an open stream keeps for hours, under `chat serve`: each coroutine its task
    waits under is about 0.25 KB, and the scope the server's connection keeps was 0.8 KB
    in a dictionary grown by the app's keys."""
    import sys

    async with ServedInProcess(settings) as served:
        base_url = f"http://127.0.0.1:{served.port}"
        async with client_for(base_url) as client:
            alice = await Person(client, "alice").signup()
            room_id = await alice.create_room()
            stream = await RawStream.open(served.port, alice, room_id)
            await RawBody(stream).read_until(b"retry: ")
            (response,) = served.app.state.streams._open
            connection = response._direct._connection
            task = next(
                task
                for task in asyncio.all_tasks()
                if task.get_coro().cr_frame is not None
                and task.get_coro().cr_frame.f_locals.get("self") is connection
            )
            waiting, coroutine = [], task.get_coro()
            while inspect.iscoroutine(coroutine):
                waiting.append(coroutine.cr_code.co_qualname)
                coroutine = coroutine.cr_await
            scope = connection.scope
            assert set(scope) <= {
                "type",
                "http_version",
                "method",
                "scheme",
                "path",
                "raw_path",
                "query_string",
                "root_path",
                "client",
                "server",
            }
            assert sys.getsizeof(scope) < 400
            stream.writer.close()
    assert waiting == [
        "RequestResponseCycle.run_asgi",
        "HandoverStarlette.__call__",
        "RoomStreamResponse.serve",
    ]


# --- the handover: a stream is served above every middleware --------------------------


async def test_a_stream_handed_over_is_logged_once_it_ends_with_its_start_through_the_middleware():
    from starlette.middleware import Middleware
    from starlette.routing import Mount
    from structlog.testing import capture_logs

    from chat.logging import OPEN_STREAM, RequestLogMiddleware
    from chat.streams import HandoverStarlette

    serving = asyncio.Event()
    finish = asyncio.Event()
    sent: list[dict] = []

    class HandedOver:
        when_served = None

        async def serve(self, receive, send) -> None:
            await self.send_start({"type": "http.response.start", "status": 200, "headers": []})
            serving.set()
            await finish.wait()

    async def endpoint(scope, receive, send) -> None:
        response = HandedOver()
        response.send_start = send  # what RoomStreamResponse keeps of the app's send
        scope[OPEN_STREAM] = response

    async def server_send(message: dict) -> None:
        sent.append(message)

    app = HandoverStarlette(
        routes=[Mount("/", app=endpoint)], middleware=[Middleware(RequestLogMiddleware)]
    )
    headers = [(b"cookie", b"session=secret")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "method": "GET",
        "path": "/rooms/1/events",
        "root_path": "",
        "headers": headers,
        "chat.cookies": {"session": "secret"},
        "path_params": {"room_id": 1},
        "state": {"auth_session": object()},
    }
    with capture_logs() as logs:
        serving_task = asyncio.create_task(app(scope, None, server_send))
        await serving.wait()
        assert [entry for entry in logs if entry["event"] == "request"] == []
        finish.set()
        await serving_task
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == 200 and line["path"] == "/rooms/1/events"
    assert [name for name, _ in sent[0]["headers"]] == [b"x-request-id"]
    # The server keeps the scope (and the header list) until the connection's next
    # request: what the app made of the request is not kept with it.
    assert set(scope) == {"type", "method", "path", "root_path"}
    assert headers == []


def test_a_streams_pipeline_gives_back_pipelined_requests_in_the_order_a_deque_would():
    from collections import deque

    from chat.stream_connection import Pipeline

    pipeline, reference = Pipeline(), deque()
    assert not pipeline
    for queue in (pipeline, reference):
        queue.appendleft("first")
        queue.appendleft("second")
    assert pipeline and len(pipeline) == 2
    assert (
        [pipeline.pop(), pipeline.pop()]
        == [reference.pop(), reference.pop()]
        == [
            "first",
            "second",
        ]
    )
    assert not pipeline
