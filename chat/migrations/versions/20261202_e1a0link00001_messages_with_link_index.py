"""A partial index of the messages with a link (search's has:link).

Revision ID: e1a0link00001
Revises: d1a0attach001
Create Date: 2026-11-27 05:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e1a0link00001"
down_revision: str | Sequence[str] | None = "d1a0attach001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# chat.models.HAS_LINK_SQL as it was written when this index was made.
HAS_LINK_SQL = "messages.html LIKE '%<a %'"


def upgrade() -> None:
    op.create_index(
        "ix_messages_with_link",
        "messages",
        ["id"],
        unique=False,
        postgresql_where=sa.text(HAS_LINK_SQL),
        sqlite_where=sa.text(HAS_LINK_SQL),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_with_link", table_name="messages")
