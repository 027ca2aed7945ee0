"""`chat backup PATH` and `chat restore PATH`: a consistent copy of the database and the
media directory, taken while the server runs.

SQLite: SQLite's online backup API copies the database in one step under a read
transaction, which in WAL mode does not stop writers: the copy is the database as it
was at one moment. PostgreSQL: its own tools do it better than we could, so the
command prints the `pg_dump` (and, to restore, `pg_restore`) command to run. The media
directory is copied after the database (a file whose row is not in the backup is
harmless; a row without its file is not)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import make_url

from chat.settings import Settings

DATABASE_FILE = "chat.db"
DUMP_FILE = "chat.pgdump"
MEDIA = "media"


class BackupRefused(RuntimeError):
    """Why the backup or restore was not done (nothing was changed)."""


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        raise BackupRefused("an in-memory database cannot be backed up")
    return Path(database)


def _plain_url(settings: Settings) -> str:
    """The PostgreSQL URL as libpq tools take it, without its password (give that in
    PGPASSWORD or ~/.pgpass)."""
    url = make_url(settings.database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=True).replace(":***@", "@")


def _copy_sqlite(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # every page in one step: a snapshot of one moment
    with sqlite3.connect(target) as dst:
        dst.execute("PRAGMA journal_mode=WAL")


def _copy_media(source: Path, target: Path) -> int:
    if not source.exists():
        return 0
    shutil.copytree(source, target, dirs_exist_ok=True)
    return sum(1 for path in target.rglob("*") if path.is_file())


def backup(settings: Settings, path: Path, say: Callable[[str], None]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise BackupRefused(f"{path} is not empty: back up into a new directory")
    if settings.is_sqlite:
        _copy_sqlite(_sqlite_path(settings), path / DATABASE_FILE)
        say(f"database copied to {path / DATABASE_FILE}")
    else:
        say("PostgreSQL: take the database's copy with pg_dump (the server may keep running):")
        say(f"  pg_dump --format=custom --file={path / DUMP_FILE} '{_plain_url(settings)}'")
    files = _copy_media(settings.media_dir, path / MEDIA)
    say(f"{files} media files copied to {path / MEDIA}")


def restore(settings: Settings, path: Path, say: Callable[[str], None], replace: bool) -> None:
    """Put a backup in place of the configured database and media (the server stopped)."""
    if settings.is_sqlite:
        source, target = path / DATABASE_FILE, _sqlite_path(settings)
        if not source.exists():
            raise BackupRefused(f"{source} does not exist: is {path} a backup of SQLite?")
        if target.exists() and not replace:
            raise BackupRefused(f"{target} exists: pass --replace to overwrite it")
        for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            leftover.unlink(missing_ok=True)
        _copy_sqlite(source, target)
        say(f"database restored to {target}")
    else:
        say("PostgreSQL: restore the database with pg_restore (the server stopped):")
        say(
            f"  pg_restore --clean --if-exists --no-owner "
            f"--dbname='{_plain_url(settings)}' {path / DUMP_FILE}"
        )
    files = _copy_media(path / MEDIA, settings.media_dir)
    say(f"{files} media files restored to {settings.media_dir}")
