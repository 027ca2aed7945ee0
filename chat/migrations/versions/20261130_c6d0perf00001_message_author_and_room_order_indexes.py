"""Indexes for newest-first walks over one author's or one room's messages (search's from: and in:).

Revision ID: c6d0perf00001
Revises: c9c0direct001
Create Date: 2026-11-27 21:00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c6d0perf00001"
down_revision: str | Sequence[str] | None = "c9c0direct001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (author_id, id) also serves every lookup the single-column index served.
    op.create_index("ix_messages_author_id_id", "messages", ["author_id", "id"], unique=False)
    op.drop_index("ix_messages_author_id", table_name="messages")
    op.create_index("ix_messages_room_id_id", "messages", ["room_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_room_id_id", table_name="messages")
    op.create_index("ix_messages_author_id", "messages", ["author_id"], unique=False)
    op.drop_index("ix_messages_author_id_id", table_name="messages")
