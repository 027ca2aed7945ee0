"""Edits, deletes and reactions: a per-room change counter and what it numbers.

Revision ID: c2e0change001
Revises: b2d0mention001
Create Date: 2026-11-28 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c2e0change001"
down_revision: str | Sequence[str] | None = "b2d0mention001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_change", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("changed", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_messages_room_id_changed", ["room_id", "changed"], unique=False)
    op.create_table(
        "reactions",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_reactions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reactions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("message_id", "user_id", "emoji", name=op.f("pk_reactions")),
    )


def downgrade() -> None:
    op.drop_table("reactions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_room_id_changed")
        batch_op.drop_column("changed")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("edited_at")
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_column("last_change")
