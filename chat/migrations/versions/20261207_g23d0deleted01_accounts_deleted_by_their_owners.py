"""Accounts deleted by their owners: when (their usernames stay reserved for a while).

Revision ID: g23d0deleted01
Revises: g23c0invites01
Create Date: 2026-12-07 17:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "g23d0deleted01"
down_revision: str | Sequence[str] | None = "g23c0invites01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE: batch mode would copy users on SQLite and lose its expression
    # index (uq_users_username_lower).
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN deleted_at")  # SQLite 3.35+
