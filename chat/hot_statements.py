"""The hot statements: the few that nearly every request or post runs, run faster than
through an `AsyncSession`. Everything else uses the session (docs/database.md).

Who uses it: the session lookup with the room its path names (chat.auth.load_session,
AuthSession.find_columns), a room's lookup (chat.routes.rooms.find_room), a post's transaction
(MessagePath.post, message_posts.post), and the reads of the room page, the history pages, the
rooms index and the read marker (chat.routes.rooms, chat.routes.messages,
chat.routes.live, chat.html_cache), and the page cache's stamp (chat.page_cache); on
SQLite the session lookup and the stamp are kept while the database is unchanged
(chat.kept_reads). `on_sqlite_connection` lends the SQLite connection itself, in turn, to
the write-ahead log's checkpoints (chat.wal_checkpoints).

What it saves, each a cost paid per request on the one connection every request of an
SQLite process queues for:

- `run_sync_work`: aiosqlite's hops. Through an `AsyncSession` every statement is four
  hops between the event loop and aiosqlite's thread (cursor, execute, fetch, close:
  each a queued call and a wake-up), which cost far more than SQLite itself. Here the
  whole of `work` (ordinary synchronous ORM code) runs on that thread, on the same
  sqlite3 connection, in one hop; and work that arrives while another is under way
  goes with the next hop (`SqliteConnectionQueue`).
- `run_prepared`: SQLAlchemy's per-execution work (session, execution context, result,
  ORM loading), most of a one-row statement's cost. `Prepared` statements are compiled
  once per dialect and run on the DB-API connection with SQLAlchemy's own type
  conversions; `Detached` turns their rows into detached model objects.

How it was measured: `chat bench posts` and `chat bench history` (docs/performance.md),
interleaved runs against the same code through an `AsyncSession`, and the statements
timed one by one in-process; the figures are in the commit messages and
docs/performance.md. `CHAT_FAST_PATHS=0` serves every request through the plain path
(an `AsyncSession`'s `run_sync`, SQLAlchemy's own execution of the same statements), so
the two can still be compared, and the tests check that both give the same results.

It uses private names of aiosqlite (`Connection._execute`, `Connection._conn`) and
SQLAlchemy's instrumentation (`manager_of_class`); both are pinned to their minor
version in pyproject.toml and tests/test_private_names.py fails loudly on an upgrade
that drops them. On PostgreSQL there is no thread to save: the work runs in a session's
`run_sync`, each statement a round trip to the server, with the same code and SQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Dialect, Engine, Executable, Select, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.pool import StaticPool

from chat.db import autocommit_engine, fast_paths
from chat.group_commit import Grouped, run_together

T = TypeVar("T")


async def run_sync_work(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[Session], T],
    *,
    autocommit: bool = False,
) -> T:
    """Run `work` (synchronous code on an ORM session: statements, and a commit if it
    writes) in one hop to the database driver: on SQLite on aiosqlite's own thread and
    sqlite3 connection (checked out from the pool meanwhile, so nothing else uses it).

    `autocommit`: `work` reads, or writes in single statements, so it needs no
    transaction around its statements (see chat.db.autocommit_engine); under READ
    COMMITTED each statement reads the latest commits either way."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "sqlite" or not fast_paths(sessions):
        return await _in_session(sessions, work, autocommit)

    def in_session(aiosqlite_connection: Any) -> T:
        with Session(_thread_engine(aiosqlite_connection), expire_on_commit=False) as db:
            return work(db)

    return await _on_aiosqlite_connection(engine, in_session)


async def run_prepared(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[PreparedRunner], T],
    *,
    autocommit: bool = False,
    group_commit: bool = False,
    one_statement: bool = False,
) -> T:
    """`run_sync_work` for work made of `Prepared` statements, run by a `PreparedRunner`
    on the DB-API connection itself. `work` commits what it writes; anything it leaves
    open is rolled back. `group_commit`: on SQLite, work that queues with other such
    work may be committed with it, each in a savepoint of its own (chat.group_commit);
    its `commit` then ends its savepoint, and it is stored once the group commits.
    `one_statement`: on PostgreSQL, `work` may write in one statement of its own in
    autocommit (its runner's `one_statement` says so; see message_posts.post)."""
    engine = sessions.kw["bind"]
    if not fast_paths(sessions):
        return await _in_session(
            sessions, lambda session: work(PreparedRunner.plain(session)), autocommit
        )
    if engine.dialect.name != "sqlite":
        return await _in_session(
            sessions,
            lambda session: work(PreparedRunner.in_session(session, one_statement)),
            autocommit or one_statement,
        )
    dialect = engine.dialect
    if group_commit:
        return await _on_aiosqlite_connection(engine, Grouped(work, dialect))

    def on_connection(aiosqlite_connection: Any) -> T:
        connection: sqlite3.Connection = aiosqlite_connection._conn
        try:
            return work(PreparedRunner.on_sqlite(connection, dialect))
        finally:
            if connection.in_transaction:  # failed, or left a write uncommitted
                connection.rollback()

    return await _on_aiosqlite_connection(engine, on_connection)


async def _in_session(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[Session], T],
    autocommit: bool,
) -> T:
    """`work` in an `AsyncSession`'s `run_sync`: the plain path, and PostgreSQL's."""
    engine = sessions.kw["bind"]
    if autocommit and engine.dialect.name != "sqlite":
        engine = autocommit_engine(engine)
    async with sessions(bind=engine) as db:
        return await db.run_sync(work)


async def on_sqlite_connection(engine: AsyncEngine, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work(sqlite3 connection)` on the SQLite engine's one connection, on its own
    thread, in turn with the hot statements (chat.wal_checkpoints).
    `work` ends any transaction it begins."""
    return await _on_aiosqlite_connection(engine, lambda connection: work(connection._conn))


async def _on_aiosqlite_connection(engine: AsyncEngine, work: Callable[[Any], T]) -> T:
    """`work(aiosqlite connection)` on that connection's own thread, with the
    connection checked out from the pool meanwhile, so nothing else uses it."""
    queue = _SQLITE_QUEUES.get(engine)
    if queue is None:
        queue = _SQLITE_QUEUES[engine] = SqliteConnectionQueue(engine)
    return await queue.run(work)


class SqliteConnectionQueue:
    """The work waiting for an SQLite engine's one connection. Work that finds none
    under way goes at once. Work that comes while another is under way waits for it,
    then goes together with all the work that came meanwhile, in order, each with its
    own outcome (and its own transaction: each ends its own, as alone): one pool
    checkout and one hop to the thread for all of them. Each on its own would pay both,
    and the thread would sit idle while the event loop handed the connection on from
    one waiting piece of work to the next."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._waiting: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self._under_way = False
        # The task running the waiting work, held here: the event loop holds its tasks
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
            # Back to the pool without I/O (no reset on return: see chat.db.create_engine),
            # so no greenlet is needed, even for work cancelled midway. The work ended
            # its own transaction on the thread.
            pooled.close()

    def _go_on(self) -> None:
        if self._waiting:
            self._batches = asyncio.create_task(self._run_waiting(), name="sqlite-queue")
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
            # Cancelled (the app is stopping): no work is left waiting for ever.
            for _, waiting in (*batch, *self._waiting):
                waiting.cancel()
            self._waiting, self._under_way, self._batches = [], False, None


def _each(
    batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]], connection: Any
) -> list[tuple[bool, Any]]:
    """On the thread: each piece of work in turn, the failure of one not stopping the
    rest; then the work that may be committed together (`Grouped`), together."""
    outcomes: list[tuple[bool, Any] | None] = []
    grouped: list[Grouped[Any]] = []
    for work, _ in batch:
        if isinstance(work, Grouped):
            grouped.append(work)
            outcomes.append(None)
            continue
        try:
            outcomes.append((True, work(connection)))
        except Exception as exc:
            outcomes.append((False, exc))
    together = iter(run_together(grouped, connection) if grouped else ())
    return [next(together) if outcome is None else outcome for outcome in outcomes]


_SQLITE_QUEUES: weakref.WeakKeyDictionary[AsyncEngine, SqliteConnectionQueue] = (
    weakref.WeakKeyDictionary()
)


class Prepared:
    """A Core statement compiled once per dialect, with its parameters' and columns'
    type conversions, to run by `run_prepared`. Parameters are passed by name."""

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
                # The identity key's class (the base of an inheritance hierarchy).
                model.__mapper__.identity_key_from_primary_key(())[0],
                tuple(model.__mapper__.get_property_by_column(c).key for c in model.__table__.c),
                primary_key,
                # The identity key's values as a slice of the row's, when the primary
                # key's columns come first (they do in every table here).
                slice(len(primary_key)) if primary_key == tuple(range(len(primary_key))) else None,
            )
            for model in models
            for primary_key in [tuple(i for i, c in enumerate(model.__table__.c) if c.primary_key)]
        )
        self._columns = tuple(column for model in models for column in model.__table__.c)

    def select(self) -> Select[Any]:
        return select(*self._columns)

    def split(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return self.objects(self.columns(row))

    def columns(self, row: Sequence[Any]) -> tuple[tuple[Any, ...] | None, ...]:
        """Each model's values from `row`, in its table's column order (None where its
        primary key is NULL): what `objects` makes objects of, as often as asked.

        Plain tuples, because chat.kept_reads keeps them for every signed-in user
        (`AuthSession.find_columns`): a dictionary of attributes and an identity key per
        model were 2.3 KB of a kept session, these tuples 0.5 (sys.getsizeof over what
        one kept session alone holds; `chat bench idle` signs in a user per stream).
        `objects` names the values and makes the identity key each time instead: about
        12,000 instructions more per session lookup (callgrind), a microsecond or two."""
        split: list[tuple[Any, ...] | None] = []
        start = 0
        for _, _, keys, primary_key, _ in self._models:
            values = tuple(row[start : start + len(keys)])
            start += len(keys)
            split.append(None if any(values[i] is None for i in primary_key) else values)
        return tuple(split)

    def objects(self, columns: Sequence[tuple[Any, ...] | None]) -> tuple[Any, ...]:
        """New objects, one per model, from `columns` (which stay as they are)."""
        objects = []
        for (manager, identity_class, keys, primary_key, leading), values in zip(
            self._models, columns, strict=True
        ):
            if values is None:
                objects.append(None)
                continue
            instance = manager.new_instance()
            instance.__dict__.update(zip(keys, values, strict=False))  # a slice of len(keys)
            # What make_transient_to_detached leaves on a new object whose columns are
            # all loaded: its identity key, nothing pending or expired (a new state's
            # defaults), at a third of the cost; tests/test_hot_statements.py compares.
            instance_state(instance).key = (
                identity_class,
                values[leading] if leading is not None else tuple(values[i] for i in primary_key),
                None,
            )
            objects.append(instance)
        return tuple(objects)


class PreparedRunner:
    """Runs `Prepared` statements for `run_prepared`: `first` returns a row's values
    converted as SQLAlchemy converts them (or None), `run` returns nothing, and both
    raise SQLAlchemy's own exceptions (chat.db.is_disconnect and callers' handlers see
    what they always see). `one_statement`: the work may write what it can in one
    statement, which commits by itself (run_prepared's `one_statement`)."""

    __slots__ = ("commit", "first", "one_statement", "rollback", "run")

    def __init__(
        self,
        first: Callable[[Prepared, Mapping[str, Any]], tuple[Any, ...] | None],
        run: Callable[[Prepared, Mapping[str, Any]], None],
        commit: Callable[[], None],
        rollback: Callable[[], None],
        one_statement: bool = False,
    ) -> None:
        self.first = first
        self.run = run
        self.commit = commit
        self.rollback = rollback
        self.one_statement = one_statement

    @classmethod
    def on_sqlite(cls, connection: sqlite3.Connection, dialect: Dialect) -> PreparedRunner:
        """On the sqlite3 connection itself, on its own thread."""
        cursor = connection.cursor()

        def execute(sql: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
            try:
                return cursor.execute(sql, parameters)
            except sqlite3.Error as exc:
                raise DBAPIError.instance(
                    sql, parameters, exc, sqlite3.Error, dialect=dialect
                ) from exc

        return cls.compiled_for(dialect, execute, connection.commit, connection.rollback)

    @classmethod
    def in_session(cls, session: Session, one_statement: bool = False) -> PreparedRunner:
        """Within `run_sync`, on the session's connection and in its transaction. Through
        the connection's `exec_driver_sql`: with asyncpg each statement is a round trip
        anyway, and SQLAlchemy then also invalidates a connection that died."""
        connection = session.connection()
        runner = cls.compiled_for(
            connection.dialect, connection.exec_driver_sql, session.commit, session.rollback
        )
        runner.one_statement = one_statement
        return runner

    @classmethod
    def compiled_for(
        cls,
        dialect: Dialect,
        execute: Callable[[str, tuple[Any, ...]], Any],
        commit: Callable[[], None],
        rollback: Callable[[], None],
    ) -> PreparedRunner:
        """Each statement's SQL, compiled once for `dialect`, given to `execute`."""

        def first(prepared: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
            compiled = prepared.compiled(dialect)
            row = execute(compiled.sql, compiled.parameters(values)).fetchone()
            return None if row is None else compiled.row(row)

        def run(prepared: Prepared, values: Mapping[str, Any]) -> None:
            compiled = prepared.compiled(dialect)
            execute(compiled.sql, compiled.parameters(values))

        return cls(first, run, commit, rollback)

    @classmethod
    def plain(cls, session: Session) -> PreparedRunner:
        """The plain path (CHAT_FAST_PATHS=0): each statement executed by SQLAlchemy
        itself on the session's connection, which binds and converts as always."""

        def first(prepared: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
            row = session.connection().execute(prepared.statement, dict(values)).first()
            return None if row is None else tuple(row)

        def run(prepared: Prepared, values: Mapping[str, Any]) -> None:
            session.connection().execute(prepared.statement, dict(values))

        return cls(first, run, session.commit, session.rollback)


# aiosqlite connection → a synchronous engine over the very same sqlite3 connection,
# used only on that connection's own thread (run_sync_work).
_SQLITE_THREAD_ENGINES: weakref.WeakKeyDictionary[Any, Engine] = weakref.WeakKeyDictionary()


def _thread_engine(aiosqlite_connection: Any) -> Engine:
    engine = _SQLITE_THREAD_ENGINES.get(aiosqlite_connection)
    if engine is None:
        sqlite_connection = aiosqlite_connection._conn
        engine = create_sync_engine(
            "sqlite://", creator=lambda: sqlite_connection, poolclass=StaticPool
        )
        _SQLITE_THREAD_ENGINES[aiosqlite_connection] = engine
    return engine
