"""Profile pictures: the storage key of each account's, if it chose one.

Revision ID: g23f0avatar001
Revises: g23e0profile01
Create Date: 2026-12-07 18:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "g23f0avatar001"
down_revision: str | Sequence[str] | None = "g23e0profile01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE: batch mode would copy users on SQLite and lose its expression
    # index (uq_users_username_lower).
    op.add_column("users", sa.Column("avatar_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN avatar_key")  # SQLite 3.35+
