"""Profiles: a display name and a time zone per account.

Revision ID: g23e0profile01
Revises: g23d0deleted01
Create Date: 2026-12-07 18:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "g23e0profile01"
down_revision: str | Sequence[str] | None = "g23d0deleted01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE: batch mode would copy users on SQLite and lose its expression
    # index (uq_users_username_lower).
    op.add_column(
        "users", sa.Column("display_name", sa.String(length=64), server_default="", nullable=False)
    )
    op.add_column(
        "users", sa.Column("time_zone", sa.String(length=64), server_default="", nullable=False)
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN time_zone")  # SQLite 3.35+
    op.execute("ALTER TABLE users DROP COLUMN display_name")
