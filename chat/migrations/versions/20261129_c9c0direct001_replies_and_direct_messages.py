"""Replies (messages.reply_to_seq) and direct conversations (rooms.kind, rooms.direct_key).

Revision ID: c9c0direct001
Revises: c2e0change001
Create Date: 2026-11-27 20:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c9c0direct001"
down_revision: str | Sequence[str] | None = "c2e0change001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to_seq", sa.Integer(), nullable=True))
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=10), server_default="room", nullable=False)
        )
        batch_op.add_column(sa.Column("direct_key", sa.String(length=41), nullable=True))
        batch_op.create_index("uq_rooms_direct_key", ["direct_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_index("uq_rooms_direct_key")
        batch_op.drop_column("direct_key")
        batch_op.drop_column("kind")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reply_to_seq")
