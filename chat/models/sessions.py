"""Signed-in browsers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    String,
    and_,
    bindparam,
    or_,
)
from sqlalchemy.orm import (
    Mapped,
    configure_mappers,
    mapped_column,
    relationship,
)
from sqlalchemy.orm.attributes import set_committed_value

from chat.db import Detached, DriverTrip, Prepared
from chat.models.base import ROOM, Base, UTCDateTime, utcnow
from chat.models.rooms import Membership, Room
from chat.models.users import User


class AuthSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored,
    so logging out (deleting the row) ends the session everywhere at once."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="joined")

    @classmethod
    def find(
        cls, trip: DriverTrip, token_hash: str, room_id: int | None = None
    ) -> tuple[AuthSession, tuple[Room, Membership | None] | None] | None:
        """The session (with its user) whose token hashes to `token_hash` and, when
        `room_id` is given, that room as its user may see it (Room.visible_to), in one
        statement: every signed-in request asks it first. Synchronous, for one trip
        (chat.db.driver_trip)."""
        row = trip.first(_SESSION_AND_ROOM, {"token_hash": token_hash, "room": room_id})
        if row is None:
            return None
        auth_session, user, room, membership = _SESSION_AND_ROOM_ROWS.split(row)
        set_committed_value(auth_session, "user", user)
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
