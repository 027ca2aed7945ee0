"""Fixtures: an app on a fresh database per test, people using it, and a real server.

Every test that uses the database runs twice, once per backend: SQLite + the
in-process broker (one worker) and PostgreSQL + Redis (what scaling out uses).
PostgreSQL: one new database per test run, migrated once, emptied before each
test. Redis: a channel prefix of its own per test. When either service is down
the PostgreSQL variant is skipped, which under CI=true is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from argon2 import PasswordHasher
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

import chat.app
from chat import auth
from chat.app import create_app
from chat.db import create_engine
from chat.models import Base
from chat.settings import Settings
from tests.support import (
    REDIS_URL,
    LiveServer,
    Person,
    RedisServer,
    client_for,
    empty_postgres_tables,
    migrate,
    postgres_database,
)

TEST_SECRET_KEY = "test-secret-key-not-for-production"
BASE_URL = "http://testserver"


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """In-process apps hash with argon2's lowest cost: hundreds of sign-ups per run
    would otherwise spend most of a minute hashing. So does the hash an unknown
    username is checked against (its cost is in the hash), or each failed login of one
    cost a real hash. Live servers keep the real cost."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_hasher", cheap)
        patch.setattr(auth, "_DUMMY_HASH", cheap.hash("not anyone's password"))
        yield


class UntouchedCollector:
    """What the `app` fixture's app gets for chat.collector.Collector: the test process's
    garbage collector left alone. The real one's start-up full collection walks
    everything the test process holds, some 200,000 objects, and its close unfreezes
    them all again, so each of the thousand tests that make an app paid for a walk of
    the whole process. Live servers and servers in process (tests/test_stream_serving.py)
    run the real one, and tests/test_collector.py tests it."""

    def __init__(self, **_options: object) -> None:
        pass

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """This run's PostgreSQL database (`chat_test_<random>`), migrated; dropped at the end."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_database())
        except OSError as exc:
            pytest.skip(f"PostgreSQL is not reachable: {exc}")
        migrate({"CHAT_DATABASE_URL": url})
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated by `chat db upgrade` per test run (per xdist worker),
    copied for each live server: the migration subprocess takes seconds, a copy does not."""
    path = tmp_path_factory.mktemp("template") / "chat.db"
    migrate({"CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{path}"})
    return path


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable: {exc}")
    return REDIS_URL


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may stop and start again."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    url = request.getfixturevalue("postgres_url")
    empty_postgres_tables(url)
    return url


def forget_redis_prefix(url: str, prefix: str) -> None:
    """Delete the keys (presence, typing) a test's servers left under its prefix."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def broker_env(backend: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if backend == "sqlite":
        yield {}
        return
    url, prefix = request.getfixturevalue("redis_url"), f"chat-test-{secrets.token_hex(6)}:"
    yield {"CHAT_BROKER_URL": url, "CHAT_BROKER_PREFIX": prefix}
    forget_redis_prefix(url, prefix)


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """Where this test's attachments go: never into the repository."""
    return tmp_path / "media"


# In-process clients call the host "testserver"; live servers are at 127.0.0.1.
TEST_HOSTS = {"CHAT_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1"}


# `make test` runs a subset a second time with CHAT_FAST_PATHS=0 (docs/testing.md): the
# apps the tests make take it from the environment, as the live servers do.
FAST_PATHS_ENV = {name: os.environ[name] for name in ("CHAT_FAST_PATHS",) if name in os.environ}


def limits_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A test marked `bulk` posts faster than any person: its app has no rate limits."""
    return {"CHAT_RATE_LIMITS": "off"} if request.node.get_closest_marker("bulk") else {}


@pytest.fixture
def settings(
    database_url: str,
    broker_env: dict[str, str],
    media_dir: Path,
    request: pytest.FixtureRequest,
) -> Settings:
    return Settings.from_env(
        {
            "CHAT_DATABASE_URL": database_url,
            "CHAT_SECRET_KEY": TEST_SECRET_KEY,
            "CHAT_MEDIA_DIR": str(media_dir),
            **TEST_HOSTS,
            **FAST_PATHS_ENV,
            **limits_env(request),
            **broker_env,
        }
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url)
    if settings.is_sqlite:  # PostgreSQL's run database is migrated once and emptied per test
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def app(
    settings: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Starlette]:
    monkeypatch.setattr(chat.app, "Collector", UntouchedCollector)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def people(app: Starlette) -> AsyncIterator[Callable[[str], Awaitable[Person]]]:
    """people("alice") → a signed-up Person with a browser of their own."""
    clients: list[httpx.AsyncClient] = []

    async def sign_up(username: str) -> Person:
        client = client_for(BASE_URL, transport=httpx.ASGITransport(app=app))
        clients.append(client)
        return await Person(client, username).signup()

    yield sign_up
    for client in clients:
        await client.aclose()


@pytest.fixture
async def anonymous(app: Starlette) -> AsyncIterator[Person]:
    async with client_for(BASE_URL, transport=httpx.ASGITransport(app=app)) as client:
        yield Person(client, "")


@pytest.fixture
def server_env(
    database_url: str,
    broker_env: dict[str, str],
    media_dir: Path,
    request: pytest.FixtureRequest,
) -> dict[str, str]:
    return {
        "CHAT_DATABASE_URL": database_url,
        "CHAT_SECRET_KEY": TEST_SECRET_KEY,
        "CHAT_MEDIA_DIR": str(media_dir),
        "CHAT_LOG_LEVEL": "INFO",
        **TEST_HOSTS,
        **limits_env(request),
        **broker_env,
    }


@pytest.fixture
def live_server(
    server_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """A migrated database and `chat serve` on a free port (its log in tmp_path)."""
    url = server_env["CHAT_DATABASE_URL"]
    if url.startswith("sqlite"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), make_url(url).database)
    server = LiveServer(server_env, log_path=tmp_path / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
async def visitors(live_server: LiveServer) -> AsyncIterator[Callable[[str], Awaitable[Person]]]:
    """visitors("alice") → a signed-up Person talking to the live server over TCP."""
    clients: list[httpx.AsyncClient] = []

    async def sign_up(username: str) -> Person:
        client = client_for(live_server.url, timeout=30)
        clients.append(client)
        return await Person(client, username).signup()

    yield sign_up
    for client in clients:
        await client.aclose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under CI=true a skipped test counts as failed: nothing may go unchecked there."""
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos run is by far the longest test: started first, it runs beside the
    rest on a parallel run instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is None)
