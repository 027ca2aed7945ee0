"""Room names: NFKC-normalised, without control or format characters, unique in any
letter case among rooms (direct conversations apart). A name taken twice keeps its
oldest room; the others become "general (2)", "general (3)"...

The rules are written out here as they were when this ran (chat/room_names.py may
change later); names that broke them are mended rather than refused.

Revision ID: f2b0roomname1
Revises: f2a0session01
Create Date: 2026-12-07 14:10:00

"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "f2b0roomname1"
down_revision: str | Sequence[str] | None = "f2a0session01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_ROOM_NAME = 80
MAX_MARKS = 4
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def mended(name: str, room_id: int) -> str:
    kept, marks = [], 0
    for char in unicodedata.normalize("NFKC", name):
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            continue
        marks = marks + 1 if unicodedata.category(char).startswith("M") else 0
        if marks <= MAX_MARKS:
            kept.append(char)
    return " ".join("".join(kept).split())[:MAX_ROOM_NAME] or f"room {room_id}"


def key(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def upgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=240), nullable=True))
    rooms = sa.table(
        "rooms",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
        sa.column("name_key", sa.String),
    )
    connection = op.get_bind()
    taken: set[str] = set()
    for room_id, name, kind in connection.execute(
        sa.select(rooms.c.id, rooms.c.name, rooms.c.kind).order_by(rooms.c.id)
    ):
        if kind == "direct":
            new_name = name
        else:
            base = new_name = mended(name, room_id)
            number = 1
            while key(new_name) in taken:
                number += 1
                suffix = f" ({number})"
                new_name = base[: MAX_ROOM_NAME - len(suffix)] + suffix
            taken.add(key(new_name))
        connection.execute(
            rooms.update()
            .where(rooms.c.id == room_id)
            .values(name=new_name, name_key=key(new_name))
        )
    only_rooms = sa.text("kind = 'room'")
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=240), nullable=False)
        batch_op.create_index(
            "uq_rooms_name_key",
            ["name_key"],
            unique=True,
            sqlite_where=only_rooms,
            postgresql_where=only_rooms,
        )


def downgrade() -> None:
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_index("uq_rooms_name_key")
        batch_op.drop_column("name_key")
