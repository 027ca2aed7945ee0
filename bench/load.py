"""Live-server benchmarks: `chat bench fanout | small-rooms | posts | idle`.

Each run starts the app as production does (`chat serve`: uvicorn, uvloop, httptools, one
worker) on a free port and a fresh database, pinned to core 0, and drives it from this
process, pinned to core 1 (when the machine has two). Subscribers are raw sockets read on
the event loop (chunked SSE, or socket.io over a WebSocket, parsed incrementally) and timed
by the kernel's receive timestamps; posts are keep-alive HTTP/1.1 requests. Accounts,
rooms, memberships and sessions are inserted straight into the database (the rows signing
up, creating and joining would make, without an Argon2 hash per account); every request
then goes through the server like a browser's.

Every message is timestamped at its *intended* send time (start + n / rate) and sent
from a pool of connections without waiting for earlier answers, so a stalled server shows
up as latency instead of as fewer sends (no coordinated omission). Server CPU time comes
from /proc/<pid>/stat (utime + stime), memory from /proc/<pid>/status (VmRSS).

`fanout` and `idle` also run bench/baseline.py (plain sse-starlette, one queue per
client) and, where python-socketio is installed, bench/socketio_baseline.py in the same
invocation, taking turns with the app, and print the ratios.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
MARKER = re.compile(r"bench (\d+) (\d+) end")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The Host header of every request (and so the origin posts come from).
HOST = "bench.localhost"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(label: str, done: int, total: int) -> None:
    print(f"\r{label}: {done:,}/{total:,} ({done / max(total, 1):.0%})", end="", file=sys.stderr)
    if done >= total:
        print(file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def read_summary(latencies_ms: list[float]) -> dict[str, float]:
    """Post→read latencies: what the driver's own reading adds (see Subscriber)."""
    return {
        "read_p50_ms": statistics.median(latencies_ms) if latencies_ms else math.nan,
        "read_p99_ms": percentile(latencies_ms, 0.99),
    }


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies_ms),
        "p50_ms": statistics.median(latencies_ms) if latencies_ms else math.nan,
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": max(latencies_ms, default=math.nan),
    }


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


# --- Server-Sent Events over raw sockets ---------------------------------------------------


@dataclass
class Event:
    event: str
    data: str
    id: str | None = None


class ChunkedDecoder:
    """The body of a `Transfer-Encoding: chunked` response, as its bytes arrive."""

    def __init__(self) -> None:
        self.buffer = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        body = []
        while not self.ended:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.buffer[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if size == 0:
                self.ended = True
                break
            if len(self.buffer) < start + size + 2:
                break
            body.append(self.buffer[start : start + size])
            self.buffer = self.buffer[start + size + 2 :]
        return b"".join(body)


class SSEParser:
    """Events from a text/event-stream, fed in arbitrary pieces. Lines end in CRLF, LF
    or CR; comments and events without data are skipped (as a browser does)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[Event]:
        text = self.pending + data
        held = b""
        if text.endswith(b"\r"):  # perhaps the first half of a CRLF
            text, held = text[:-1], b"\r"
        *blocks, rest = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n")
        self.pending = rest + held
        return [event for block in blocks if (event := self._event(block))]

    @staticmethod
    def _event(block: bytes) -> Event | None:
        name, data, event_id = "message", [], None
        for line in block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id":
                event_id = value
        return Event(name, "\n".join(data), event_id) if data else None


# Linux's SO_TIMESTAMPNS: each read of a socket comes with the time the kernel received
# its bytes (the socket module does not name it).
SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)


def realtime_offset() -> float:
    """CLOCK_REALTIME (the kernel's receive timestamps) minus perf_counter, from the
    closest of a few paired readings."""
    pairs = []
    for _ in range(5):
        before = time.perf_counter()
        now = time.time()
        pairs.append((time.perf_counter() - before, now - before))
    return min(pairs)[1]


class EventStream:
    """The body of a text/event-stream response, chunked or not."""

    answer = b"HTTP/1.1 200"

    def __init__(self, head: bytes) -> None:
        self.decoder = ChunkedDecoder() if b"transfer-encoding: chunked" in head.lower() else None
        self.parser = SSEParser()
        self.ready = True

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        """The events `data` completes, and what to send back (nothing, here)."""
        if self.decoder is not None:
            data = self.decoder.feed(data)
        return self.parser.feed(data), b""


class SocketIOStream:
    """Socket.IO (protocol 5, Engine.IO 4) over a WebSocket: each of the server's text
    frames is an Engine.IO packet. It joins the default namespace once the connection
    is open, answers the server's pings, and makes each `42["name", data]` an event."""

    answer = b"HTTP/1.1 101"
    request_path = "/socket.io/?EIO=4&transport=websocket"

    def __init__(self, _head: bytes) -> None:
        self.buffer = b""
        self.ready = False  # until the namespace is joined

    @staticmethod
    def request() -> bytes:
        return http_request(
            "GET",
            SocketIOStream.request_path,
            Upgrade="websocket",
            Connection="Upgrade",
            Sec_WebSocket_Key=base64.b64encode(secrets.token_bytes(16)).decode(),
            Sec_WebSocket_Version="13",
        )

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        self.buffer += data
        events, answers = [], []
        while (frame := self._frame()) is not None:
            opcode, payload = frame
            if opcode == PING:  # the WebSocket's own keepalive (uvicorn's, every 20 s)
                answers.append(_websocket_frame(PONG, payload))
            if opcode != TEXT:  # only text frames carry Engine.IO packets
                continue
            packet = payload.decode()
            if packet.startswith("0"):  # open
                answers.append(_websocket_frame(TEXT, b"40"))
            elif packet == "2":  # Engine.IO's ping
                answers.append(_websocket_frame(TEXT, b"3"))
            elif packet.startswith("40"):  # joined
                self.ready = True
            elif packet.startswith("42"):
                name, *arguments = json.loads(packet[2:])
                events.append(Event(name, arguments[0] if arguments else ""))
        return events, b"".join(answers)

    def _frame(self) -> tuple[int, bytes] | None:
        """The next whole frame of the buffer (a server's frames are not masked; these
        are never fragmented), or None until it has arrived."""
        if len(self.buffer) < 2:
            return None
        opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(self.buffer[2:4]), 4
        elif length == 127:
            length, start = int.from_bytes(self.buffer[2:10]), 10
        if len(self.buffer) < start + length:
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload


TEXT, PING, PONG = 0x1, 0x9, 0xA


def _websocket_frame(opcode: int, payload: bytes) -> bytes:
    """A client's frame (masked, as a client's must be) of a short payload."""
    mask = secrets.token_bytes(4)
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


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
        on_event: Callable[[Event, float, float], None],
        body: type[EventStream | SocketIOStream] = EventStream,
    ) -> None:
        self.request = request
        self.on_event = on_event
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
            data, ancillary, _, _ = self.socket.recvmsg(65536, TIMESTAMP_SPACE)
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        read = time.perf_counter()
        if not data:
            self._lost()
            return
        arrived = read
        for level, kind, stamp in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", stamp)
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


def http_request(
    method: str, path: str, *, cookies: dict[str, str] | None = None, body: bytes = b"", **headers
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    lines.extend(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())
    if method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def subscribe(
    port: int,
    request: bytes,
    on_event: Callable[[Event, float, float], None],
    body: type[EventStream | SocketIOStream] = EventStream,
) -> Subscriber:
    subscriber = Subscriber(request, on_event, body)
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
) -> list[Subscriber]:
    """Open every stream, `at_once` connecting at a time, with a progress line."""
    gate = asyncio.Semaphore(at_once)
    opened: list[Subscriber] = []

    async def one(request: bytes) -> None:
        async with gate:
            opened.append(await subscribe(port, request, on_event, body))
            if len(opened) % 100 == 0 or len(opened) == len(requests):
                progress(label, len(opened), len(requests))

    await asyncio.gather(*(one(request) for request in requests))
    return opened


class Connection:
    """A keep-alive HTTP/1.1 client connection (responses with Content-Length only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await self.reader.readexactly(int(length[1]) if length else 0)
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()
        return int(head[9:12])

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
        self.workers = [asyncio.create_task(self._work(Connection(port))) for _ in range(size)]

    def send(self, raw: bytes, intended: float, done: Callable[[int, float], None]) -> None:
        self.queue.put_nowait((raw, intended, done))

    async def _work(self, connection: Connection) -> None:
        try:
            while True:
                raw, intended, done = await self.queue.get()
                try:
                    status = await connection.request(raw)
                except (OSError, asyncio.IncompleteReadError):
                    connection.close()
                    status = 0
                done(status, time.perf_counter() - intended)
        finally:
            connection.close()

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


# --- the servers -------------------------------------------------------------------------


@functools.cache
def _two_cores() -> bool:
    """Whether cores 0 and 1 are ours; asked first by the driver's own pinning (main),
    before this process is on core 1 alone. False where affinity is unknown (macOS)."""
    return hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0)


def pin(pid: int, core: int) -> None:
    if _two_cores():
        os.sched_setaffinity(pid, {core})


@dataclass
class Server:
    """A server process on a free port, pinned to core 0."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    async def start(self) -> Server:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        with self._log() as log_file:
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 (our own interpreter; Popen only starts it)
                [*self.command, "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        pin(self.process.pid, 0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            connection = Connection(self.port)
            try:
                if await connection.request(http_request("GET", "/healthz")) == 200:
                    return self
            except OSError:
                await asyncio.sleep(0.1)
            finally:
                connection.close()
        raise TimeoutError(f"{self.name} did not answer /healthz")

    def _log(self):  # -> a file the server writes its log to, kept when it fails to start
        handle, path = tempfile.mkstemp(prefix=f"chat-bench-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        return os.fdopen(handle, "wb")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Baseline:
    """A server of bench/ doing the app's fan-out job another way, and how to use it."""

    name: str
    module: str  # uvicorn's app
    stream_request: bytes  # opens a subscriber's stream
    body: type[EventStream | SocketIOStream]

    def server(self) -> Server:
        return Server(
            self.name,
            [
                *(sys.executable, "-m", "uvicorn", self.module),
                *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
                *("--log-level", "warning", "--app-dir", str(ROOT)),
            ],
            {},
        )


def baselines() -> list[Baseline]:
    """Plain sse-starlette, and socket.io where python-socketio is installed."""
    found = [
        Baseline("baseline", "bench.baseline:app", http_request("GET", "/events"), EventStream)
    ]
    if _has_socketio():
        found.append(
            Baseline(
                "socketio", "bench.socketio_baseline:app", SocketIOStream.request(), SocketIOStream
            )
        )
    return found


def _has_socketio() -> bool:
    try:
        import socketio  # noqa: F401
    except ImportError:
        return False
    return True


SOCKETIO_MISSING = "skipped: python-socketio is not installed"


@dataclass
class Member:
    user_id: int
    cookies: dict[str, str]
    csrf_token: str


@dataclass
class App:
    """`chat serve` on a fresh database holding `rooms` rooms of `members` members."""

    backend: str
    server: Server
    rooms: dict[int, list[Member]] = field(default_factory=dict)

    def stream_request(self, room_id: int, member: Member) -> bytes:
        return http_request(
            "GET", f"/rooms/{room_id}/events", cookies=member.cookies, Accept="text/event-stream"
        )

    def post_request(self, room_id: int, member: Member, body: str) -> bytes:
        return http_request(
            "POST",
            f"/rooms/{room_id}/messages",
            cookies=member.cookies,
            body=f"body={quote(body)}".encode(),
            Origin=f"http://{HOST}",
            Content_Type="application/x-www-form-urlencoded",
            X_CSRF_Token=member.csrf_token,
            HX_Request="true",
        )


@contextlib.asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="chat-bench-")
        try:
            yield f"sqlite+aiosqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    import asyncpg

    name = f"chat_bench_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(f"postgresql://{POSTGRES_SERVER}/postgres")
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{POSTGRES_SERVER}/{name}"
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def populate(
    database_url: str, secret_key: str, rooms: int, members: int
) -> dict[int, list[Member]]:
    """Insert the rows that signing up, creating a room, joining it and signing in make."""
    from sqlalchemy import insert, select

    from chat.auth import _serializer, _token_hash
    from chat.db import create_engine
    from chat.models import AuthSession, Membership, Room, User

    count = rooms * members
    engine = create_engine(database_url)
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    async with engine.begin() as db:
        await db.execute(
            insert(User),
            [{"username": f"bench{n:05d}", "password_hash": "!"} for n in range(count)],
        )
        user_ids = list(await db.scalars(select(User.id).order_by(User.id)))
        await db.execute(
            insert(AuthSession),
            [
                {"token_hash": _token_hash(token), "user_id": user_id}
                for token, user_id in zip(tokens, user_ids, strict=True)
            ],
        )
        await db.execute(
            insert(Room),
            [
                {"name": f"bench-{n}", "is_private": False, "created_by_id": user_ids[n * members]}
                for n in range(rooms)
            ],
        )
        room_ids = list(await db.scalars(select(Room.id).order_by(Room.id)))
        await db.execute(
            insert(Membership),
            [
                {"user_id": user_ids[r * members + m], "room_id": room_id, "role": "member"}
                for r, room_id in enumerate(room_ids)
                for m in range(members)
            ],
        )
    await engine.dispose()
    sessions, csrf = _serializer(secret_key, "session"), _serializer(secret_key, "csrf")
    population: dict[int, list[Member]] = {}
    for r, room_id in enumerate(room_ids):
        population[room_id] = []
        for m in range(members):
            n = r * members + m
            csrf_secret = secrets.token_urlsafe(32)
            population[room_id].append(
                Member(
                    user_ids[n],
                    {"chat_session": sessions.dumps(tokens[n]), "chat_csrf": csrf_secret},
                    csrf.dumps(csrf_secret),
                )
            )
    return population


def forget_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def running_app(backend: str, broker: str, rooms: int, members: int) -> AsyncIterator[App]:
    from chat.cli import upgrade_database

    secret_key = secrets.token_urlsafe(32)
    prefix = f"chat-bench-{secrets.token_hex(6)}:"
    with tempfile.TemporaryDirectory(prefix="chat-bench-media-") as media:
        async with database(backend) as database_url:
            env = {
                "CHAT_DATABASE_URL": database_url,
                # Its own folder, whatever the backend: a benchmark leaves nothing behind.
                "CHAT_MEDIA_DIR": media,
                "CHAT_SECRET_KEY": secret_key,
                "CHAT_LOG_LEVEL": "WARNING",
                "CHAT_BROKER_URL": REDIS_URL if broker == "redis" else "memory://",
                "CHAT_BROKER_PREFIX": prefix,
            }
            # `chat db upgrade`, in a thread (Alembic runs its own event loop).
            await asyncio.to_thread(upgrade_database, database_url)
            population = await populate(database_url, secret_key, rooms, members)
            server = Server("app", [sys.executable, "-m", "chat", "serve"], env)
            try:
                await server.start()
                yield App(backend, server, population)
            finally:
                server.stop()
                if broker == "redis":
                    forget_redis_prefix(prefix)


@contextlib.asynccontextmanager
async def running_baselines() -> AsyncIterator[list[tuple[Baseline, Server]]]:
    running: list[tuple[Baseline, Server]] = []
    try:
        for baseline in baselines():
            running.append((baseline, baseline.server()))
            await running[-1][1].start()
        yield running
    finally:
        for _, server in running:
            server.stop()


# --- measuring deliveries ------------------------------------------------------------------


class Deliveries:
    """Post→receive latencies of the messages a run sends, by their body's marker: to
    their arrival at the subscriber's socket, and to this process reading them."""

    def __init__(self) -> None:
        self.run = 0
        self.intended: dict[tuple[int, int], float] = {}
        self.latencies: list[float] = []
        self.read_latencies: list[float] = []
        self.received = 0
        self.events = 0
        self.frames: dict[str, str] = {}  # one data field per event type, as a sample

    def body(self, index: int) -> str:
        return f"bench {self.run} {index} end"

    def on_event(self, event: Event, arrived: float, read: float) -> None:
        self.events += 1
        self.frames.setdefault(event.event, event.data)
        if event.event != "message" or (marker := MARKER.search(event.data)) is None:
            return
        key = (int(marker[1]), int(marker[2]))
        if key[0] == self.run and (intended := self.intended.get(key)) is not None:
            self.latencies.append((arrived - intended) * 1000)
            self.read_latencies.append((read - intended) * 1000)
            self.received += 1

    def start_run(self) -> None:
        self.run += 1
        self.intended.clear()
        self.latencies = []
        self.read_latencies = []
        self.received = 0

    async def drained(self, expected: int, within: float) -> bool:
        deadline = time.perf_counter() + within
        # Polled: deliveries are counted in protocol callbacks, at thousands a second.
        while self.received < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return self.received >= expected


async def quiet(deliveries: Deliveries, label: str, settle: float = 1.0) -> None:
    """Waits until no event has arrived for `settle` seconds (presence notices of
    subscribers that just connected, warm-up messages)."""
    log(f"{label}: waiting for the streams to settle")
    while True:
        seen = deliveries.events
        await asyncio.sleep(settle)
        if deliveries.events == seen:
            return


@dataclass
class Target:
    """A server under test with its subscribers connected: the app or the baseline."""

    name: str
    server: Server
    subscribers: list[Subscriber]
    deliveries: Deliveries
    publish: Callable[[str], bytes]  # body -> raw POST request
    payload: Callable[[str], str] = str  # the body to post for a marker
    latencies: list[float] = field(default_factory=list)
    read_latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    expected: int = 0
    cpu_seconds: float = 0.0
    rounds: list[dict[str, float]] = field(default_factory=list)


async def fanout_round(target: Target, rate: float, seconds: float) -> None:
    deliveries = target.deliveries
    deliveries.start_run()
    count = max(1, round(rate * seconds))
    posters = Posters(target.server.port, 4)
    statuses: list[int] = []

    def send(index: object, intended: float) -> None:
        deliveries.intended[(deliveries.run, index)] = intended
        raw = target.publish(target.payload(deliveries.body(index)))
        posters.send(raw, intended, lambda status, _elapsed: statuses.append(status))

    expected = count * len(target.subscribers)
    with measuring():
        cpu_before, driver_before = target.server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        await send_at_rate([(n / rate, n) for n in range(count)], send, f"{target.name} sending")
        await deliveries.drained(expected, within=10)
        cpu = target.server.cpu_seconds() - cpu_before
        driver_share = (time.process_time() - driver_before) / (time.perf_counter() - started)
    await posters.close()
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"{target.name}: posts answered {sorted(set(statuses))}")
    if closed := sum(subscriber.closed for subscriber in target.subscribers):
        raise RuntimeError(f"{target.name}: {closed} streams were closed by the server")
    target.latencies += deliveries.latencies
    target.read_latencies += deliveries.read_latencies
    target.delivered += deliveries.received
    target.expected += expected
    target.cpu_seconds += cpu
    target.rounds.append(
        {
            **latency_summary(deliveries.latencies),
            **read_summary(deliveries.read_latencies),
            "delivered": deliveries.received,
            "expected": expected,
            "server_cpu_s": cpu,
            # Near 1.0 would mean the driver, not the server, set the pace.
            "driver_cpu_share": driver_share,
        }
    )


def target_summary(target: Target) -> dict[str, object]:
    return {
        **latency_summary(target.latencies),
        **read_summary(target.read_latencies),
        "delivered": target.delivered,
        "expected": target.expected,
        "server_cpu_s": target.cpu_seconds,
        "deliveries_per_cpu_s": target.delivered / target.cpu_seconds
        if target.cpu_seconds
        else math.nan,
        "rounds": target.rounds,
    }


def publish_request(body: str) -> bytes:
    """A baseline's post of a message to every subscriber."""
    return http_request("POST", "/publish", body=body.encode())


async def fanout(options) -> dict[str, object]:
    """One room, S subscribers, R messages/s; the app and the baselines take turns."""
    async with (
        running_app(options.backend, options.broker, 1, options.subscribers) as app,
        running_baselines() as running,
    ):
        room_id, members = next(iter(app.rooms.items()))
        app_deliveries = Deliveries()
        targets = [
            Target(
                "app",
                app.server,
                await subscribe_all(
                    "app streams",
                    app.server.port,
                    [app.stream_request(room_id, member) for member in members],
                    app_deliveries.on_event,
                ),
                app_deliveries,
                lambda body: app.post_request(room_id, members[0], body),
            )
        ]
        for baseline, server in running:
            deliveries = Deliveries()
            subscribers = await subscribe_all(
                f"{baseline.name} streams",
                server.port,
                [baseline.stream_request] * options.subscribers,
                deliveries.on_event,
                baseline.body,
            )
            targets.append(Target(baseline.name, server, subscribers, deliveries, publish_request))
        # A warm-up message each; the baselines then carry the app's rendered partial,
        # so all deliver messages of the same size.
        for target in targets:
            await fanout_round(target, 1, 1)
            target.latencies, target.read_latencies, target.rounds = [], [], []
            target.delivered = target.expected = 0
            target.cpu_seconds = 0.0
        template = app_deliveries.frames["message"]
        for target in targets[1:]:
            target.payload = lambda marker: MARKER.sub(marker, template)
        await quiet(app_deliveries, "app")
        for round_number in range(1, options.rounds + 1):
            for target in targets:
                log(f"round {round_number}/{options.rounds}: {target.name}")
                await fanout_round(target, options.rate, options.seconds)
        for target in targets:
            for subscriber in target.subscribers:
                subscriber.close()
    return {
        "socketio": SOCKETIO_MISSING,
        **{target.name: target_summary(target) for target in targets},
        "frame_bytes": len(template.encode()),
        "latencies_ms": {target.name: target.latencies for target in targets},
    }


async def small_rooms(options) -> dict[str, object]:
    """Many rooms of a few members, every room busy at once."""
    async with running_app(options.backend, options.broker, options.rooms, options.members) as app:
        deliveries = Deliveries()
        requests = [
            app.stream_request(room_id, member)
            for room_id, members in app.rooms.items()
            for member in members
        ]
        subscribers = await subscribe_all(
            "app streams", app.server.port, requests, deliveries.on_event
        )
        await warm_up(app)
        await quiet(deliveries, "app")
        deliveries.start_run()
        rng = random.Random(0)
        per_room = max(1, round(options.rate * options.seconds))
        schedule = sorted(
            (phase + n / options.rate, (room_id, n * len(app.rooms) + r))
            for r, room_id in enumerate(app.rooms)
            for phase in [rng.random() / options.rate]
            for n in range(per_room)
        )
        posters = Posters(app.server.port, options.connections)
        statuses: list[int] = []

        def send(item: object, intended: float) -> None:
            room_id, index = item
            deliveries.intended[(deliveries.run, index)] = intended
            raw = app.post_request(room_id, app.rooms[room_id][0], deliveries.body(index))
            posters.send(raw, intended, lambda status, _elapsed: statuses.append(status))

        expected = len(schedule) * options.members
        with measuring():
            cpu_before = app.server.cpu_seconds()
            await send_at_rate(schedule, send, "posting")
            await deliveries.drained(expected, within=10)
            cpu = app.server.cpu_seconds() - cpu_before
        await posters.close()
        for subscriber in subscribers:
            subscriber.close()
    return {
        "app": {
            **latency_summary(deliveries.latencies),
            **read_summary(deliveries.read_latencies),
            "delivered": deliveries.received,
            "expected": expected,
            "posts_failed": sum(status != 200 for status in statuses),
            "server_cpu_s": cpu,
        },
        "latencies_ms": {"app": deliveries.latencies},
    }


async def warm_up(app: App) -> None:
    """A post to each room first: templates compiled, connections pooled, caches filled."""
    connection = Connection(app.server.port)
    try:
        for room_id, members in app.rooms.items():
            await connection.request(app.post_request(room_id, members[0], "warming up"))
    finally:
        connection.close()


async def posts(options) -> dict[str, object]:
    """Offered post rates stepping up from --start-rate while p99 stays under the limit
    with no failures (or down, while it does not), until the boundary is found."""
    async with running_app(options.backend, options.broker, options.rooms, 1) as app:
        await warm_up(app)
        posters = Posters(app.server.port, options.connections)
        rooms = list(app.rooms.items())
        steps = []
        rate = options.start_rate
        for step in range(options.steps):
            latencies: list[float] = []
            failed = 0

            def done(status: int, elapsed: float, latencies=latencies) -> None:
                nonlocal failed
                if status == 200:
                    latencies.append(elapsed * 1000)
                else:
                    failed += 1

            def send(index: object, intended: float, done=done, step=step) -> None:
                room_id, members = rooms[index % len(rooms)]
                body = f"bench {step} {index} end"
                posters.send(app.post_request(room_id, members[0], body), intended, done)

            count = max(1, round(rate * options.seconds))
            with measuring():
                cpu_before = app.server.cpu_seconds()
                started = time.perf_counter()
                await send_at_rate(
                    [(n / rate, n) for n in range(count)], send, f"{rate:,.0f} posts/s offered"
                )
                deadline = time.perf_counter() + 10
                while len(latencies) + failed < count and time.perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
            summary = {
                "offered_per_s": rate,
                "achieved_per_s": len(latencies) / elapsed,
                **latency_summary(latencies),
                "failed": count - len(latencies),
                "server_cpu_s": app.server.cpu_seconds() - cpu_before,
            }
            summary["sustained"] = (
                summary["failed"] == 0 and summary["p99_ms"] < options.p99_limit_ms
            )
            steps.append(summary)
            log(
                f"  p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
                f"{'' if summary['sustained'] else ' (not sustained)'}"
            )
            # Up while the rate holds, down while it does not; stop at the boundary.
            if len({step["sustained"] for step in steps}) == 2:
                break
            rate = (
                rate * options.step_factor if summary["sustained"] else rate / options.step_factor
            )
        await posters.close()
    sustained = [step["offered_per_s"] for step in steps if step["sustained"]]
    return {
        "app": {"max_sustained_posts_per_s": max(sustained, default=0.0), "steps": steps},
        "p99_limit_ms": options.p99_limit_ms,
    }


async def idle(options) -> dict[str, object]:
    """N streams that receive nothing: server memory per open stream."""
    rooms = max(1, options.streams // options.members)
    async with (
        running_app(options.backend, options.broker, rooms, options.members) as app,
        running_baselines() as running,
    ):
        results: dict[str, object] = {"socketio": SOCKETIO_MISSING}
        app_requests = [
            app.stream_request(room_id, member)
            for room_id, members in app.rooms.items()
            for member in members
        ][: options.streams]
        targets = [("app", app.server, app_requests, EventStream)] + [
            (baseline.name, server, [baseline.stream_request] * options.streams, baseline.body)
            for baseline, server in running
        ]
        for target, server, requests, body in targets:
            # One stream opened and closed first, so lazily built state is in "before".
            warm = await subscribe(server.port, requests[-1], lambda *_: None, body)
            warm.close()
            await asyncio.sleep(0.5)
            before = server.rss_kib()
            errors = 0
            try:
                subscribers = await subscribe_all(
                    f"{target} streams", server.port, requests, lambda *_: None, body
                )
            except (OSError, RuntimeError, TimeoutError) as exc:
                log(f"{target}: {exc!r}")
                subscribers, errors = [], 1
            await asyncio.sleep(1)
            after = server.rss_kib()
            dropped = sum(subscriber.closed for subscriber in subscribers)
            results[target] = {
                "streams": len(subscribers) - dropped,
                "errors": errors + dropped,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_stream": (after - before) / max(1, len(subscribers)),
            }
            for subscriber in subscribers:
                subscriber.close()
    return results


SCENARIOS = {
    "fanout": ("one room, S subscribers, R msgs/s: latency, deliveries per CPU-s", fanout),
    "small-rooms": ("100 rooms x 10 members at 20 msgs/s each: latency", small_rooms),
    "posts": ("max sustained posts/s on one worker with p99 under 50 ms", posts),
    "idle": ("N idle streams: server memory per stream", idle),
}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("live-server scenarios (fanout, small-rooms, posts, idle)")
    group.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    group.add_argument(
        "--broker",
        choices=["memory", "redis"],
        help="default: memory with sqlite (one worker), redis with postgres",
    )
    group.add_argument("--subscribers", type=int, default=1000, help="fanout")
    group.add_argument("--rate", type=float, help="msgs/s (fanout 5, small-rooms 20 per room)")
    group.add_argument("--seconds", type=float, default=10.0, help="per round or step")
    group.add_argument("--rounds", type=int, default=3, help="fanout: turns each")
    group.add_argument("--rooms", type=int, help="small-rooms 100, posts 10")
    group.add_argument("--members", type=int, default=10, help="small-rooms, idle")
    group.add_argument("--streams", type=int, default=5000, help="idle")
    group.add_argument("--connections", type=int, default=64, help="posting connections")
    group.add_argument("--start-rate", type=float, default=100.0, help="posts")
    group.add_argument("--step-factor", type=float, default=1.5, help="posts")
    group.add_argument("--steps", type=int, default=12, help="posts: at most")
    group.add_argument("--p99-limit-ms", type=float, default=50.0, help="posts")
    group.add_argument("--output", type=Path, default=Path("bench-results"))


def _defaults(name: str, options) -> None:
    if options.broker is None:
        options.broker = "memory" if options.backend == "sqlite" else "redis"
    if options.rate is None:
        options.rate = 20.0 if name == "small-rooms" else 5.0
    if options.rooms is None:
        options.rooms = 10 if name == "posts" else 100


# --- reporting -----------------------------------------------------------------------------


def _ratio(app: float, baseline: float, higher_is_better: bool) -> str:
    if not app or not baseline or math.isnan(app) or math.isnan(baseline):
        return "-"
    ratio = app / baseline if higher_is_better else baseline / app
    return f"{ratio:.2f}x"


def table(name: str, result: dict[str, object]) -> Iterator[str]:
    if name in ("fanout", "small-rooms"):
        app, baseline = result["app"], result.get("baseline")
        rows = [
            ("p50 ms", "p50_ms", False),
            ("p99 ms", "p99_ms", False),
            ("max ms", "max_ms", False),
            ("p50 ms, read", "read_p50_ms", False),
            ("p99 ms, read", "read_p99_ms", False),
            ("delivered", "delivered", None),
            ("expected", "expected", None),
            ("server CPU s", "server_cpu_s", None),
        ]
        if baseline:
            rows.append(("deliveries / CPU-s", "deliveries_per_cpu_s", True))
            yield from _beside_baselines(result, rows)
        else:
            for label, key, _ in rows:
                yield f"{label:20} {app[key]:12,.1f}"
    elif name == "posts":
        yield f"{'offered/s':>10} {'achieved/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}"
        for step in result["app"]["steps"]:
            yield (
                f"{step['offered_per_s']:10,.0f} {step['achieved_per_s']:11,.0f} "
                f"{step['p50_ms']:8.1f} {step['p99_ms']:8.1f} {step['failed']:7}"
                f"{'' if step['sustained'] else '  <- p99 over limit or failures'}"
            )
        yield (
            f"max sustained: {result['app']['max_sustained_posts_per_s']:,.0f} posts/s "
            f"(p99 < {result['p99_limit_ms']:.0f} ms)"
        )
    elif name == "idle":
        rows = [
            ("open streams", "streams", None),
            ("errors", "errors", None),
            ("RSS before KiB", "rss_before_kib", None),
            ("RSS after KiB", "rss_after_kib", None),
            ("KiB per stream", "kib_per_stream", False),
        ]
        yield from _beside_baselines(result, rows)


def _beside_baselines(
    result: dict[str, object], rows: list[tuple[str, str, bool | None]]
) -> Iterator[str]:
    """The app's figures, each baseline's, and the ratio to each (>1: the app is better)."""
    others = [name for name in ("baseline", "socketio") if isinstance(result.get(name), dict)]
    yield f"{'':20} {'app':>12}" + "".join(f" {name:>12} {'ratio':>8}" for name in others)
    app = result["app"]
    for label, key, higher in rows:
        line = f"{label:20} {app[key]:12,.1f}"
        for name in others:
            value = result[name][key]
            ratio = "" if higher is None else _ratio(app[key], value, higher)
            line += f" {value:12,.1f} {ratio:>8}"
        yield line
    if not isinstance(result.get("socketio"), dict):
        yield f"socket.io: {result['socketio']}"


def plot(name: str, result: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5))
    if name == "posts":
        steps = result["app"]["steps"]
        rates = [step["offered_per_s"] for step in steps]
        for key in ("p50_ms", "p99_ms"):
            axes.plot(rates, [step[key] for step in steps], marker="o", label=key[:3])
        axes.axhline(result["p99_limit_ms"], linestyle="--", color="grey", label="limit")
        axes.set_xlabel("offered posts/s")
        axes.set_ylabel("post latency, ms (from intended send time)")
    elif name == "idle":
        measured = ("app", "baseline", "socketio")
        labels = [label for label in measured if isinstance(result[label], dict)]
        axes.bar(labels, [result[label]["kib_per_stream"] for label in labels])
        axes.set_ylabel("server RSS per idle stream, KiB")
    else:
        for label, latencies in result["latencies_ms"].items():
            if latencies:
                ordered = sorted(latencies)
                fractions = [100 * (n + 1) / len(ordered) for n in range(len(ordered))]
                axes.plot(fractions, ordered, label=label)
        axes.set_xlabel("percentile")
        axes.set_ylabel("post→receive latency, ms (from intended send time)")
        axes.set_yscale("log")
    axes.set_title(f"chat bench {name}")
    if name != "idle":  # the idle bars are named on their own axis
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
    }


def main(name: str, options) -> dict[str, object]:
    from chat.cli import raise_fd_limit

    _defaults(name, options)
    limit = raise_fd_limit()  # the servers inherit it
    pin(0, 1)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    log(f"chat bench {name}: {options.backend}, broker {options.broker}, fd limit {limit:,}")
    load_before = os.getloadavg()
    result = runner(SCENARIOS[name][1](options))
    result["machine"] = {**machine(), "load_average_before": load_before}
    result["options"] = {key: str(value) for key, value in vars(options).items() if key != "run"}
    for line in table(name, result):
        print(line)
    print(f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    options.output.mkdir(parents=True, exist_ok=True)
    stem = options.output / f"{name}-{options.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    plot(name, result, stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {stem}.json and {stem}.png")
    return result
