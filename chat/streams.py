"""Serving event streams: one task per open stream, the request's own.

sse-starlette's `EventSourceResponse.__call__` runs four tasks per stream in an anyio
task group (the stream, a ping timer, a shutdown watch and a disconnect watch); those
tasks, their cancel scopes and events, and the request's frames kept waiting under
them, were most of an idle stream's memory. `RoomStreamResponse` is still an
`EventSourceResponse` (its headers, its answer to HEAD, its shutdown detection, its
comment frame for the heartbeat), but its `__call__` is its own, and the stream runs in
the task the server already runs for the request, after the app has returned
(`StreamHandoverMiddleware`):

- the heartbeat and the shutdown watch are process-wide (`OpenStreams`: two tasks in
  the app's lifespan for all streams together);
- the client's disconnect is noticed without a task: the server's `receive()` is
  stepped by callbacks (`watch_disconnect`), and the disconnect cancels the stream
  wherever it waits;
- the stream's task writes without waiting when it can (`send_now`), and only a client
  whose connection is not taking more makes it wait, for at most `send_timeout`;
- the fan-out path (`fan_out`): a live frame published while a room stream waits is
  written by the publishing task itself, without waking the stream's task;
- under uvicorn's httptools protocol (`chat serve`), `send_now` writes a body chunk to
  the connection's transport itself (`DirectWrite`): a published frame is written to a
  thousand streams, and the ASGI `send` costs more than the write's system call.

Handlers ask `OpenStreams.response(stream)` for the response. With CHAT_FAST_PATHS=0 it
is sse-starlette's own `EventSourceResponse` around the same frames, with the same
headers, heartbeat comment and send timeout: the plain path, the same bytes
(tests/test_fast_paths.py).

It uses private names of sse-starlette (`_listen_for_exit_signal`), uvicorn (the fields of
httptools' `RequestResponseCycle`) and asyncio (`_asyncio_future_blocking`); each library
is pinned to its minor version in pyproject.toml, and tests/test_private_names.py fails
loudly on an upgrade that drops one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import lru_cache
from typing import Any

import anyio
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as HttpToolsCycle

from chat import sse
from chat.activity import UserStream
from chat.broker import cancel_tasks
from chat.message_path import Order, RoomStream
from chat.presence import Presence

log = structlog.get_logger("chat.streams")

# What a response streams: a room's frames for a browser (RoomStream) or an API client
# (chat.api.stream.ApiRoomStream), or the rooms page's counts (UserStream).
Stream = Any

# The scope key under which a response hands its stream to StreamHandoverMiddleware.
OPEN_STREAM = "chat.open_stream"
HEARTBEAT_EVENT = ServerSentEvent(comment="ping", sep="\n")
HEARTBEAT = HEARTBEAT_EVENT.encode()
# The heartbeat writes this many streams, then lets other work run.
HEARTBEAT_BATCH = 200


@lru_cache(maxsize=256)
def http_chunk(body: bytes) -> bytes:
    """`body` framed as one chunk of a chunked HTTP/1.1 body, exactly as uvicorn frames
    it. Cached like chat.sse' parsing: every stream of a room writes the same
    frame object, framed once per publish rather than once per subscriber."""
    return b"%x\r\n%b\r\n" % (len(body), body)


class DirectWrite:
    """Writes body chunks of a response to uvicorn's httptools connection without its
    ASGI `send`: per chunk, `send` costs a message dict, a coroutine for it and for each
    middleware wrapper above the stream (`StreamHandoverMiddleware`), the chunk framed
    again, and a StopIteration, which on the fan-out path together cost more CPU than
    the write's system call.

    `write` does what uvicorn's `RequestResponseCycle.send` does for a body chunk with
    more to come, in the one case it would write at once (a chunk to write, response
    started, chunked, not complete, connection open, transport not paused), and
    returns None in every other case, for the caller to go through `send`, which
    handles each as before: so the bytes on the wire are the same either way. It
    depends on that method and on the fields it reads (`chunked_encoding`,
    `response_complete`, `disconnected`, `flow.write_paused`, `transport`);
    tests/test_stream_serving.py fails if `chat serve` stops taking this path or its
    bytes differ from `send`'s.

    Bypassing the middleware is sound because no middleware changes body chunks (see
    `StreamHandoverMiddleware`); only the start of the response passes through them.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: HttpToolsCycle) -> None:
        self._connection = connection

    @classmethod
    def to(cls, receive: Receive) -> DirectWrite | None:
        """The direct write for the connection whose `receive` this is (no middleware
        above the stream wraps `receive`), or None under any other server."""
        connection = getattr(receive, "__self__", None)
        return cls(connection) if isinstance(connection, HttpToolsCycle) else None

    def write(self, chunk: bytes) -> bool | None:
        """True once written, False when the transport is paused (`send` would wait
        before writing anything), None when `send` must handle it (an empty chunk
        included: framed, it would end the body)."""
        connection = self._connection
        if (
            not chunk
            or not connection.chunked_encoding
            or connection.response_complete
            or connection.disconnected
        ):
            return None
        if connection.flow.write_paused:
            return False
        connection.transport.write(http_chunk(chunk))
        return True


def fan_out(stream: RoomStream, write_now: Callable[[bytes], bool]) -> Callable[[str, bytes], bool]:
    """`stream.deliver_now`: offered each payload published while the stream's
    `frames()` waits with nothing queued (the subscription's `direct`), by the
    publishing task. True when the payload needs nothing more (written with
    `write_now`, or not for the client); False to queue it for `frames()`, which decides
    the same way (`RoomStream.order`) and fills any gap from SQL first."""
    room = stream.channel

    def deliver_now(channel: str, payload: bytes) -> bool:
        if channel != room:
            return not stream.ends(payload)
        cursor = sse.cursor_of(payload)
        if cursor is None:  # typing, presence: not part of the history
            return write_now(payload)
        sent = stream.sent
        is_message = sse.is_message(payload)
        if is_message and cursor.seq == sent.seq + 1 and cursor.change == sent.change:
            # The usual case, once per subscriber of a busy room, decided here as
            # `order` and `after` would (NEXT; the client then has the frame's cursor)
            # without calling them: at a thousand subscribers those calls were a large
            # part of a publish.
            if not write_now(payload):
                return False
            stream.sent = cursor
            return True
        order = stream.order(cursor, is_message)
        if order is Order.SENT:
            return True
        if order is Order.AHEAD:
            return False
        now, chunk = stream.after(payload, cursor, is_message)
        if not write_now(chunk):
            return False
        stream.sent = now
        return True

    return deliver_now


class DisconnectSignal:
    """Stands in for the `message_event` of uvicorn's httptools connection while a
    stream is open, to notice the client's disconnect with no waiting coroutine at
    all: `connection_lost` sets `disconnected` and then calls `message_event.set()`,
    which here calls `on_disconnect`. Nothing else waits on that event once the app has
    returned (only `receive()` does, and nothing calls it any more); its other `set()`
    calls (a request body arriving, the response completing) are ignored, as the
    stepped `receive()` below ignores them. It saves the asyncio.Event (a deque with
    its block) and what stepping `receive()` keeps, about 1.7 KB of an idle stream's
    19 (a tracemalloc diff over 5,000 streams). It depends on uvicorn's
    `RequestResponseCycle.message_event` and `disconnected`
    (tests/test_private_names.py)."""

    __slots__ = ("_connection", "_on_disconnect")

    def __init__(self, connection: HttpToolsCycle, on_disconnect: Callable[[], None]) -> None:
        self._connection = connection
        self._on_disconnect: Callable[[], None] | None = on_disconnect

    def set(self) -> None:
        if self._connection.disconnected and self._on_disconnect is not None:
            on_disconnect, self._on_disconnect = self._on_disconnect, None
            on_disconnect()

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False

    async def wait(self) -> None:  # nothing calls receive() once the stream is served
        raise RuntimeError("an open event stream's connection is not to be read")

    def stop(self) -> None:
        self._on_disconnect = None


def watch_disconnect(receive: Receive, on_disconnect: Callable[[], None]) -> Callable[[], None]:
    """Call `on_disconnect` when `receive()` says the client has gone, without a task
    waiting for it. Returns the function that stops watching.

    Under uvicorn's httptools protocol a `DisconnectSignal` replaces the connection's
    `message_event`. Under any other server the coroutine is stepped by hand, as a task
    would step it, each time the future it waits on is done (uvicorn's receive waits on
    an asyncio.Event that it sets when the connection is lost)."""
    connection = getattr(receive, "__self__", None)
    if isinstance(connection, HttpToolsCycle):
        signal = DisconnectSignal(connection, on_disconnect)
        connection.message_event = signal  # type: ignore[assignment]
        signal.set()  # it may have gone already
        return signal.stop
    receiving: Coroutine[Any, Any, Message] = receive()
    stopped = False

    def step(_: object = None) -> None:
        nonlocal receiving
        # The future can be done, and this step due, when the stream has just ended.
        while not stopped:
            try:
                waiting = receiving.send(None)
            except StopIteration as received:
                if received.value["type"] == "http.disconnect":
                    on_disconnect()
                    return
                receiving = receive()  # it was the request's body (none, for a GET)
                continue
            # A task clears this before it waits on the future it was handed.
            waiting._asyncio_future_blocking = False
            waiting.add_done_callback(step)
            return

    def stop() -> None:
        nonlocal stopped
        stopped = True
        receiving.close()

    step()
    return stop


class RoomStreamResponse(EventSourceResponse):
    """An SSE response streamed by the request's task alone, and torn down as soon as its
    stream is cut off, its client goes, it cannot write for `send_timeout` or the server
    shuts down, even while a write to a client that stopped reading is blocked. Its user
    counts as online while it is open. Serves the room streams and the rooms page's
    UserStream; a RoomStream also gets `send_now`, for its fan-out path.

    Called by the app, it only keeps the app's `send` for its start and hands itself
    over; `StreamHandoverMiddleware` calls `serve` once the app has returned.
    """

    # What EventSourceResponse.__init__ would set, the same for every stream, made once;
    # its __init__ is not called, because it also builds per response the headers and a
    # lock for the ping task that this response does not run.
    raw_headers = EventSourceResponse(iter(()), ping=0).raw_headers
    status_code = 200
    background = None

    def __init__(self, stream: Stream, streams: OpenStreams) -> None:
        self.body_iterator = stream.frames()
        self.send_timeout = streams.send_timeout
        self.stream = stream
        self.streams = streams
        self._send: Send | None = None
        self._direct: DirectWrite | None = None
        self._send_start: Send | None = None
        # The task serving the stream while `end` may cancel it, and whether it did.
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self.ending = False
        # Read by the heartbeat: whether anything was written since it last looked,
        # and since when the client's connection has refused a heartbeat.
        self.wrote = False
        self.stalled_since: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await super().__call__(scope, receive, send)  # headers only, no stream
            return
        # The middleware's closures that add headers to the start outlive their frames.
        self._send_start = send
        scope[OPEN_STREAM] = self

    async def serve(self, receive: Receive, send: Send) -> None:
        """Stream, in the request's task, with `receive` and `send` from below every
        middleware but the request log (whose `send` only looks at the start)."""
        self._send = send
        self._direct = DirectWrite.to(receive)
        if isinstance(self.stream, RoomStream):
            self.stream.deliver_now = fan_out(self.stream, self.send_now)
        elif isinstance(self.stream, UserStream):
            self.stream.write_now = self.send_now
        self.stream.close = self.end
        async with self.streams.presence.connected(self.stream.user_id):
            # Only once the user counts as online: a client that has the headers of its
            # stream is announced, and the next presence it sees is someone else's.
            await self._send_start(  # type: ignore[misc]
                {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            self._send_start = None  # and with it the request's middleware closures
            await self._stream_until_ended(receive)
            # When even this cannot be written at once, the server closes the
            # connection once this returns; the client reconnects either way.
            self._write_now({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream_until_ended(self, receive: Receive) -> None:
        """Stream until the frames end, or `end` cancels the task wherever it waits.

        A cancellation of the task rather than an anyio CancelScope: the scope, its two
        sets and anyio's state for the task were about 0.9 KB of an idle stream's 17
        (a tracemalloc diff over 5,000 streams). `end`'s cancellation is taken here
        and nowhere else: `uncancel` says whether anyone else (the server shutting
        down) also cancelled the task, whose cancellation then goes on."""
        task = self._task = asyncio.current_task()
        stop_watching = watch_disconnect(receive, self.end)
        self.streams.add(self)
        taken = False
        try:
            await self._stream()
        except asyncio.CancelledError:
            taken = True
            if not self._cancelled or task.uncancel():  # type: ignore[union-attr]
                raise
        finally:
            self._task = None
            self.streams.discard(self)
            stop_watching()
        if self._cancelled and not taken:
            # Ended while the stream was ending anyway: the cancellation is still due
            # (on Python 3.11 `uncancel` leaves it due), and must not reach the server.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if task.uncancel():  # type: ignore[union-attr]
                    raise

    def end(self) -> None:
        """End the response at once, wherever its task waits (see the class)."""
        self.ending = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    async def _stream(self) -> None:
        async with contextlib.aclosing(self.body_iterator) as frames:  # type: ignore[type-var]
            async for chunk in frames:
                if not self.send_now(chunk) and not await self._send_waiting(chunk):
                    log.info("stream.send_timeout", user_id=self.stream.user_id)
                    return

    async def _send_waiting(self, chunk: bytes) -> bool:
        """Write a chunk the client's connection did not take at once, waiting for it for
        at most `send_timeout`; False if it never did."""
        with anyio.move_on_after(self.send_timeout):
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})  # type: ignore[misc]
            self.wrote = True
            return True
        return False

    def send_now(self, chunk: bytes) -> bool:
        """Write a body chunk from the calling task (a publisher, the heartbeat, or the
        stream's own), without waiting: True once written, False when nothing was
        written because the client's connection is not taking more (its transport
        paused writing)."""
        written = None if self._direct is None else self._direct.write(chunk)
        if written is None:
            return self._write_now({"type": "http.response.body", "body": chunk, "more_body": True})
        if written:
            self.wrote = True
        return written

    def _write_now(self, message: Message) -> bool:
        """The server's own ASGI `send` (below every middleware) is driven by hand
        rather than awaited. Its only wait, for a paused transport to drain, comes
        before it writes (uvicorn); otherwise it returns without suspending. A send
        that would suspend is therefore closed unwritten."""
        sending = self._send(message)  # type: ignore[misc]
        try:
            sending.send(None)
        except StopIteration:
            self.wrote = True
            return True
        sending.close()
        return False


class OpenStreams:
    """Every event stream open in this process, and what they share: their users'
    presence, one heartbeat for all of them, and their end when the server shuts down.

    The heartbeat: a comment frame keeps proxies from closing an idle connection. Every
    half `heartbeat_seconds` it writes one to each stream that wrote nothing since it last
    looked, so no stream is silent for longer than `heartbeat_seconds`, and a busy one
    gets none. A client whose connection refuses heartbeats (it stopped reading) for
    `send_timeout` is cut off, as its own stream's writes would be.
    """

    def __init__(
        self,
        presence: Presence,
        heartbeat_seconds: float,
        send_timeout: float,
        *,
        fast: bool = True,
    ) -> None:
        self.presence = presence
        self.heartbeat_seconds = heartbeat_seconds
        self.send_timeout = send_timeout
        self.fast = fast
        self._open: set[RoomStreamResponse] = set()
        self._shutting_down = False
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._open)

    def response(self, stream: Stream) -> Response:
        """The response that serves `stream`: a RoomStreamResponse, or on the plain path
        (CHAT_FAST_PATHS=0) sse-starlette's EventSourceResponse, which runs its own
        heartbeat, send timeout, disconnect and shutdown watch per stream."""
        if self.fast:
            return RoomStreamResponse(stream, self)
        return EventSourceResponse(
            _online_while_open(stream, self.presence),
            ping=self.heartbeat_seconds,
            sep="\n",
            ping_message_factory=lambda: HEARTBEAT_EVENT,
            send_timeout=self.send_timeout,
        )

    def add(self, response: RoomStreamResponse) -> None:
        """A response whose start is sent; it stays until it sends its end."""
        if self._shutting_down:
            response.end()
        self._open.add(response)

    def discard(self, response: RoomStreamResponse) -> None:
        self._open.discard(response)

    def start(self) -> None:
        """In the app's lifespan, which calls `close` at its end."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._beat_forever(), name="streams-heartbeat"),
            loop.create_task(self._end_all_at_shutdown(), name="streams-shutdown"),
        ]

    async def close(self) -> None:
        await cancel_tasks(self._tasks)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds / 2)
            await self.beat()

    async def beat(self) -> None:
        now = time.monotonic()
        for index, response in enumerate(tuple(self._open)):
            if index and not index % HEARTBEAT_BATCH:
                await asyncio.sleep(0)
            if response not in self._open:  # it ended while others were written
                continue
            if response.wrote:
                response.wrote = False
                response.stalled_since = None
            elif not response.send_now(HEARTBEAT):
                response.stalled_since = response.stalled_since or now
                if now - response.stalled_since >= self.send_timeout:
                    log.info("stream.send_timeout", user_id=response.stream.user_id)
                    response.end()

    async def _end_all_at_shutdown(self) -> None:
        # sse-starlette's own detection (one poll per event loop, for uvicorn's exit),
        # waited for here once instead of in a task per stream. uvicorn waits for open
        # responses to end before it shuts the app's lifespan down.
        await EventSourceResponse._listen_for_exit_signal()
        self._shutting_down = True
        for response in tuple(self._open):
            response.end()


async def _online_while_open(stream: Stream, presence: Presence) -> AsyncIterator[bytes]:
    """The plain path's frames: `stream`'s, its user counted online meanwhile. The first
    frame comes once the stream has subscribed: only then does presence (a round trip
    to Redis, with several workers) delay it, as on the fast path, which subscribes right
    after the headers."""
    async with contextlib.aclosing(stream.frames()) as frames:
        try:
            first = await anext(frames)
        except StopAsyncIteration:
            return
        async with presence.connected(stream.user_id):
            yield first
            async for frame in frames:
                yield frame


class StreamHandoverMiddleware:
    """Serves a RoomStreamResponse once the app below it has returned. A stream is open
    for hours; this way its task holds none of the request's frames, `Request` objects
    and closures (Starlette's routing's and the middleware's below this one: half of a
    stream's memory), nor the rows its authentication left on `request.state`, and its
    body chunks pass none of those middleware (the fan-out path writes each frame to a
    thousand streams). It comes right after the request log, which logs a stream's
    request when the stream ends, as for any other response. No middleware may change
    body chunks (SSE must not be compressed anyway)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        response = scope.pop(OPEN_STREAM, None)
        if response is not None:
            # What the app read and nothing below uses again: the request's rows, and
            # its headers (a browser sends a dozen, a few hundred bytes each), which
            # uvicorn's connection also holds until its next request.
            scope.pop("state", None)
            headers = scope.pop("headers", None)
            if isinstance(headers, list):
                headers.clear()  # the server's connection keeps the same list
            await response.serve(receive, send)
