"""Sessions that end: when each was last used, and the browser and address it began from.

Revision ID: f2a0session01
Revises: e1a0link00001
Create Date: 2026-12-07 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "f2a0session01"
down_revision: str | Sequence[str] | None = "e1a0link00001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("user_agent", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("address", sa.String(length=45), server_default="", nullable=False)
        )
    # A session from before this knew only when it began: its idle time counts from then.
    op.execute("UPDATE auth_sessions SET last_seen_at = created_at")
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_column("address")
        batch_op.drop_column("user_agent")
        batch_op.drop_column("last_seen_at")
