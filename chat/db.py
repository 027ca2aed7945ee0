"""The async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Ordinary code reaches the database through one of the factory's sessions (an
`AsyncSession`, `async with request.app.state.db() as db:`); the few statements every
request or post runs go through chat/hot_statements.py instead (docs/database.md).
"""

from __future__ import annotations

import functools
import time
import weakref
from typing import Any

from sqlalchemy import Dialect, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


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
        # chat.hot_statements' work ends its transaction on the thread. Through aiosqlite
        # that rollback was one more hop to the thread per request, for nothing.
        engine = create_async_engine(
            database_url, pool_size=1, max_overflow=0, pool_reset_on_return=None
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        if checkpoints_apart:
            event.listen(engine.sync_engine, "connect", _no_checkpoints_in_commits)
        return engine
    # The pool's connections rest in autocommit: a checkout's ping is then one round trip,
    # where asyncpg wraps it in BEGIN and ROLLBACK otherwise. Sessions are transactions
    # all the same (create_sessionmaker). Twenty kept: at sixteen requests at once a pool
    # of ten closed and reopened its overflow connections all the time.
    engine = create_async_engine(
        database_url, pool_size=20, max_overflow=10, isolation_level="AUTOCOMMIT"
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
    event.listen(
        engine.sync_engine.pool,
        "checkout",
        functools.partial(_ping_if_rested, engine.sync_engine.dialect),
    )
    return engine


# A connection back in use within this long is not pinged again (pool_pre_ping pings on
# every checkout: a round trip per request, a third of a page served from the page cache).
PING_AFTER_SECONDS = 1.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_rested(dialect: Dialect, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """pool_pre_ping for connections that rested in the pool: a restarted server's dead
    connections are replaced, not handed to a request. One that died while in steady use
    fails its request (503, chat.app) and SQLAlchemy then replaces the whole pool."""
    checked_in = record.info.get("checked_in_at")
    if checked_in is None or time.monotonic() - checked_in < PING_AFTER_SECONDS:
        return
    try:
        alive = dialect.do_ping(dbapi_connection)
    except Exception as exc:  # any failure to ping means the connection is gone
        raise DisconnectionError() from exc
    if not alive:
        raise DisconnectionError()


def is_disconnect(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached or the connection
    died (restart, network, pg_terminate_backend): the request may be retried,
    unlike an error in the statement itself."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


# The sessions' engine (READ COMMITTED) → the same pool in autocommit (autocommit_engine).
_AUTOCOMMIT_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)


def create_sessionmaker(
    engine: AsyncEngine, *, fast_paths: bool = True
) -> async_sessionmaker[AsyncSession]:
    """Sessions, each a transaction (READ COMMITTED on PostgreSQL, whose connections
    otherwise rest in autocommit: see create_engine). Without `fast_paths`
    (CHAT_FAST_PATHS=0), chat.hot_statements runs its work in these sessions too."""
    if engine.dialect.name != "sqlite":
        transactions = engine.execution_options(isolation_level="READ COMMITTED")
        # Autocommit work takes the engine itself: an option set on top of the
        # sessions' would run after theirs and lose (SQLAlchemy applies both).
        _AUTOCOMMIT_ENGINES[transactions] = engine
        engine = transactions
    return async_sessionmaker(engine, expire_on_commit=False, info={FAST_PATHS: fast_paths})


# The key in each session's `info` (and its factory's) that says whether the hot
# statements take their fast path.
FAST_PATHS = "chat.fast_paths"


def fast_paths(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether chat.hot_statements takes its fast path for these sessions."""
    return sessions.kw.get("info", {}).get(FAST_PATHS, True)


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """The sessions' engine `engine`, its connections (the same pool) in autocommit: for
    work that reads, or writes in single statements, on PostgreSQL each statement then
    commits by itself, which saves the round trips of BEGIN and of the ROLLBACK or COMMIT."""
    autocommit = _AUTOCOMMIT_ENGINES.get(engine)
    if autocommit is None:
        autocommit = _AUTOCOMMIT_ENGINES[engine] = engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
    return autocommit
