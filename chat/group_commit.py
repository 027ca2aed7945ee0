"""Group commit on SQLite: posts that queue together for the one connection are
committed together, in one transaction, each inside a savepoint of its own; so are
marks read (`Membership.advance_read`), a crowd's most frequent write.

Why: an SQLite commit costs about as much as the post's statements themselves, and
most of it is per commit, not per row: the full-text index writes a new segment of
its own for each transaction (with its structure record and prefix entries), and the
write-ahead log gets every page the transaction changed (the room's row, the
message table's and each index's last leaf, the member's row) once per commit however
many rows changed on it. Posts arriving together (the usual case under load: they
queue behind the work under way, chat.hot_statements.SqliteConnectionQueue) share all
of that.

What stays as it was:
- The seq is still taken inside the transaction that inserts the message, under
  SQLite's write lock; seq n and n + 1 taken in one group commit together, so n + 1 is
  never committed before n (docs/architecture.md, rule 1).
- Each post's own failure is its own: its savepoint is rolled back and released, and
  the others go on. Only a failed COMMIT fails them all, and each is then told (none is
  stored, none is reported as stored).
- Work that leaves its savepoint open is rolled back to it, as `run_prepared` rolls
  back a transaction left open.
- A post that finds nothing under way, or queues alone, has its own transaction, as
  before; so does every post with CHAT_FAST_PATHS=0 and every post on PostgreSQL (each
  takes the room's row lock and commits in its own session there).

How it was measured: statements of `message_posts.post` on a seeded database (200,000
messages), committed one by one against in groups, and `chat bench http --rows post`
and per-post CPU in process, interleaved with the commit before; the figures are in the
commit message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from chat.hot_statements import PreparedRunner

T = TypeVar("T")

# One outcome per piece of work: (True, its value) or (False, its exception).
Outcome = tuple[bool, Any]


class Grouped(Generic[T]):
    """Work for `run_prepared(..., group_commit=True)` on SQLite's fast path: called on
    the aiosqlite connection it runs alone, in its own transaction; `run_together`
    runs several in one."""

    __slots__ = ("dialect", "work")

    def __init__(self, work: Callable[[PreparedRunner], T], dialect: Dialect) -> None:
        self.work = work
        self.dialect = dialect

    def __call__(self, aiosqlite_connection: Any) -> T:
        from chat.hot_statements import PreparedRunner

        connection: sqlite3.Connection = aiosqlite_connection._conn
        try:
            return self.work(PreparedRunner.on_sqlite(connection, self.dialect))
        finally:
            if connection.in_transaction:  # failed, or left a write uncommitted
                connection.rollback()


def run_together(grouped: list[Grouped[Any]], aiosqlite_connection: Any) -> list[Outcome]:
    """On the connection's thread: each piece of work in its own savepoint of one
    transaction, in order, then one COMMIT."""
    from chat.hot_statements import PreparedRunner

    connection: sqlite3.Connection = aiosqlite_connection._conn
    if len(grouped) == 1 or connection.in_transaction:
        return [_alone(work, aiosqlite_connection) for work in grouped]
    dialect = grouped[0].dialect
    outcomes: list[Outcome] = []
    try:
        connection.execute("BEGIN")
    except sqlite3.Error as exc:
        return [(False, _wrapped("BEGIN", exc, dialect))] * len(grouped)
    for work in grouped:
        savepoint = _Savepoint(connection)
        runner = PreparedRunner.on_sqlite(connection, dialect)
        runner.commit, runner.rollback = savepoint.release, savepoint.roll_back
        try:
            savepoint.begin()
            value = work.work(runner)
        except Exception as exc:
            outcomes.append((False, exc))
        else:
            outcomes.append((True, value))
        try:
            savepoint.roll_back()  # nothing if the work released or rolled back its own
            if not connection.in_transaction:
                raise sqlite3.OperationalError("the transaction was rolled back")
        except sqlite3.Error as exc:
            # SQLite ended the whole transaction (an I/O error, a full disk): what
            # the works before this one wrote is gone too, so none is stored.
            if connection.in_transaction:
                connection.rollback()
            return [(False, _wrapped("ROLLBACK TO", exc, dialect))] * len(grouped)
    try:
        connection.commit()
    except sqlite3.Error as exc:
        connection.rollback()
        failed = (False, _wrapped("COMMIT", exc, dialect))
        return [outcome if not outcome[0] else failed for outcome in outcomes]
    return outcomes


def _alone(work: Grouped[Any], aiosqlite_connection: Any) -> Outcome:
    try:
        return True, work(aiosqlite_connection)
    except Exception as exc:
        return False, exc


def _wrapped(sql: str, exc: sqlite3.Error, dialect: Dialect) -> DBAPIError:
    """As the statements' own errors reach their callers (PreparedRunner.on_sqlite)."""
    return DBAPIError.instance(sql, (), exc, sqlite3.Error, dialect=dialect)


class _Savepoint:
    """One post's savepoint; each ends it once (released, or rolled back and released)."""

    __slots__ = ("_connection", "_open")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._open = False

    def begin(self) -> None:
        self._connection.execute("SAVEPOINT post")
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._connection.execute("RELEASE post")

    def roll_back(self) -> None:
        if self._open:
            self._open = False
            self._connection.execute("ROLLBACK TO post")
            self._connection.execute("RELEASE post")
