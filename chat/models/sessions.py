"""Signed-in browsers."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ForeignKey,
    String,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    configure_mappers,
    mapped_column,
    relationship,
)

from chat.hot_statements import Detached, Prepared, PreparedRunner
from chat.models.base import ROOM, Base, UTCDateTime, utcnow
from chat.models.memberships import Membership
from chat.models.rooms import Room
from chat.models.users import User


class AuthSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored,
    so logging out (deleting the row) ends the session everywhere at once."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Written at most every few minutes (chat.auth.TOUCH_SECONDS); the idle expiry and
    # the account page's "last seen" read it.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # For the account page's list of sessions: the browser and address it began from.
    user_agent: Mapped[str] = mapped_column(String(200), default="", server_default="")
    address: Mapped[str] = mapped_column(String(45), default="", server_default="")

    user: Mapped[User] = relationship(lazy="joined")

    @property
    def public_id(self) -> str:
        """A short, non-secret name for the session: its streams' end signal and the
        account page's buttons name it so."""
        return self.token_hash[:16]

    def expired(self, now: datetime, lifetime: timedelta, idle: timedelta) -> bool:
        return now - self.created_at > lifetime or now - self.last_seen_at > idle

    @classmethod
    async def delete_expired(cls, db: AsyncSession, lifetime: timedelta, idle: timedelta) -> None:
        now = utcnow()
        await db.execute(
            delete(cls).where(or_(cls.created_at < now - lifetime, cls.last_seen_at < now - idle))
        )
        await db.commit()

    @classmethod
    async def touch(cls, db: AsyncSession, token_hash: str, now: datetime) -> None:
        await db.execute(update(cls).where(cls.token_hash == token_hash).values(last_seen_at=now))
        await db.commit()

    @classmethod
    async def of_user(cls, db: AsyncSession, user_id: int) -> list[AuthSession]:
        """The user's sessions, the most recently used first."""
        rows = await db.scalars(
            select(cls).where(cls.user_id == user_id).order_by(cls.last_seen_at.desc())
        )
        return list(rows)

    @classmethod
    async def end(
        cls, db: AsyncSession, user_id: int, public_ids: Collection[str] | None, keep: str = ""
    ) -> list[str]:
        """Delete the user's sessions named by `public_ids` (all when None) except the
        one whose hash is `keep`; the public ids of those deleted."""
        sessions = [
            each
            for each in await cls.of_user(db, user_id)
            if each.token_hash != keep and (public_ids is None or each.public_id in public_ids)
        ]
        if sessions:
            await db.execute(
                delete(cls).where(cls.token_hash.in_([each.token_hash for each in sessions]))
            )
            await db.commit()
        return [each.public_id for each in sessions]

    @classmethod
    def find(
        cls, statements: PreparedRunner, token_hash: str, room_id: int | None = None
    ) -> tuple[AuthSession, tuple[Room, Membership | None] | None] | None:
        """The session (with its user) whose token hashes to `token_hash` and, when
        `room_id` is given, that room as its user may see it (Room.visible_to), in one
        statement: every signed-in request asks it first. Synchronous, for
        chat.hot_statements.run_prepared."""
        return cls.found(cls.find_columns(statements, token_hash, room_id))

    @staticmethod
    def find_columns(
        statements: PreparedRunner, token_hash: str, room_id: int | None = None
    ) -> Any:
        """What `find` finds as plain values, for `found` to make objects of: kept
        between requests by chat.kept_reads."""
        row = statements.first(_SESSION_AND_ROOM, {"token_hash": token_hash, "room": room_id})
        return None if row is None else _SESSION_AND_ROOM_ROWS.columns(row)

    @staticmethod
    def found(columns: Any) -> tuple[AuthSession, tuple[Room, Membership | None] | None] | None:
        """`find`'s objects from `find_columns`' values: new ones each time."""
        if columns is None:
            return None
        auth_session, user, room, membership = _SESSION_AND_ROOM_ROWS.objects(columns)
        # The relationship loaded, as a joined load leaves it (set_committed_value's
        # work on a new object; tests/test_hot_statements.py compares).
        auth_session.__dict__["user"] = user
        return auth_session, None if room is None else (room, membership)


# The session and the room it asks about: the room is missing, exactly as in
# _VISIBLE_ROOM, when it does not exist or is private and the user is not a member.
# Detached reads the mappers, so they are configured first (every model is defined by now).
configure_mappers()
_SESSION_AND_ROOM_ROWS = Detached(AuthSession, User, Room, Membership)
_SESSION_AND_ROOM = Prepared(
    _SESSION_AND_ROOM_ROWS.select()
    .select_from(AuthSession)
    .join(User, User.id == AuthSession.user_id)
    .outerjoin(
        Membership, and_(Membership.room_id == ROOM, Membership.user_id == AuthSession.user_id)
    )
    .outerjoin(Room, and_(Room.id == ROOM, or_(~Room.is_private, Membership.user_id.is_not(None))))
    .where(AuthSession.token_hash == bindparam("token_hash"))
)
