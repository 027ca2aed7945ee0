"""Export, import, backup and restore (issue 23, "The instance")."""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support import ROOT, migrate, postgres_database
from tests.test_attachments import png, send


def chat(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "chat", *args],
        cwd=ROOT,
        env={**os.environ, "CHAT_DATABASE_URL": database_url, "CHAT_SECRET_KEY": "k", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return done


@pytest.fixture
def empty_database(backend: str, tmp_path: Path):
    """Another database, migrated and empty, of the same backend: where imports go."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'imported.db'}"
        else:
            url = stack.enter_context(postgres_database("import"))
        migrate({"CHAT_DATABASE_URL": url})
        yield url


async def test_export_then_import_then_export_gives_the_same_bytes(
    app, people, database_url, empty_database, tmp_path
):
    seeded = await asyncio.to_thread(
        chat, database_url, "seed", "--rooms", "3", "--users", "6", "--messages", "300"
    )
    assert seeded.returncode == 0, seeded.stderr
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room("Ünïcode “room” 🎉")
    await bob.join(room_id)
    await alice.say(room_id, "first, with **markdown** and a newline\nhere")
    await bob.post(f"/rooms/{room_id}/messages", {"body": "a reply", "reply_to": "1"})
    await alice.post(f"/rooms/{room_id}/messages/1", {"body": "first, edited"})
    await bob.post(f"/rooms/{room_id}/messages/1/reactions", {"emoji": "🎉"})
    await alice.say(room_id, "@bob have a look")
    await alice.say(room_id, "gone soon")
    await alice.post(f"/rooms/{room_id}/messages/4/delete")
    assert (await send(alice, room_id, [("cat.png", png(), "image/png")])).status_code == 200

    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    exported = await asyncio.to_thread(chat, database_url, "export", "--output", str(first))
    assert exported.returncode == 0, exported.stderr
    imported = await asyncio.to_thread(chat, empty_database, "import", str(first))
    assert imported.returncode == 0, imported.stderr
    again = await asyncio.to_thread(chat, empty_database, "export", "--output", str(second))
    assert again.returncode == 0, again.stderr
    assert first.read_bytes() == second.read_bytes()

    types = {json.loads(line)["type"] for line in first.read_text().splitlines()}
    assert {"users", "rooms", "memberships", "messages", "reactions", "mentions"} <= types
    assert "attachments" in types
    again = await asyncio.to_thread(chat, empty_database, "import", str(first))
    assert again.returncode == 1 and "not empty" in again.stderr


async def test_a_bad_line_imports_nothing(database_url, empty_database, tmp_path):
    lines = [
        '{"type":"chat-export","format":1,"scope":"instance"}',
        '{"type":"users","id":1,"username":"alice","password_hash":"","created_at":'
        '"2026-12-07T10:00:00+00:00","is_bot":false,"is_admin":false,"deactivated_at":null}',
        '{"type":"secrets","id":1}',
    ]
    broken = tmp_path / "broken.ndjson"
    broken.write_text("\n".join(lines) + "\n")
    done = await asyncio.to_thread(chat, empty_database, "import", str(broken))
    assert done.returncode == 1 and "line 3" in done.stderr
    done = await asyncio.to_thread(chat, empty_database, "export")
    assert done.stdout.count("\n") == 1  # the header alone: alice was not kept
    not_json = tmp_path / "not.ndjson"
    not_json.write_text("hello\n")
    done = await asyncio.to_thread(chat, empty_database, "import", str(not_json))
    assert done.returncode == 1 and "line 1" in done.stderr


async def test_members_download_a_rooms_export_without_anyones_password_hash(people):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("secret", "private")
    await alice.post(f"/rooms/{room_id}/members", {"username": "bob"})
    await alice.say(room_id, "for the record")
    response = await bob.get(f"/rooms/{room_id}/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows[0] == {"type": "chat-export", "format": 1, "scope": "room"}
    assert {row["username"] for row in rows if row["type"] == "users"} == {"alice", "bob"}
    assert all("password_hash" not in row for row in rows)
    assert [row["body"] for row in rows if row["type"] == "messages"] == ["for the record"]
    assert (await carol.get(f"/rooms/{room_id}/export")).status_code == 404


async def test_a_rooms_export_gives_its_database_connection_back_before_the_download_starts(
    people, app
):
    # A slow reader would otherwise hold it for as long as the download takes: on SQLite
    # the one pooled connection, and every other request waits for it.
    alice = await people("alice")
    room_id = await alice.create_room("ops")
    await alice.say(room_id, "for the record")
    pool = app.state.db.kw["bind"].sync_engine.pool
    cookie = "; ".join(f"{name}={value}" for name, value in alice.client.cookies.items())
    path = f"/rooms/{room_id}/export"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    held_while_sending = []

    requested = []

    async def receive():
        if requested:  # the client stays connected: wait as a server would
            await asyncio.Event().wait()
        requested.append(True)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            held_while_sending.append(pool.checkedout())

    await app(scope, receive, send)
    assert held_while_sending and set(held_while_sending) == {0}


@pytest.mark.bulk
@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's is pg_dump's (below)
async def test_a_backup_taken_while_posting_holds_every_acknowledged_message(
    visitors, live_server, database_url, media_dir, tmp_path
):
    alice = await visitors("alice")
    room_id = await alice.create_room("busy")
    acknowledged: list[str] = []
    backing_up = asyncio.Event()
    before_backup: list[str] = []

    async def post_until_done() -> None:
        n = 0
        while not (backing_up.is_set() and len(acknowledged) > len(before_backup) + 20):
            n += 1
            await alice.say(room_id, f"message {n}")
            acknowledged.append(f"message {n}")
            if n == 30:
                before_backup.extend(acknowledged)
                backing_up.set()

    poster = asyncio.create_task(post_until_done())
    await backing_up.wait()
    backup_dir = tmp_path / "backup"
    done = await asyncio.to_thread(
        chat, database_url, "backup", str(backup_dir), CHAT_MEDIA_DIR=str(media_dir)
    )
    await poster
    assert done.returncode == 0, done.stderr
    refused = await asyncio.to_thread(
        chat, database_url, "backup", str(backup_dir), CHAT_MEDIA_DIR=str(media_dir)
    )
    assert refused.returncode == 1 and "not empty" in refused.stderr

    restored_db = tmp_path / "restored.db"
    restored_url = f"sqlite+aiosqlite:///{restored_db}"
    done = await asyncio.to_thread(
        chat, restored_url, "restore", str(backup_dir), CHAT_MEDIA_DIR=str(tmp_path / "m")
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(restored_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        bodies = {row[0] for row in db.execute("SELECT body FROM messages")}
        seqs = [row[0] for row in db.execute("SELECT seq FROM messages ORDER BY seq")]
    assert set(before_backup) <= bodies
    assert seqs == list(range(1, len(seqs) + 1))  # a consistent moment: no gaps
    assert len(bodies) <= len(acknowledged)
    again = await asyncio.to_thread(
        chat, restored_url, "restore", str(backup_dir), CHAT_MEDIA_DIR=str(tmp_path / "m")
    )
    assert again.returncode == 1 and "--replace" in again.stderr


def test_on_postgresql_backup_prints_the_pg_dump_command_without_the_password(tmp_path):
    url = "postgresql+asyncpg://chat:s3cret@db.example:5432/chat"
    done = chat(url, "backup", str(tmp_path / "b"), CHAT_MEDIA_DIR=str(tmp_path / "none"))
    assert done.returncode == 0, done.stderr
    assert (
        "pg_dump --format=custom" in done.stdout and "postgresql://chat@db.example" in done.stdout
    )
    assert "s3cret" not in done.stdout


async def test_a_rooms_export_imports_on_its_own_with_accounts_that_cannot_sign_in(
    people, empty_database, tmp_path, app
):
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    room_id = await alice.create_room("team")
    for person in (bob, carol):
        await person.join(room_id)
    await alice.say(room_id, "hello @carol")
    await bob.post(f"/rooms/{room_id}/messages/1/reactions", {"emoji": "👍"})
    await bob.post(f"/rooms/{room_id}/leave")  # named by a reaction, no longer a member
    await carol.post(f"/rooms/{room_id}/leave")  # named by a mention only
    export = tmp_path / "room.ndjson"
    export.write_bytes((await alice.get(f"/rooms/{room_id}/export")).content)
    done = await asyncio.to_thread(chat, empty_database, "import", str(export))
    assert done.returncode == 0, export.read_text()
    again = await asyncio.to_thread(chat, empty_database, "export")
    users = [json.loads(line) for line in again.stdout.splitlines()[1:4]]
    assert [(u["username"], u["password_hash"]) for u in users] == [
        ("alice", ""),
        ("bob", ""),
        ("carol", ""),
    ]
