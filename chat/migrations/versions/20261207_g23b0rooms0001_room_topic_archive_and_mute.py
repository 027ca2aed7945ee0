"""Room settings: a topic and archiving for rooms, muting for members.

Revision ID: g23b0rooms0001
Revises: g23a0admin001
Create Date: 2026-12-07 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "g23b0rooms0001"
down_revision: str | Sequence[str] | None = "g23a0admin001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN: batch mode would copy the tables on SQLite and lose
    # the partial and expression indexes it cannot reflect (uq_rooms_name_key).
    op.add_column(
        "rooms", sa.Column("topic", sa.String(length=250), server_default="", nullable=False)
    )
    op.add_column("rooms", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "memberships",
        sa.Column("muted", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # SQLite 3.35+; batch mode would copy the tables (see upgrade).
    op.execute("ALTER TABLE memberships DROP COLUMN muted")
    op.execute("ALTER TABLE rooms DROP COLUMN archived_at")
    op.execute("ALTER TABLE rooms DROP COLUMN topic")
