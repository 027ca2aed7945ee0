"""The load side of the live-server benchmarks: subscribers and posting connections,
all on one event loop.

Subscribers are raw sockets read on the event loop (chunked SSE, or socket.io over a
WebSocket, parsed incrementally by bench/protocol.py) and timed by the kernel's receive
timestamps; posts are keep-alive HTTP/1.1 requests. Every request is timestamped at its
*intended* send time and sent from a pool of connections without waiting for earlier
answers, so a stalled server shows up as latency instead of as fewer sends (no
coordinated omission)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator

from bench.protocol import Event, EventStream, SocketIOStream


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(label: str, done: int, total: int) -> None:
    print(f"\r{label}: {done:,}/{total:,} ({done / max(total, 1):.0%})", end="", file=sys.stderr)
    if done >= total:
        print(file=sys.stderr, flush=True)


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """The driver's own garbage collector off while it measures. A full collection of
    its objects (the population, a thousand connections) took 42-95 ms at a time on a
    slower machine, and every message due meanwhile counted that pause as the
    server's latency. Reference counting still frees what each request drops; what
    exists so far is frozen out of the collector's sight, and the collector runs again
    after the measurement."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# Linux's SO_TIMESTAMPNS: each read of a socket comes with the time the kernel received
# its bytes (the socket module does not name it).
SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
TIMESTAMP_SPACE = socket.CMSG_SPACE(16) if SO_TIMESTAMPNS is not None else 0
_TIMESTAMP = struct.Struct("qq")


def realtime_offset() -> float:
    """CLOCK_REALTIME (the kernel's receive timestamps) minus perf_counter, from the
    closest of a few paired readings."""
    pairs = []
    for _ in range(5):
        before = time.perf_counter()
        now = time.time()
        pairs.append((time.perf_counter() - before, now - before))
    return min(pairs)[1]


class Subscriber:
    """One event stream (`EventStream` or `SocketIOStream`), read straight from its
    socket: `on_event(event, arrived, read)` for each event, with the time its bytes
    arrived (the kernel's receive timestamp) and the time this process read them.

    A thousand subscribers share this process, and when a message reaches all of them
    at once it reads them one after another: the last is read tens of milliseconds
    after its bytes arrived, however early the server sent them. Each of a room's
    readers is a browser of its own, so the arrival is what a post→receive latency
    measures; the read time is kept beside it, to show what the driver adds. A read that
    takes several segments at once is timed by the last of them: later, never earlier."""

    def __init__(
        self,
        request: bytes,
        on_event: Callable[[Event, float, float], None] | None,
        body: type[EventStream | SocketIOStream] = EventStream,
        on_bytes: Callable[[bytes, float, float], None] | None = None,
    ) -> None:
        self.request = request
        self.on_event = on_event
        # Instead of events: the body's bytes as they come (chunk framing and all), for a
        # reader that finds what it needs in them itself (chat bench capacity's thousands
        # of streams: parsing every event cost the driver most of a core).
        self.on_bytes = on_bytes
        self.head = b""
        self.kind = body
        self.body: EventStream | SocketIOStream | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.socket: socket.socket | None = None
        self.closed = False
        self._offset = realtime_offset()

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = self.socket = socket.socket()
        sock.setblocking(False)
        if SO_TIMESTAMPNS is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, self.request)
        except OSError:
            self.close()
            raise
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            # 16 KiB at a time: each read allocates that much before it shrinks to what
            # came, and a frame is a kilobyte or two.
            data, ancillary, _, _ = self.socket.recvmsg(16384, TIMESTAMP_SPACE)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        read = time.perf_counter()
        if not data:
            self._lost()
            return
        arrived = read
        if ancillary:  # only SO_TIMESTAMPNS is asked for
            seconds, nanoseconds = _TIMESTAMP.unpack(ancillary[0][2])
            arrived = seconds + nanoseconds / 1e9 - self._offset
        if self.body is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            if not head.startswith(self.kind.answer):
                self.ready.set_exception(RuntimeError(head.split(b"\r\n")[0].decode()))
                return
            self.body = self.kind(head)
            self.head = b""
        if self.on_bytes is not None:
            if not self.ready.done():
                self.ready.set_result(None)
            self.on_bytes(data, arrived, read)
            return
        events, answer = self.body.feed(data)
        if answer:
            self.socket.send(answer)  # a few bytes: a socket's buffer always takes them
        if self.body.ready and not self.ready.done():
            self.ready.set_result(None)
        for event in events:
            self.on_event(event, arrived, read)

    def _lost(self) -> None:
        self.close()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before answering"))

    def close(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to remove
                asyncio.get_running_loop().remove_reader(self.socket.fileno())
            self.socket.close()
            self.socket = None
        self.closed = True


async def subscribe(
    port: int,
    request: bytes,
    on_event: Callable[[Event, float, float], None] | None,
    body: type[EventStream | SocketIOStream] = EventStream,
    on_bytes: Callable[[bytes, float, float], None] | None = None,
) -> Subscriber:
    subscriber = Subscriber(request, on_event, body, on_bytes)
    await subscriber.open(port)
    try:
        await asyncio.wait_for(subscriber.ready, 60)
    except BaseException:
        subscriber.close()
        raise
    return subscriber


async def subscribe_all(
    label: str,
    port: int,
    requests: list[bytes],
    on_event,
    body: type[EventStream | SocketIOStream] = EventStream,
    *,
    at_once: int = 64,
    raw: bool = False,
) -> list[Subscriber]:
    """Open every stream, `at_once` connecting at a time, with a progress line; the
    streams in the order of `requests`. `on_event` is one callback for all, or a list
    of one per request; with `raw`, each is given the body's bytes instead of events
    (`Subscriber.on_bytes`)."""
    gate = asyncio.Semaphore(at_once)
    handlers = on_event if isinstance(on_event, list) else [on_event] * len(requests)
    opened: list[Subscriber | None] = [None] * len(requests)
    done = 0

    async def one(index: int) -> None:
        nonlocal done
        async with gate:
            handler = handlers[index]
            opened[index] = await subscribe(
                port,
                requests[index],
                None if raw else handler,
                body,
                handler if raw else None,
            )
            done += 1
            if label and (done % 100 == 0 or done == len(requests)):
                progress(label, done, len(requests))

    await asyncio.gather(*(one(index) for index in range(len(requests))))
    return opened


class Connection:
    """A keep-alive HTTP/1.1 client connection (responses with Content-Length only)."""

    # uvicorn closes a keep-alive connection idle for 5 s; a browser then opens another.
    IDLE_LIMIT = 4.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def request(self, raw: bytes) -> int:
        return (await self.exchange(raw))[0]

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """The response's status and body."""
        if self.writer is not None and time.monotonic() - self.used > self.IDLE_LIMIT:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            return await self._exchange(raw)
        try:
            return await self._exchange(raw)
        except (OSError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            # A kept-alive connection the server closed as the request went out (its idle
            # timer runs from its own clock; a loaded client reads late): a browser sends
            # the request again on a new connection when no byte of an answer came.
            self.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            return await self._exchange(raw)

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        body = await self.reader.readexactly(int(length[1]) if length else 0)
        self.used = time.monotonic()
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()
        return int(head[9:12]), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


class Posters:
    """Sends requests from `size` keep-alive connections; a request waits for a free one
    (and that wait counts in its latency, which runs from its intended send time)."""

    def __init__(self, port: int, size: int) -> None:
        self.queue: asyncio.Queue[tuple[bytes, float, Callable[[int, float], None]]] = (
            asyncio.Queue()
        )
        self.busy = 0  # requests sent and not yet answered
        self.workers = [asyncio.create_task(self._work(Connection(port))) for _ in range(size)]

    def send(self, raw: bytes, intended: float, done: Callable[[int, float], None]) -> None:
        self.queue.put_nowait((raw, intended, done))

    async def _work(self, connection: Connection) -> None:
        try:
            while True:
                raw, intended, done = await self.queue.get()
                self.busy += 1
                try:
                    status = await connection.request(raw)
                except (OSError, asyncio.IncompleteReadError):
                    connection.close()
                    status = 0
                self.busy -= 1
                done(status, time.perf_counter() - intended)
        finally:
            connection.close()

    async def drained(self, within: float) -> None:
        """Waits (up to `within` seconds) until every request sent has its answer."""
        deadline = time.perf_counter() + within
        while self.queue.qsize() or self.busy:
            if time.perf_counter() > deadline:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


async def send_at_rate(
    schedule: list[tuple[float, object]], send: Callable[[object, float], None], label: str
) -> None:
    """Calls `send(item, intended_time)` for each (offset seconds, item), at its time."""
    started = time.perf_counter()
    shown = 0
    for offset, item in schedule:
        intended = started + offset
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        send(item, intended)
        if offset - shown >= 1:
            shown = int(offset)
            progress(label, shown, math.ceil(schedule[-1][0]))
    total = max(1, math.ceil(schedule[-1][0]))
    progress(label, total, total)
