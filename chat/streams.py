"""Serving event streams: one task per open stream, the request's own.

sse-starlette's `EventSourceResponse.__call__` runs four tasks per stream in an anyio
task group (the stream, a ping timer, a shutdown watch and a disconnect watch); those
tasks, their cancel scopes and events, and the request's frames kept waiting under
them, were most of an idle stream's memory. `RoomStreamResponse` is still an
`EventSourceResponse` (its headers, its answer to HEAD, its shutdown detection, its
comment frame for the heartbeat), but its `__call__` is its own, and the stream runs in
the task the server already runs for the request, after the app and every middleware
have returned (`HandoverStarlette`):

- the heartbeat and the shutdown watch are process-wide (`OpenStreams`: two tasks in
  the app's lifespan for all streams together);
- the client's disconnect is noticed without a task (`watch_disconnect`: under
  uvicorn a `DisconnectSignal` stands in for the connection's `message_event`, under
  other servers `receive()` is stepped by callbacks), and the disconnect cancels the
  stream's task wherever it waits;
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

It uses a private name of sse-starlette (`_listen_for_exit_signal`), and through
chat.stream_connection fields of uvicorn's httptools `RequestResponseCycle` (its
`message_event` among them) and asyncio's `_asyncio_future_blocking`; each library is
pinned to its minor version in pyproject.toml, and tests/test_private_names.py fails
loudly on an upgrade that drops one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from chat import sse
from chat.activity import UserStream
from chat.broker import cancel_tasks
from chat.logging import OPEN_STREAM
from chat.presence import Presence
from chat.room_stream import Order, RoomStream
from chat.stream_connection import DirectWrite, watch_disconnect

log = structlog.get_logger("chat.streams")

# What a response streams: a room's frames for a browser (RoomStream) or an API client
# (chat.api.stream.ApiRoomStream), or the rooms page's counts (UserStream).
Stream = Any

HEARTBEAT_EVENT = ServerSentEvent(comment="ping", sep="\n")
HEARTBEAT = HEARTBEAT_EVENT.encode()
# The heartbeat writes this many streams, then lets other work run.
HEARTBEAT_BATCH = 200


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


class RoomStreamResponse(EventSourceResponse):
    """An SSE response streamed by the request's task alone, and torn down as soon as its
    stream is cut off, its client goes, it cannot write for `send_timeout` or the server
    shuts down, even while a write to a client that stopped reading is blocked. Its user
    counts as online while it is open. Serves the room streams and the rooms page's
    UserStream; a RoomStream also gets `send_now`, for its fan-out path.

    Called by the app, it only keeps the app's `send` for its start and hands itself
    over; `HandoverStarlette` calls `serve` once the app has returned.
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
        # Called once served (the request log's line).
        self.when_served: Callable[[], None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await super().__call__(scope, receive, send)  # headers only, no stream
            return
        # The middleware's closures that add headers to the start outlive their frames.
        self._send_start = send
        scope[OPEN_STREAM] = self

    async def serve(self, receive: Receive, send: Send) -> None:
        """Stream, in the request's task, with the server's own `receive` and `send`
        (from above every middleware), until the frames end, or `end` cancels the task
        wherever it waits.

        A cancellation of the task rather than an anyio CancelScope: the scope, its two
        sets and anyio's state for the task were about 0.9 KB of an idle stream's 17
        (a tracemalloc diff over 5,000 streams). `end`'s cancellation is taken here
        and nowhere else: `uncancel` says whether anyone else (the server shutting
        down) also cancelled the task, whose cancellation then goes on.

        All of it in this one coroutine: each coroutine an idle stream's task waits
        under is kept for as long as the stream is open (about 0.25 KB each)."""
        self._send = send
        self._direct = DirectWrite.to(receive)
        stream = self.stream
        if isinstance(stream, RoomStream):
            stream.deliver_now = fan_out(stream, self.send_now)
        elif isinstance(stream, UserStream):
            stream.write_now = self.send_now
        stream.close = self.end
        try:
            async with self.streams.presence.connected(stream.user_id):
                # Only once the user counts as online: a client that has the headers of
                # its stream is announced, and the next presence it sees is someone else's.
                await self._send_start(  # type: ignore[misc]
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                self._send_start = None  # and with it the request's middleware closures
                task = self._task = asyncio.current_task()
                stop_watching = watch_disconnect(receive, self.end)
                self.streams.add(self)
                frames = self.body_iterator
                taken = False
                try:
                    async for chunk in frames:
                        if not self.send_now(chunk) and not await self._send_waiting(chunk):
                            log.info("stream.send_timeout", user_id=stream.user_id)
                            break
                except asyncio.CancelledError:
                    taken = True
                    if not self._cancelled or task.uncancel():  # type: ignore[union-attr]
                        raise
                finally:
                    await frames.aclose()
                    self._task = None
                    self.streams.discard(self)
                    stop_watching()
                if self._cancelled and not taken:
                    # Ended while the stream was ending anyway: the cancellation is still
                    # due (on Python 3.11 `uncancel` leaves it due), and must not reach
                    # the server.
                    try:
                        await asyncio.sleep(0)
                    except asyncio.CancelledError:
                        if task.uncancel():  # type: ignore[union-attr]
                            raise
                # When even this cannot be written at once, the server closes the
                # connection once this returns; the client reconnects either way.
                self._write_now({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._let_go()

    def _let_go(self) -> None:
        """Undo the links between this response, its stream and the server's connection,
        each of which refers to the others: so that reference counting frees them all as
        soon as the stream ends. Left as cycles, each ended stream (some forty objects,
        uvicorn's connection among them) waited for a full collection, and with a crowd
        connected a full collection walks every open stream's objects: a pause of a few
        hundred milliseconds for every stream being written to (`chat bench capacity`,
        tests/test_stream_garbage.py)."""
        stream = self.stream
        stream.close = _nothing
        if isinstance(stream, RoomStream):
            stream.deliver_now = None
        elif isinstance(stream, UserStream):
            stream.write_now = None
        self._direct = None
        self._send = self._send_start = None

    def end(self) -> None:
        """End the response at once, wherever its task waits (see the class)."""
        self.ending = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

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


def _nothing() -> None:
    pass


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


# What the server itself reads of a request's scope once its app has returned (the
# method, for the start of the response and HEAD; the access log's fields), and what the
# middleware's closures read when the start passes through them: ASGI's own keys.
_SERVER_SCOPE = (
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
)


def _forget_the_request(scope: Scope) -> None:
    """Drops from a handed-over stream's scope what the app made of its request and
    nothing reads again, though the server's connection keeps the scope until its next
    request: the request's rows and state, its path parameters, what the app's
    middleware noted (its parsed cookies: 0.7 KiB per idle stream), Starlette's routing
    and error handlers, and its headers (a browser sends a dozen, a few hundred bytes
    each). The scope is then made anew with ASGI's keys: a dictionary keeps the table it
    grew to (0.8 KB for a request's scope, 0.3 with these ten keys)."""
    headers = scope.get("headers")
    if isinstance(headers, list):
        headers.clear()  # the server's connection keeps the same list
    kept = {key: scope[key] for key in _SERVER_SCOPE if key in scope}
    scope.clear()
    scope.update(kept)


class HandoverStarlette(Starlette):
    """Starlette that serves a RoomStreamResponse once the app, all of its middleware
    and Starlette's own error handler included, has returned. A stream is open for
    hours; this way its task holds none of the request's frames, `Request` objects and
    closures (Starlette's routing's and every middleware's, the request log's
    included), nor the rows its authentication left on `request.state`, and its body
    chunks pass no middleware (the fan-out path writes each frame to a thousand
    streams). The stream is served from this `__call__`, which uvicorn calls itself:
    an idle stream's task waits under uvicorn's coroutine, this one and the stream's.

    The request log's line is written when the stream ends (`when_served`), as for any
    other response. No middleware may change body chunks (SSE must not be compressed
    anyway), and only the start passes through them. An exception while streaming
    reaches the server directly, which logs it; Starlette's handler would have let it
    through too (the response has started: there is no error page to send)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
        response = scope.pop(OPEN_STREAM, None)
        if response is None:
            return
        _forget_the_request(scope)
        try:
            await response.serve(receive, send)
        finally:
            if response.when_served is not None:
                response.when_served()
