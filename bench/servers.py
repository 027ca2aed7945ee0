"""The servers a live benchmark measures: `chat serve` on a fresh database holding the
rows its scenario needs (App), and the baselines of bench/ it is compared with.

Each runs on a free port, pinned to core 0 (with one worker) while the driver is pinned
to core 1, when the machine has two. Accounts, rooms, memberships and sessions are
inserted straight into the database (the rows signing up, creating and joining would
make, without an Argon2 hash per account); every request then goes through the server
like a browser's. Server CPU time comes from /proc/<pid>/stat (utime + stime), memory from
/proc/<pid>/status (VmRSS), each summed over the server's worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench.driver import Connection
from bench.protocol import HOST, EventStream, SocketIOStream, http_request
from bench.shared_cpu import SharedCpu

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"


@functools.cache
def _two_cores() -> bool:
    """Whether cores 0 and 1 are ours; asked first by the driver's own pinning (main),
    before this process is on core 1 alone. False where affinity is unknown (macOS)."""
    return hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0)


def pin(pid: int, cores: set[int]) -> None:
    if _two_cores():
        os.sched_setaffinity(pid, cores)


def _descendants(pid: int) -> list[int]:
    """The process and every process it started (uvicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        found.append(queue.pop())
        queue.extend(children.get(found[-1], []))
    return found


@dataclass
class Server:
    """A server process on a free port, pinned to `cores` (its workers inherit them)."""

    name: str
    command: list[str]
    env: dict[str, str]
    cores: set[int] = field(default_factory=lambda: {0})
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    async def start(self) -> Server:
        self.port = free_port()
        with self._log() as log_file:
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 (our own interpreter; Popen only starts it)
                [*self.command, "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        pin(self.process.pid, self.cores)
        deadline = time.monotonic() + 120  # a loaded machine starts slowly
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
        ticks = 0
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        total = 0
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

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
    shared: SharedCpu = field(default_factory=lambda: SharedCpu(None, None))

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
    """`rooms` rooms of `members` members each."""
    return await populate_rooms(database_url, secret_key, [members] * rooms)


async def populate_rooms(
    database_url: str, secret_key: str, sizes: list[int]
) -> dict[int, list[Member]]:
    """A room of each size, each member in that room alone: the rows that signing up,
    creating a room and joining it make; everyone signed in."""
    from sqlalchemy import insert, select

    from chat.db import create_engine
    from chat.models import Membership, Room, User

    count = sum(sizes)
    starts = [sum(sizes[:n]) for n in range(len(sizes))]
    engine = create_engine(database_url)
    async with engine.begin() as db:
        await db.execute(
            insert(User),
            [{"username": f"bench{n:05d}", "password_hash": "!"} for n in range(count)],
        )
        user_ids = list(await db.scalars(select(User.id).order_by(User.id)))
        await db.execute(
            insert(Room),
            [
                {"name": f"bench-{n}", "is_private": False, "created_by_id": user_ids[start]}
                for n, start in enumerate(starts)
            ],
        )
        room_ids = list(await db.scalars(select(Room.id).order_by(Room.id)))
        await db.execute(
            insert(Membership),
            [
                {"user_id": user_ids[starts[r] + m], "room_id": room_id, "role": "member"}
                for r, room_id in enumerate(room_ids)
                for m in range(sizes[r])
            ],
        )
    await engine.dispose()
    signed_in = await sign_in(database_url, secret_key, user_ids)
    return {
        room_id: signed_in[starts[r] : starts[r] + sizes[r]] for r, room_id in enumerate(room_ids)
    }


async def sign_in(database_url: str, secret_key: str, user_ids: list[int]) -> list[Member]:
    """A session for each account (the row and cookies that signing in makes)."""
    from sqlalchemy import insert

    from chat.auth import _serializer, _token_hash
    from chat.db import create_engine
    from chat.models import AuthSession

    tokens = [secrets.token_urlsafe(32) for _ in user_ids]
    engine = create_engine(database_url)
    async with engine.begin() as db:
        await db.execute(
            insert(AuthSession),
            [
                {"token_hash": _token_hash(token), "user_id": user_id}
                for token, user_id in zip(tokens, user_ids, strict=True)
            ],
        )
    await engine.dispose()
    sessions, csrf = _serializer(secret_key, "session"), _serializer(secret_key, "csrf")
    members = []
    for token, user_id in zip(tokens, user_ids, strict=True):
        csrf_secret = secrets.token_urlsafe(32)
        members.append(
            Member(
                user_id,
                {"chat_session": sessions.dumps(token), "chat_csrf": csrf_secret},
                csrf.dumps(csrf_secret),
            )
        )
    return members


def forget_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, int | None]]:
    """(URL, pid): a redis-server of the run's own on a free port where one is
    installed, so that its CPU is the run's alone (bench.shared_cpu); else the shared
    one (pid None: its CPU is not the run's to count)."""
    executable = shutil.which("redis-server")
    if executable is None:
        yield REDIS_URL, None
        return
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (Debian's redis-server)
        [executable, *("--bind", "127.0.0.1", "--port", str(port), "--save", "")],
        stdout=subprocess.DEVNULL,
    )
    pin(process.pid, {0, 1})  # free to use either core, as the shared one is
    try:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class AppDatabase:
    """A fresh, migrated database and the environment of `chat serve` on it."""

    backend: str
    url: str
    secret_key: str
    env: dict[str, str]
    redis_pid: int | None = None

    def shared_cpu(self) -> SharedCpu:
        """The CPU its PostgreSQL backends and its Redis take (bench.shared_cpu)."""
        database = self.url.rsplit("/", 1)[1] if self.backend == "postgres" else None
        return SharedCpu(database, self.redis_pid)

    async def last_seqs(self) -> dict[int, int]:
        """Each room's newest seq."""
        from sqlalchemy import select

        from chat.db import create_engine
        from chat.models import Room

        engine = create_engine(self.url)
        try:
            async with engine.connect() as connection:
                return dict((await connection.execute(select(Room.id, Room.last_seq))).all())
        finally:
            await engine.dispose()

    async def start(self, name: str = "app", workers: int = 1) -> Server:
        """`chat serve --workers N` on it: pinned to core 0 with one worker; with more,
        free to use both cores (shared with the driver)."""
        command = [sys.executable, "-m", "chat", "serve", "--workers", str(workers)]
        server = Server(name, command, self.env, {0} if workers == 1 else {0, 1})
        try:
            return await server.start()
        except BaseException:
            server.stop()
            raise


@contextlib.asynccontextmanager
async def app_database(backend: str, broker: str) -> AsyncIterator[AppDatabase]:
    from chat.cli import upgrade_database

    secret_key = secrets.token_urlsafe(32)
    prefix = f"chat-bench-{secrets.token_hex(6)}:"
    with contextlib.ExitStack() as stack:
        media = stack.enter_context(tempfile.TemporaryDirectory(prefix="chat-bench-media-"))
        redis_url, redis_pid = (
            stack.enter_context(redis_server()) if broker == "redis" else (REDIS_URL, None)
        )
        async with database(backend) as database_url:
            env = {
                "CHAT_DATABASE_URL": database_url,
                # Its own folder, whatever the backend: a benchmark leaves nothing behind.
                "CHAT_MEDIA_DIR": media,
                "CHAT_SECRET_KEY": secret_key,
                "CHAT_LOG_LEVEL": "WARNING",
                "CHAT_BROKER_URL": redis_url if broker == "redis" else "memory://",
                "CHAT_BROKER_PREFIX": prefix,
                # A benchmark offers more than any one person may (docs/configuration.md).
                "CHAT_RATE_LIMITS": "off",
                # The load driver's Host, and wrk's (the address it was given).
                "CHAT_ALLOWED_HOSTS": f"{HOST},127.0.0.1,localhost",
            }
            # `chat db upgrade`, in a thread (Alembic runs its own event loop).
            await asyncio.to_thread(upgrade_database, database_url)
            try:
                yield AppDatabase(backend, database_url, secret_key, env, redis_pid)
            finally:
                if broker == "redis" and redis_pid is None:
                    forget_redis_prefix(redis_url, prefix)


@contextlib.asynccontextmanager
async def running_app(
    backend: str, broker: str, rooms: int, members: int, workers: int = 1
) -> AsyncIterator[App]:
    """`chat serve` on a fresh database of `rooms` rooms of `members` members each."""
    async with app_database(backend, broker) as db:
        population = await populate(db.url, db.secret_key, rooms, members)
        server = await db.start(workers=workers)
        try:
            yield App(backend, server, population, db.shared_cpu())
        finally:
            server.stop()


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
