"""Unicode (issue 21, row 11): bidi controls neutralised in display, a reaction is one
emoji, room names normalised and unique in any letter case, duplicates migrated."""

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from chat.models import Message, Reaction, Room
from chat.room_names import InvalidRoomName, clean_room_name, room_name_key
from tests.support import ROOT, postgres_database

RLO = "\u202e"


async def test_a_bidi_override_is_kept_in_the_text_but_not_shown(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, f"invoice {RLO}fdp.exe")
    async with app.state.db() as db:
        message = await db.scalar(select(Message))
    assert message.body == f"invoice {RLO}fdp.exe"
    page = await alice.get(f"/rooms/{room_id}")
    assert "invoice fdp.exe" in page.text
    assert RLO not in page.text
    results = await alice.get("/search", params={"q": "invoice"})
    assert RLO not in results.text


@pytest.mark.parametrize(
    "emoji", ["👍\U000e0061\U000e0062", "\u200b👍", "👍👍", "a", "👍 ", "\U000e0067"]
)
async def test_a_reaction_is_exactly_one_emoji(people, app, emoji):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "hi")
    response = await alice.post(
        f"/rooms/{room_id}/messages/1/reactions", {"emoji": emoji}, htmx=True
    )
    if emoji == "👍 ":  # surrounding space is trimmed: the thumbs up itself
        assert response.status_code == 200
        return
    assert response.status_code == 400
    async with app.state.db() as db:
        assert list(await db.scalars(select(Reaction))) == []


async def test_a_heart_with_or_without_its_variation_selector_is_one_reaction(people, app):
    alice = await people("alice")
    bob = await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    await alice.say(room_id, "hi")
    await alice.post(f"/rooms/{room_id}/messages/1/reactions", {"emoji": "❤"}, htmx=True)
    await bob.post(f"/rooms/{room_id}/messages/1/reactions", {"emoji": "❤️"}, htmx=True)
    async with app.state.db() as db:
        assert {reaction.emoji for reaction in await db.scalars(select(Reaction))} == {"❤️"}


@pytest.mark.parametrize(
    "name",
    [
        "General",  # the same name in another letter case
        "GENERAL",
        "ｇｅｎｅｒａｌ",  # noqa: RUF001 (full-width: NFKC makes it "general")
        " general ",
    ],
)
async def test_room_names_are_unique_in_any_letter_case(people, app, name):
    alice = await people("alice")
    await alice.create_room("general")
    response = await alice.post("/rooms", {"name": name, "visibility": "public"})
    assert response.status_code == 400
    assert "already a room" in response.text
    async with app.state.db() as db:
        assert [room.name for room in await db.scalars(select(Room))] == ["general"]


@pytest.mark.parametrize(
    "name",
    [
        "g\u0435neral",  # a Cyrillic "e" inside a Latin word
        "zalgo" + "\u0301" * 70,
        "right\u202eleft",
        "zero\u200bwidth",
        "",
        "x" * 81,
    ],
)
async def test_room_names_that_break_the_rules_are_refused(people, app, name):
    alice = await people("alice")
    response = await alice.post("/rooms", {"name": name, "visibility": "public"})
    assert response.status_code == 400
    async with app.state.db() as db:
        assert list(await db.scalars(select(Room))) == []


def test_room_names_are_normalised_and_allow_real_scripts():
    assert clean_room_name("ﬁnance   team") == "finance team"
    assert clean_room_name("Tiếng Việt") == "Tiếng Việt"
    assert clean_room_name("Москва café") == "Москва café"  # one script per word
    assert clean_room_name("नमस्ते") == "नमस्ते"
    assert room_name_key("Straße") == room_name_key("STRASSE")
    with pytest.raises(InvalidRoomName):
        clean_room_name("a" + "\u0301" * 6)  # NFKC folds the first into "á"


async def test_a_direct_conversation_does_not_take_a_room_name(people):
    alice = await people("alice")
    await people("bob")
    await alice.post("/direct/bob/messages", {"body": "hi"})
    await alice.create_room("alice and bob")


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'names.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips when PostgreSQL is down
    with postgres_database("names") as url:
        yield url


def alembic(url: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "chat/migrations/alembic.ini", *args],
        cwd=ROOT,
        env={**os.environ, "CHAT_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


ROOMS_SQL = text(
    "INSERT INTO rooms (name, is_private, kind, direct_key, last_seq, last_change, created_at)"
    " VALUES (:name, false, :kind, :key, 0, 0, CURRENT_TIMESTAMP)"
)


def on_database(url: str, statement, rows=None) -> list[tuple]:
    """Run one statement on the database at `url` (either backend); its rows."""

    async def run() -> list[tuple]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(statement, rows)
                return list(result) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_migration_suffixes_duplicate_room_names(fresh_database):
    alembic(fresh_database, "upgrade", "f2a0session01")
    names = ["general", "General", "GENERAL", "  general\u200b ", "random", "x" * 80, "X" * 80]
    rooms = [{"name": name, "kind": "room", "key": None} for name in names]
    directs = [{"name": "alice and bob", "kind": "direct", "key": f"1:{n}"} for n in (2, 3)]
    on_database(fresh_database, ROOMS_SQL, rooms + directs)
    alembic(fresh_database, "upgrade", "head")
    migrated = on_database(fresh_database, text("SELECT name FROM rooms ORDER BY id"))
    assert [name for (name,) in migrated] == [
        "general",
        "General (2)",
        "GENERAL (3)",
        "general (4)",
        "random",
        "x" * 80,
        "X" * 76 + " (2)",
        "alice and bob",  # direct conversations keep their names
        "alice and bob",
    ]
