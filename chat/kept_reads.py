"""Reads kept in memory while an SQLite database stays unchanged: the session lookup
(chat.auth.load_session) and the page cache's stamps (chat.page_cache).

What it saves: every signed-in request looked its session up, and every page served
from the page cache read its stamp, on SQLite's thread. Each such hop (the queue, the
thread's wake-up, the GIL handed over and back, the rows made into values) cost far
more CPU than the statement, and most of what a kept page still cost. A read kept
here costs a dictionary lookup; `chat bench cost` and `chat bench http` (with the
figures in the commit messages) measure it.

How it stays right:

- **Unchanged means unchanged.** A change is seen through a read-only connection of
  this module's own: its `PRAGMA data_version` moves whenever another connection
  commits to the file (this process's own, chat.db.create_engine, or another
  process's: a worker, `chat admin ...`), and only then. It is read on the event loop
  (a counter in the write-ahead log's shared memory, a few microseconds), so a read
  kept since the version last moved makes no trip to the database's thread.
- **Version first.** The version is read once per request, at its first kept read, and
  before any read it labels: a commit in between makes the next request's version
  differ, so a value is never older than its label. A request sees the database as it
  was at that moment at the earliest, as if it had been read then.
- **Values, not objects.** What is kept is rows of plain values, never ORM objects,
  which a request may change or attach to its session: each request makes its own.
- **Bounded.** At most `KEPT` values for the current version; all are dropped when it
  moves.
- **Elsewhere, nothing is kept.** On PostgreSQL, for an in-memory database, when the
  version cannot be read (a busy database: the watcher never waits) and with
  CHAT_FAST_PATHS=0, every read goes to the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")

# Where a request's version is kept, in its ASGI scope.
VERSION_KEY = "chat.data_version"
_UNREAD = object()


class KeptReads:
    KEPT = 10_000

    def __init__(self, engine: Any = None, *, enabled: bool = True) -> None:
        self._path = _sqlite_file(engine) if enabled and engine is not None else None
        self._watcher: sqlite3.Connection | None = None
        # Replaced whole when the version moves; only added to otherwise.
        self._known: tuple[int | None, dict[Hashable, Any]] = (None, {})

    def version(self, scope: MutableMapping[str, Any]) -> int | None:
        """The database's version as this request sees it (read at its first kept read);
        None when it cannot tell."""
        version = scope.get(VERSION_KEY, _UNREAD)
        if version is _UNREAD:
            version = scope[VERSION_KEY] = self._read_version()
        return version

    def _read_version(self) -> int | None:
        if self._path is None:
            return None
        try:
            if self._watcher is None:
                # timeout=0: never wait on the event loop for a lock; a busy database
                # answers None, and the read goes to the database's thread instead.
                self._watcher = sqlite3.connect(
                    f"file:{quote(self._path)}?mode=ro", uri=True, timeout=0
                )
            return self._watcher.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    async def read(
        self,
        scope: MutableMapping[str, Any],
        key: Hashable,
        fetch: Callable[[], Awaitable[T]],
    ) -> T:
        """The value `fetch` reads for `key`: kept, or read now and kept."""
        version = self.version(scope)
        if version is None:
            return await fetch()
        known_version, values = self._known
        if version == known_version:
            value = values.get(key, _UNREAD)
            if value is not _UNREAD:
                return value  # type: ignore[no-any-return]
        value = await fetch()
        if self._known[0] != version:
            self._known = (version, {})
        if len(self._known[1]) < self.KEPT:
            self._known[1][key] = value
        return value

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None


def _sqlite_file(engine: Any) -> str | None:
    """The file of an SQLite engine; None for any other database, or one in memory."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return str(path)
