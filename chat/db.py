"""The async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

log = structlog.get_logger("chat.db")

T = TypeVar("T")


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (streams replaying history) run beside the one writer;
    # busy_timeout makes concurrent writers queue instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _no_checkpoints_in_commits(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def create_engine(database_url: str, *, checkpoints_apart: bool = False) -> AsyncEngine:
    """The engine; with `checkpoints_apart`, SQLite's commits never checkpoint its
    write-ahead log, for a WalCheckpoints to do it (the app's, which runs one)."""
    if database_url.startswith("sqlite"):
        # SQLite has one writer at a time, and a writer that finds the file locked
        # sleeps in growing steps (busy_timeout). One pooled connection makes this
        # process's requests queue for it instead, which is far faster under load.
        # No rollback as a connection goes back to the pool: a Connection (and so a
        # session) already rolls back whatever it left open when it closes, and
        # in_one_trip's work ends its transaction on the thread. Through aiosqlite that
        # rollback was one more hop to the thread per request, for nothing.
        engine = create_async_engine(
            database_url, pool_size=1, max_overflow=0, pool_reset_on_return=None
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        if checkpoints_apart:
            event.listen(engine.sync_engine, "connect", _no_checkpoints_in_commits)
        return engine
    # The pool's connections rest in autocommit: the ping each checkout makes (a restarted
    # server's dead connections are replaced, not handed to a request) is then one round
    # trip, where asyncpg wraps it in BEGIN and ROLLBACK otherwise. Sessions are
    # transactions all the same (create_sessionmaker).
    return create_async_engine(
        database_url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        isolation_level="AUTOCOMMIT",
    )


def is_disconnect(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached or the connection
    died (restart, network, pg_terminate_backend): the request may be retried,
    unlike an error in the statement itself."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


# The sessions' engine (READ COMMITTED) → the same pool in autocommit (see in_one_trip).
_AUTOCOMMIT_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions, each a transaction (READ COMMITTED on PostgreSQL, whose connections
    otherwise rest in autocommit: see create_engine)."""
    if engine.dialect.name != "sqlite":
        transactions = engine.execution_options(isolation_level="READ COMMITTED")
        # in_one_trip's autocommit work takes the engine itself: an option set on top of
        # the sessions' would run after theirs and lose (SQLAlchemy applies both).
        _AUTOCOMMIT_ENGINES[transactions] = engine
        engine = transactions
    return async_sessionmaker(engine, expire_on_commit=False)


# aiosqlite connection → a synchronous engine over the very same sqlite3 connection,
# used only on that connection's own thread (see in_one_trip).
_SQLITE_THREAD_ENGINES: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()


async def in_one_trip(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[Session], T],
    *,
    statements_apart: bool = False,
) -> T:
    """Run `work` (synchronous code on an ORM session: statements, and a commit if it
    writes) as one trip to the database driver.

    Through aiosqlite every statement is four hops between the event loop and the
    SQLite thread (cursor, execute, fetch, close: each a queued call and a wake-up),
    which cost far more than SQLite itself; here `work` runs on that thread, on the
    same sqlite3 connection (held checked out from the pool meanwhile, so nothing
    else uses it), with no hop between its statements. On PostgreSQL it is the
    session's `run_sync`: each statement is still a round trip to the server, the
    code and its SQL are the same.

    `statements_apart`: `work` reads, or writes in single statements, so it needs no
    transaction around its statements. On PostgreSQL each then commits by itself
    (autocommit), which saves the round trips of BEGIN and of the ROLLBACK or COMMIT;
    under READ COMMITTED each statement reads the latest commits either way."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "sqlite":
        if statements_apart:
            engine = _autocommit(engine)
        async with sessions(bind=engine) as db:
            return await db.run_sync(work)
    async with engine.connect() as connection:
        aiosqlite_connection = (await connection.get_raw_connection()).driver_connection

        def on_sqlite_thread() -> T:
            with Session(_thread_engine(aiosqlite_connection), expire_on_commit=False) as db:
                return work(db)

        # aiosqlite's queue to its thread; SQLAlchemy's own aiosqlite dialect uses it too.
        return await aiosqlite_connection._execute(on_sqlite_thread)


def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine, its connections (the same pool) in autocommit."""
    autocommit = _AUTOCOMMIT_ENGINES.get(engine)
    if autocommit is None:
        autocommit = _AUTOCOMMIT_ENGINES[engine] = engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
    return autocommit


def _thread_engine(aiosqlite_connection: Any) -> Engine:
    engine = _SQLITE_THREAD_ENGINES.get(aiosqlite_connection)
    if engine is None:
        sqlite_connection = aiosqlite_connection._conn
        engine = create_sync_engine(
            "sqlite://", creator=lambda: sqlite_connection, poolclass=StaticPool
        )
        _SQLITE_THREAD_ENGINES[aiosqlite_connection] = engine
    return engine


def sqlite_checkpoints(engine: AsyncEngine) -> WalCheckpoints | None:
    """The checkpoints of an SQLite database file's engine; None for any other."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return WalCheckpoints(database)


class WalCheckpoints:
    """SQLite's checkpoints (copying the write-ahead log back into the database file,
    with an fsync) every `every_seconds`, on a connection and worker thread of their
    own. Left to SQLite, a checkpoint runs inside whichever commit takes the log past
    a thousand pages, on the one connection every request queues for, and each post
    queued behind that commit waits for it. A passive checkpoint waits for no reader or
    writer; once one has copied the whole log, the next commit writes the log from its
    start again, so it does not grow."""

    def __init__(self, database_path: str, every_seconds: float = 1.0) -> None:
        self._path = database_path
        self._every = every_seconds
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wal-checkpoints")

    async def checkpoint(self) -> tuple[int, int, int]:
        """(busy, frames in the log, frames copied), as `PRAGMA wal_checkpoint` says."""
        return await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> tuple[int, int, int]:
        if self._connection is None:
            # Used by one worker thread at a time, never two at once.
            self._connection = sqlite3.connect(self._path, check_same_thread=False)
        return self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.checkpoint()
            except sqlite3.Error as exc:  # the next round tries again
                log.warning("db.checkpoint_failed", error=str(exc))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            await asyncio.to_thread(self._connection.close)
            self._connection = None
