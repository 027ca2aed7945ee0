"""Test helpers: a person with a browser-like HTTP client, a real server, an SSE reader."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx

from chat.sse import Cursor

ROOT = Path(__file__).resolve().parent.parent
# The local services (DEVELOPERS.md); each test run works in a database of its own and
# under a Redis channel prefix of its own, so runs beside each other do not meet.
POSTGRES_SERVER = os.environ.get("TEST_POSTGRES_SERVER", "postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T = TypeVar("T")
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PASSWORD = "correct horse battery"


class Person:
    """One person's browser: own cookies, same-origin headers, the page's CSRF token."""

    def __init__(self, client: httpx.AsyncClient, username: str) -> None:
        self.client = client
        self.username = username
        self.csrf_token = ""

    async def get(self, url: str, **kwargs: object) -> httpx.Response:
        response = await self.client.get(url, **kwargs)
        if match := CSRF_META.search(response.text):
            self.csrf_token = match.group(1)
        return response

    async def post(
        self, url: str, data: dict[str, str] | None = None, *, htmx: bool = False, **kwargs: object
    ) -> httpx.Response:
        if not self.csrf_token:
            await self.get("/login")
        headers = {"HX-Request": "true"} if htmx else {}
        response = await self.client.post(
            url, data={"csrf_token": self.csrf_token, **(data or {})}, headers=headers, **kwargs
        )
        if any(name.endswith("chat_csrf") for name in response.cookies):
            # Signing in gives a new CSRF secret: a browser gets its token with the next
            # page it loads.
            await self.get("/")
        return response

    async def signup(self) -> Person:
        response = await self.post("/signup", {"username": self.username, "password": PASSWORD})
        assert response.status_code == 303, response.text
        return self

    async def create_room(self, name: str = "general", visibility: str = "public") -> int:
        response = await self.post("/rooms", {"name": name, "visibility": visibility})
        assert response.status_code == 303, response.text
        return int(response.headers["location"].rsplit("/", 1)[1])

    async def join(self, room_id: int) -> None:
        response = await self.post(f"/rooms/{room_id}/join")
        assert response.status_code == 303, response.text

    async def say(self, room_id: int, body: str) -> httpx.Response:
        response = await self.post(f"/rooms/{room_id}/messages", {"body": body}, htmx=True)
        assert response.status_code == 200, response.text
        return response


# uvicorn closes a connection idle for 5 s (its timeout_keep_alive) and httpx keeps one
# for 5 s too: a request sent on it as the server closes it fails with a ReadError, and
# a POST is not retried (a browser would retry it). Let idle connections go well before.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=1.0)


def client_for(base_url: str, **kwargs: object) -> httpx.AsyncClient:
    kwargs.setdefault("limits", LIMITS)
    return httpx.AsyncClient(base_url=base_url, headers={"Origin": base_url}, **kwargs)


# --- a real server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# `chat serve` children are forked from a process that has already imported the app
# (multiprocessing's forkserver): starting the interpreter and importing SQLAlchemy,
# Starlette and the rest took most of the 2 s a server needed to answer, for each of
# the hundred-odd tests that start one. What runs after the fork is `chat serve` itself.
_SERVERS = multiprocessing.get_context("forkserver")
_SERVERS.set_forkserver_preload(["tests.server_preload", "uvicorn", "uvloop", "httptools"])


def _chat_serve(argv: list[str], env: dict[str, str], log_path: str | None) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    # Standard streams as a subprocess would have them: multiprocessing closed stdin,
    # and uvicorn hands it on to its worker processes (--workers).
    with open(os.devnull, "r+b") as devnull:
        os.dup2(devnull.fileno(), 0)
        os.dup2(devnull.fileno(), 1)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    if log_path is not None:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 2)
    from chat.cli import main

    main(argv)


@dataclass
class LiveServer:
    """`chat serve` in a child process, as in production (uvicorn, uvloop, httptools)."""

    env: dict[str, str]
    log_path: Path | None = None
    port: int = field(default_factory=free_port)
    process: multiprocessing.process.BaseProcess | None = None
    workers: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LiveServer:
        argv = ["serve", "--port", str(self.port), "--workers", str(self.workers)]
        log_path = None if self.log_path is None else str(self.log_path)
        self.process = _SERVERS.Process(
            target=_chat_serve, args=(argv, {**os.environ, **self.env}, log_path)
        )
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"chat serve exited with {self.process.exitcode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        self.stop()  # a server that never answered must not outlive its test
        raise TimeoutError("chat serve did not answer /healthz")

    def kill(self) -> None:
        """SIGKILL: no shutdown, connections simply drop (a crashed worker)."""
        assert self.process is not None
        self.process.kill()
        self.process.join()

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()


@dataclass
class RedisServer:
    """A private `redis-server` on a free port: one that a test may stop and start again
    (the shared one on 6379 is left alone)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "chat", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_dsn(database: str) -> str:
    return f"postgresql://{POSTGRES_SERVER}/{database}"


@contextmanager
def postgres_database(purpose: str = "test") -> Iterator[str]:
    """A new, empty database (`chat_<purpose>_<random>`) as a SQLAlchemy URL; dropped
    afterwards, with whatever connections are still open to it."""
    name = f"chat_{purpose}_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(postgres_dsn("postgres"), timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    run_apart(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{POSTGRES_SERVER}/{name}"
    finally:
        run_apart(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def empty_postgres_tables(database_url: str) -> None:
    """Every table emptied and its ids restarted (much faster than recreating the schema)."""

    async def truncate() -> None:
        connection = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=5)
        try:
            tables = await connection.fetch(
                "SELECT quote_ident(tablename) AS name FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            names = ", ".join(row["name"] for row in tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()

    run_apart(truncate())


def run_apart(coroutine: Coroutine[object, object, T]) -> T:
    """Run a coroutine to completion from synchronous code, even while a test's event
    loop exists (on a thread of its own, so that loop is left alone)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


# --- Server-Sent Events -------------------------------------------------------------------


@dataclass
class Event:
    event: str
    data: str
    id: str | None = None

    @property
    def cursor(self) -> Cursor:
        cursor = Cursor.parse(self.id or "")
        assert cursor is not None, self.id
        return cursor

    @property
    def seq(self) -> int:
        return self.cursor.seq


class EventStream:
    """Reads a text/event-stream response one event at a time (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        # What a browser would send as Last-Event-ID (id-only blocks move it too).
        self.last_id: str | None = None

    async def next(self, timeout: float = 10.0) -> Event | None:
        """The next event, or None when the server closed the stream."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Event | None:
        fields: dict[str, list[str]] = {}
        async for line in self._lines:
            if line == "":
                if "id" in fields:
                    self.last_id = fields["id"][-1]
                if "data" in fields:
                    return Event(
                        event=fields.get("event", ["message"])[-1],
                        data="\n".join(fields["data"]),
                        id=fields.get("id", [None])[-1],
                    )
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        return None

    async def messages(self, count: int, timeout: float = 10.0) -> list[Event]:
        """The next `count` message events, skipping other event types."""
        received: list[Event] = []
        while len(received) < count:
            event = await self.next(timeout)
            assert event is not None, f"stream closed after {len(received)} of {count} messages"
            if event.event == "message":
                received.append(event)
        return received

    async def next_of(self, kind: str, timeout: float = 10.0) -> Event:
        """The next event named `kind`, skipping events of other kinds."""
        while True:
            event = await self.next(timeout)
            assert event is not None, f"stream closed before an event: {kind}"
            if event.event == kind:
                return event

    async def closed(self, timeout: float = 10.0) -> bool:
        """True once the server ends the stream (events before the end are skipped)."""
        while (await self.next(timeout)) is not None:
            pass
        return True


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    async with client.stream("GET", url, headers=headers or {}) as response:
        yield EventStream(response)
