"""What an event stream does with the server's connection itself, under uvicorn's
httptools protocol (`chat serve`): write body chunks to its transport (`DirectWrite`) and
notice the client's disconnect (`watch_disconnect`), both without the ASGI `send` and
`receive` and without a waiting task; under any other server, through them.

It reads fields of uvicorn's `RequestResponseCycle`, replaces its `message_event`, and
the waiters' deque of its flow control's asyncio.Event (`_lighten_writable_event`), the
deque of its protocol's pipelined requests (`Pipeline`) and its protocol's parser
(`ParserOnDemand`);
uvicorn is pinned to its minor version in pyproject.toml, and tests/test_private_names.py
fails loudly on an upgrade that drops one. Used by chat.streams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any

import httptools
from starlette.types import Message, Receive
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as HttpToolsCycle


@lru_cache(maxsize=256)
def http_chunk(body: bytes) -> bytes:
    """`body` framed as one chunk of a chunked HTTP/1.1 body, exactly as uvicorn frames
    it. Cached like chat.sse' parsing: every stream of a room writes the same
    frame object, framed once per publish rather than once per subscriber."""
    return b"%x\r\n%b\r\n" % (len(body), body)


def _lighten_writable_event(connection: HttpToolsCycle) -> None:
    """The asyncio.Event that uvicorn's flow control waits on while writing is paused
    keeps its waiters in a deque, which allocates a block of 64 slots up front (0.6 KB);
    an open stream's connection keeps it for hours, almost always without a waiter. A
    list does all the Event does with it (append, remove, iterate) in 56 bytes. Only
    while nobody waits (the response has just started)."""
    event = connection.flow._is_writable_event
    if isinstance(event._waiters, deque) and not event._waiters:
        event._waiters = []  # type: ignore[assignment]


class Pipeline:
    """uvicorn's queue of requests pipelined behind the one being answered, for a
    connection that streams: it uses `appendleft`, `pop` and its truth, which a list does
    in 56 bytes where an empty deque takes 0.6 KB (its first block). Browsers do not
    pipeline; a client that does still has its requests answered in order."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[Any] = []

    def appendleft(self, item: Any) -> None:
        self._items.insert(0, item)

    def pop(self) -> Any:
        return self._items.pop()

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _lighten_pipeline(connection: HttpToolsCycle) -> None:
    protocol = getattr(connection.on_response, "__self__", None)
    if isinstance(protocol, HttpToolsProtocol) and isinstance(protocol.pipeline, deque):
        if protocol.pipeline:  # something is queued already: leave it be
            return
        protocol.pipeline = Pipeline()  # type: ignore[assignment]


class ParserOnDemand:
    """Stands in for the httptools parser of a connection whose request has been read
    whole and whose response is an event stream: the parser, its C state and the seven
    bound methods of the protocol it calls back are 0.9 KB (a tracemalloc diff over
    2,000 idle streams), kept for hours for bytes that browsers never send on such a
    connection. Should any come (a pipelined request), uvicorn's `data_received` feeds
    them here, and a parser made then as uvicorn makes one takes over: it starts where
    the old one stood, between two requests."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: HttpToolsProtocol) -> None:
        self._protocol = protocol

    def feed_data(self, data: bytes) -> None:
        protocol = self._protocol
        parser = protocol.parser = httptools.HttpRequestParser(protocol)
        parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's
        parser.feed_data(data)


def _lighten_parser(connection: HttpToolsCycle) -> None:
    """Only once the request has been read to its end (`more_body` is false once the
    parser called `on_message_complete`) and the connection is kept alive: the old
    parser is then between two requests, where a new one starts."""
    protocol = getattr(connection.on_response, "__self__", None)
    if (
        isinstance(protocol, HttpToolsProtocol)
        and isinstance(protocol.parser, httptools.HttpRequestParser)
        and protocol.cycle is connection
        and not connection.more_body
        and connection.keep_alive
    ):
        protocol.parser = ParserOnDemand(protocol)  # type: ignore[assignment]


class DirectWrite:
    """Writes body chunks of a response to uvicorn's httptools connection without its
    ASGI `send`: per chunk, `send` costs a message dict, a coroutine for it and for each
    middleware wrapper above the stream (`HandoverStarlette`), the chunk framed
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
    `HandoverStarlette`); only the start of the response passes through them.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: HttpToolsCycle) -> None:
        self._connection = connection

    @classmethod
    def to(cls, receive: Receive) -> DirectWrite | None:
        """The direct write for the connection whose `receive` this is (no middleware
        above the stream wraps `receive`), or None under any other server."""
        connection = getattr(receive, "__self__", None)
        if not isinstance(connection, HttpToolsCycle):
            return None
        _lighten_writable_event(connection)
        _lighten_pipeline(connection)
        _lighten_parser(connection)
        return cls(connection)

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
        self._connection: HttpToolsCycle | None = connection
        self._on_disconnect: Callable[[], None] | None = on_disconnect

    def set(self) -> None:
        if self._on_disconnect is not None and self._connection.disconnected:
            on_disconnect, self._on_disconnect = self._on_disconnect, None
            on_disconnect()

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False

    async def wait(self) -> None:  # nothing calls receive() once the stream is served
        raise RuntimeError("an open event stream's connection is not to be read")

    def stop(self) -> None:
        # The connection refers to this signal (its `message_event`): without the link
        # back, the pair is freed with the connection, not left to the collector.
        self._on_disconnect = None
        self._connection = None


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
