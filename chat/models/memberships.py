"""Memberships: who is in which room, in what role, and how far they have read.

Authorization is done by scoping through them: a private room is only ever loaded
through the viewer's membership (chat.models.rooms).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, bindparam, column, false, func, select, table, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql import Select

from chat.hot_statements import Prepared, PreparedRunner
from chat.models.base import ROOM, VIEWER, Base, UTCDateTime, utcnow
from chat.models.users import User

# The two columns of rooms a read marker moves to, named here: chat.models.rooms imports
# this module, so this one cannot import Room.
_rooms = table("rooms", column("id"), column("last_seq"))


class Role(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[int] = mapped_column(
        ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(10), default=Role.MEMBER)
    # Everything up to this seq has been seen; unread = room.last_seq - last_read_seq.
    last_read_seq: Mapped[int] = mapped_column(default=0)
    # A browser notification for every message here, not only for @mentions.
    notify: Mapped[bool] = mapped_column(default=False, server_default=false())
    # No unread count and no notification, but for @mentions.
    muted: Mapped[bool] = mapped_column(default=False, server_default=false())
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER

    def mark_read(self, db: Session, seq: int) -> bool:
        """Advance (never rewind) the read marker; True when it moved."""
        if self.last_read_seq >= seq:
            # The stored marker only moves forward, so it is past `seq` too: skip the
            # write (and, on SQLite, the database-wide write lock) on every page view.
            return False
        result = db.execute(
            update(Membership)
            .where(
                Membership.user_id == self.user_id,
                Membership.room_id == self.room_id,
                Membership.last_read_seq < seq,
            )
            .values(last_read_seq=seq)
        )
        db.commit()
        self.last_read_seq = max(self.last_read_seq, seq)
        return result.rowcount > 0

    def advance_read(self, runner: PreparedRunner, seq: int) -> bool:
        """`mark_read` as one prepared statement (chat.hot_statements.run_prepared): a
        visible tab marks read after each burst of messages, the request a crowd sends
        most (`chat bench capacity`)."""
        if self.last_read_seq >= seq:
            return False
        values = {"viewer": self.user_id, "room": self.room_id, "seq": seq}
        moved = runner.first(_ADVANCE_READ, values) is not None
        runner.commit()
        self.last_read_seq = seq if moved else self.last_read_seq
        return moved

    async def set_notify(self, db: AsyncSession, notify: bool) -> None:
        await db.execute(
            update(Membership)
            .where(Membership.user_id == self.user_id, Membership.room_id == self.room_id)
            .values(notify=notify)
        )
        await db.commit()
        self.notify = notify

    @classmethod
    def user_ids_of(cls, room_id: int) -> Select[tuple[int]]:
        return select(cls.user_id).where(cls.room_id == room_id)

    async def set_muted(self, db: AsyncSession, muted: bool) -> None:
        await db.execute(
            update(Membership)
            .where(Membership.user_id == self.user_id, Membership.room_id == self.room_id)
            .values(muted=muted)
        )
        await db.commit()
        self.muted = muted

    @classmethod
    async def mark_all_read(cls, db: AsyncSession, user_id: int) -> list[int]:
        """Move the user's read marker to the newest message in every room of theirs;
        the ids of the rooms where it moved."""
        newest = select(_rooms.c.last_seq).where(_rooms.c.id == cls.room_id).scalar_subquery()
        moved = list(
            await db.scalars(
                select(cls.room_id)
                .join(_rooms, _rooms.c.id == cls.room_id)
                .where(cls.user_id == user_id, cls.last_read_seq < _rooms.c.last_seq)
            )
        )
        if moved:
            await db.execute(
                update(cls)
                .where(cls.user_id == user_id, cls.room_id.in_(moved))
                .values(last_read_seq=newest)
            )
            await db.commit()
        return moved

    @classmethod
    async def users_named(cls, db: AsyncSession, room_id: int, names: set[str]) -> list[User]:
        """The members of the room whose lower-cased usernames are in `names`."""
        rows = await db.scalars(
            select(User)
            .join(cls, cls.user_id == User.id)
            .where(cls.room_id == room_id, func.lower(User.username).in_(names))
        )
        return list(rows)


_ADVANCE_READ = Prepared(
    update(Membership)
    .where(
        Membership.user_id == VIEWER,
        Membership.room_id == ROOM,
        Membership.last_read_seq < bindparam("seq"),
    )
    .values(last_read_seq=bindparam("seq"))
    .returning(Membership.last_read_seq)
)
