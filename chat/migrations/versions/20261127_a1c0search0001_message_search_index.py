"""Full-text search index over message bodies (SQLite FTS5, PostgreSQL tsvector + GIN).

The index is kept by the database itself in the transaction of every insert, update
and delete of a message. These statements are a frozen copy of
chat.models.SEARCH_INDEX_DDL as of this revision (a migration must not change when the
app does); tests/test_search_index.py checks that both build the same objects.

Revision ID: a1c0search0001
Revises: 365d55824670
Create Date: 2026-11-27 10:00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "a1c0search0001"
down_revision: str | Sequence[str] | None = "365d55824670"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UPGRADE = (
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
    # Index the messages that already exist.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
)
POSTGRESQL_UPGRADE = (
    # Adding a stored generated column fills it for every existing row.
    "ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) "
    "STORED",
    "CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)",
)
POSTGRESQL_DOWNGRADE = (
    "DROP INDEX ix_messages_search_vector",
    "ALTER TABLE messages DROP COLUMN search_vector",
)


def _run(statements: dict[str, Sequence[str]]) -> None:
    for statement in statements[op.get_bind().dialect.name]:
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UPGRADE, "postgresql": POSTGRESQL_UPGRADE})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWNGRADE, "postgresql": POSTGRESQL_DOWNGRADE})
