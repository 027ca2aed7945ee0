"""The search index: kept by the database on insert, update and delete, and built the
same way by the migration and by the models' create_all."""

import sqlite3

from sqlalchemy import delete, select, update

from chat.models import Message, User
from chat.search import parse, search
from tests.support import migrate


async def found(app, username, text):
    async with app.state.db() as db:
        viewer = await User.by_username(db, username)
        return [hit.seq for hit in (await search(db, viewer, parse(text))).hits]


async def test_the_index_follows_edits_and_deletes_of_messages(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "the original wording")
    await alice.say(room_id, "something to delete")
    assert await found(app, "alice", '"original wording"') == [1]
    async with app.state.db() as db:
        await db.execute(update(Message).where(Message.seq == 1).values(body="a revised text"))
        await db.execute(delete(Message).where(Message.seq == 2))
        await db.commit()
        assert await db.scalar(select(Message.body).where(Message.seq == 1)) == "a revised text"
    assert await found(app, "alice", "original") == []
    assert await found(app, "alice", "revised") == [1]
    assert await found(app, "alice", "delete") == []


def search_objects(path):
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT type, name, sql FROM sqlite_master"
            " WHERE name LIKE 'messages_fts%' ORDER BY name"
        ).fetchall()


async def test_the_migration_builds_the_index_the_models_describe(tmp_path):
    from chat.db import create_engine
    from chat.models import Base

    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    migrate({"CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{migrated}"})
    engine = create_engine(f"sqlite+aiosqlite:///{created}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()
    objects = search_objects(migrated)
    assert [name for _, name, _ in objects if name.startswith("messages_fts_")] == [
        "messages_fts_config",
        "messages_fts_data",
        "messages_fts_delete",
        "messages_fts_docsize",
        "messages_fts_idx",
        "messages_fts_insert",
        "messages_fts_update",
    ]
    assert objects == search_objects(created)
