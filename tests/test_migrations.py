"""The Alembic migrations build the schema the models describe, from an empty database."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support import ROOT, migrate, postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips when PostgreSQL is down
    with postgres_database("migrations") as url:
        yield url


def test_upgrade_head_on_an_empty_database_then_check_finds_no_drift(empty_database):
    env = {"CHAT_DATABASE_URL": empty_database}
    migrate(env)
    check = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "chat/migrations/alembic.ini", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected." in check.stdout + check.stderr


def test_the_database_runs_in_wal_mode_after_migration(tmp_path):
    import sqlite3

    path = tmp_path / "wal.db"
    migrate({"CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{path}"})
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
