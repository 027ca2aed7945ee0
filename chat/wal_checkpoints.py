"""SQLite's checkpoints, apart from the commits: a connection and thread of their own
copy the write-ahead log back into the database file every second."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from chat.hot_statements import on_sqlite_connection

log = structlog.get_logger("chat.wal_checkpoints")


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
            await on_sqlite_connection(self._engine, _passive)
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
