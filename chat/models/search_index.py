"""The full-text search index, kept by the database itself."""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    event,
)

from chat.models.messages import Message

# Full-text search over message bodies. The database keeps the index in step with
# `messages` itself, inside the transaction of every INSERT, UPDATE and DELETE, so no
# code path can forget it. SQLite: an external-content FTS5 table (the text is stored
# once, in messages.body) kept by triggers, with indexes of 2- and 3-letter prefixes
# (a search's last word is a prefix; without them "th" merges thousands of words' lists).
# PostgreSQL: a generated tsvector column with
# a GIN index; words are runs of letters and digits there too (its own parser would keep
# "example.org" or "foo-bar" whole), so a search finds the same messages on both.
# These statements run after `create_all` creates `messages`; migration a1c0search0001
# creates the same objects (tests/test_search_index.py compares them).
SEARCH_INDEX_DDL = {
    "sqlite": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2', "
        "prefix='2 3')",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    ),
    "postgresql": (
        "ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        "(to_tsvector('simple'::regconfig, regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) "
        "STORED",
        "CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)",
    ),
}
# Schema objects that live outside the models: Alembic's autogenerate must not call
# them drift (migrations/env.py). FTS5 keeps its index in these shadow tables.
SEARCH_INDEX_OBJECTS = frozenset(
    {
        "messages_fts",
        "messages_fts_data",
        "messages_fts_idx",
        "messages_fts_docsize",
        "messages_fts_config",
        "search_vector",
        "ix_messages_search_vector",
    }
)
for _dialect, _statements in SEARCH_INDEX_DDL.items():
    for _statement in _statements:
        event.listen(
            Message.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )
