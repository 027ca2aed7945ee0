"""The async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import structlog
from sqlalchemy import Dialect, Engine, Executable, Select, event, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.instrumentation import manager_of_class
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
        return await _run_sync(sessions, work, statements_apart)

    def in_session(aiosqlite_connection: Any) -> T:
        with Session(_thread_engine(aiosqlite_connection), expire_on_commit=False) as db:
            return work(db)

    return await _on_sqlite_thread(engine, in_session)


async def driver_trip(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[DriverTrip], T],
    *,
    statements_apart: bool = False,
) -> T:
    """`in_one_trip` for the statements every request or post runs: `Prepared`
    statements on the DB-API connection itself, rows turned into objects by `Detached`.
    For one-row statements SQLAlchemy's work on each execution (session, execution
    context, result, ORM loading) is most of the cost, and on SQLite it runs on the
    thread every request queues for: prepared, a session lookup costs a small fraction
    of what it costs through an ORM session. `work` commits what it writes;
    anything it leaves open is rolled back."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "sqlite":
        return await _run_sync(
            sessions, lambda session: work(DriverTrip.in_session(session)), statements_apart
        )
    dialect = engine.dialect

    def on_connection(aiosqlite_connection: Any) -> T:
        connection: sqlite3.Connection = aiosqlite_connection._conn
        try:
            return work(DriverTrip.on_sqlite(connection, dialect))
        finally:
            if connection.in_transaction:  # failed, or left a write uncommitted
                connection.rollback()

    return await _on_sqlite_thread(engine, on_connection)


async def _run_sync(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[Session], T],
    statements_apart: bool,
) -> T:
    """`work` in a session's `run_sync` (PostgreSQL: each statement a round trip)."""
    engine = sessions.kw["bind"]
    if statements_apart:
        engine = _autocommit(engine)
    async with sessions(bind=engine) as db:
        return await db.run_sync(work)


async def _on_sqlite_thread(engine: AsyncEngine, work: Callable[[Any], T]) -> T:
    """`work(aiosqlite connection)` on that connection's own thread, with the
    connection checked out from the pool meanwhile, so nothing else uses it."""
    trips = _SQLITE_TRIPS.get(engine)
    if trips is None:
        trips = _SQLITE_TRIPS[engine] = SqliteTrips(engine)
    return await trips.run(work)


class SqliteTrips:
    """The trips to an SQLite engine's one connection. A trip that finds none under
    way goes at once. One that comes while another is under way waits for it, then goes
    together with every trip that came meanwhile, in their order, each with its own
    outcome (and its own transaction: each ends its own, as alone): one pool checkout
    and one hop to the thread for all of them. Under load each trip on its own paid both,
    and the thread sat idle while the event
    loop handed the connection on from one waiting trip to the next."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._waiting: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self._under_way = False
        # The task running the waiting trips, held here: the event loop holds its tasks
        # only weakly.
        self._batches: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Any], T]) -> T:
        if self._under_way:
            waiting: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._waiting.append((work, waiting))
            return await waiting
        self._under_way = True
        try:
            return await self._hop(work)
        finally:
            self._go_on()

    async def _hop(self, work: Callable[[Any], T]) -> T:
        # Straight from the pool: an `AsyncConnection` around it (`engine.connect()`)
        # costs three greenlet switches and a `Connection` each time, more than twice
        # the CPU of this, and no statement runs through it.
        pooled = await self._engine.raw_connection()
        try:
            connection = pooled.driver_connection
            # aiosqlite's queue to its thread; SQLAlchemy's own aiosqlite dialect uses it.
            return await connection._execute(lambda: work(connection))
        finally:
            # Back to the pool without I/O (no reset on return: see create_engine), so
            # no greenlet is needed, even for a trip cancelled midway. The work ended
            # its own transaction on the thread.
            pooled.close()

    def _go_on(self) -> None:
        if self._waiting:
            self._batches = asyncio.create_task(self._run_waiting(), name="sqlite-trips")
        else:
            self._under_way = False

    async def _run_waiting(self) -> None:
        batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        try:
            while batch := [(w, f) for w, f in self._waiting if not f.done()]:
                self._waiting = []
                try:
                    outcomes = await self._hop(lambda connection: _each(batch, connection))
                except Exception as exc:  # the checkout or the hop itself
                    outcomes = [(False, exc)] * len(batch)
                for (_, waiting), (succeeded, value) in zip(batch, outcomes, strict=True):
                    if waiting.done():  # its request went away meanwhile
                        continue
                    if succeeded:
                        waiting.set_result(value)
                    else:
                        waiting.set_exception(value)
        finally:
            # Cancelled (the app is stopping): no trip is left waiting for ever.
            for _, waiting in (*batch, *self._waiting):
                waiting.cancel()
            self._waiting, self._under_way, self._batches = [], False, None


def _each(
    batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]], connection: Any
) -> list[tuple[bool, Any]]:
    """On the thread: each trip's work in turn, the failure of one not stopping the rest."""
    outcomes: list[tuple[bool, Any]] = []
    for work, _ in batch:
        try:
            outcomes.append((True, work(connection)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


_SQLITE_TRIPS: weakref.WeakKeyDictionary[AsyncEngine, SqliteTrips] = weakref.WeakKeyDictionary()


class Prepared:
    """A Core statement compiled once per dialect, with its parameters' and columns'
    type conversions, to run in a `driver_trip`. Parameters are passed by name."""

    __slots__ = ("_by_dialect", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[Dialect, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect)
        if compiled is None:
            compiled = self._by_dialect[dialect] = _Compiled.of(self.statement, dialect)
        return compiled


class _Compiled(NamedTuple):
    sql: str
    # Per positional parameter: its name, or, for a value written into the statement
    # (`Room.last_seq + 1`), None and that value.
    names: tuple[str | None, ...]
    written: tuple[Any, ...]
    # Per parameter and per column: SQLAlchemy's conversion (None: the value as is).
    to_database: tuple[Callable[[Any], Any] | None, ...]
    from_database: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        binds = [compiled.binds[name] for name in compiled.positiontup or ()]
        to_database = tuple(
            bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds
        )
        from_database = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.exported_columns  # type: ignore[attr-defined]
        )
        return cls(
            compiled.string,
            tuple(bind.key if bind.required else None for bind in binds),
            tuple(None if bind.required else bind.value for bind in binds),
            to_database,
            from_database,
        )

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            value if convert is None else convert(value)
            for value, convert in zip(
                (
                    written if name is None else values[name]
                    for name, written in zip(self.names, self.written, strict=True)
                ),
                self.to_database,
                strict=True,
            )
        )

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if convert is None or value is None else convert(value)
            for value, convert in zip(row, self.from_database, strict=True)
        )


class Detached:
    """A row of several models' columns side by side (`select()`) → one object of each,
    detached, as a closed session leaves what it loaded, without the session's loading
    machinery (most of a one-row ORM query's cost). None for a model whose primary key
    is NULL in the row (an outer join found nothing)."""

    def __init__(self, *models: type[Any]) -> None:
        self._models = tuple(
            (
                manager_of_class(model),
                tuple(model.__mapper__.get_property_by_column(c).key for c in model.__table__.c),
                tuple(i for i, c in enumerate(model.__table__.c) if c.primary_key),
            )
            for model in models
        )
        self._columns = tuple(column for model in models for column in model.__table__.c)

    def select(self) -> Select[Any]:
        return select(*self._columns)

    def split(self, row: Sequence[Any]) -> tuple[Any, ...]:
        objects = []
        start = 0
        for manager, keys, primary_key in self._models:
            values = row[start : start + len(keys)]
            start += len(keys)
            if any(values[i] is None for i in primary_key):
                objects.append(None)
                continue
            instance = manager.new_instance()
            instance.__dict__.update(zip(keys, values, strict=True))
            make_transient_to_detached(instance)
            objects.append(instance)
        return tuple(objects)


class DriverTrip:
    """Runs `Prepared` statements for a `driver_trip`: given their SQL and parameters,
    `execute` returns something to `fetchone()` from, and raises SQLAlchemy's own
    exceptions (chat.db.is_disconnect and callers' handlers see what they always see)."""

    __slots__ = ("_dialect", "_execute", "commit", "rollback")

    def __init__(
        self,
        execute: Callable[[str, tuple[Any, ...]], Any],
        dialect: Dialect,
        commit: Callable[[], None],
        rollback: Callable[[], None],
    ) -> None:
        self._execute = execute
        self._dialect = dialect
        self.commit = commit
        self.rollback = rollback

    @classmethod
    def on_sqlite(cls, connection: sqlite3.Connection, dialect: Dialect) -> DriverTrip:
        """On the sqlite3 connection itself, on its own thread."""
        cursor = connection.cursor()

        def execute(sql: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
            try:
                return cursor.execute(sql, parameters)
            except sqlite3.Error as exc:
                raise DBAPIError.instance(
                    sql, parameters, exc, sqlite3.Error, dialect=dialect
                ) from exc

        return cls(execute, dialect, connection.commit, connection.rollback)

    @classmethod
    def in_session(cls, session: Session) -> DriverTrip:
        """Within `run_sync`, on the session's connection and in its transaction. Through
        the connection's `exec_driver_sql`: with asyncpg each statement is a round trip
        anyway, and SQLAlchemy then also invalidates a connection that died."""
        connection = session.connection()
        return cls(connection.exec_driver_sql, connection.dialect, session.commit, session.rollback)

    def first(self, prepared: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        compiled = prepared.compiled(self._dialect)
        row = self._execute(compiled.sql, compiled.parameters(values)).fetchone()
        return None if row is None else compiled.row(row)

    def run(self, prepared: Prepared, values: Mapping[str, Any]) -> None:
        compiled = prepared.compiled(self._dialect)
        self._execute(compiled.sql, compiled.parameters(values))


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
    return WalCheckpoints(database, engine)


# 64 MiB of log (4 KiB pages): the round's second checkpoint holds up the app's
# connection, so it should come at most every few seconds under the heaviest load.
LOG_LIMIT_FRAMES = 16_384


class WalCheckpoints:
    """SQLite's checkpoints (copying the write-ahead log back into the database file,
    with an fsync) every `every_seconds`, on a connection and worker thread of their
    own. Left to SQLite, a checkpoint runs inside whichever commit takes the log past
    a thousand pages, on the one connection every request queues for, and each post
    queued behind that commit waits for it. A passive checkpoint waits for no reader or
    writer.

    The log starts over from its beginning only when a transaction begins with all of
    it copied back. Under a steady stream of posts a checkpoint beside them never gets
    there: commits go on while it copies and syncs, and under a steady load of posts
    the log grows for ever. So once the log is over `LOG_LIMIT_FRAMES`, the round ends with a
    second checkpoint on the app's own connection, between its transactions: it copies
    only what was written meanwhile (a short wait for every post), and the
    next commit starts the log over."""

    def __init__(self, database_path: str, engine: AsyncEngine, every_seconds: float = 1.0) -> None:
        self._path = database_path
        self._engine = engine
        self._every = every_seconds
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread for the connection's whole life: cancelling a checkpoint's await
        # does not stop the checkpoint, so closing on another thread could close the
        # connection under it (a segfault, seen in the tests' teardown).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoints")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wal-checkpoints")

    async def checkpoint(self) -> tuple[int, int, int]:
        """A round: (busy, frames in the log, frames copied) of its checkpoint beside the
        app's connection, as `PRAGMA wal_checkpoint` says."""
        outcome = await asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
        _, logged, _ = outcome
        if logged > LOG_LIMIT_FRAMES:
            await _on_sqlite_thread(self._engine, lambda connection: _passive(connection._conn))
        return outcome

    def _checkpoint(self) -> tuple[int, int, int]:
        if self._connection is None:
            self._connection = sqlite3.connect(self._path)
        return _passive(self._connection)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.checkpoint()
            except (sqlite3.Error, SQLAlchemyError) as exc:  # the next round tries again
                log.warning("db.checkpoint_failed", error=str(exc))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Queued behind a checkpoint still running, if any.
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_connection)
        self._thread.shutdown(wait=False)

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _passive(connection: sqlite3.Connection) -> tuple[int, int, int]:
    return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
