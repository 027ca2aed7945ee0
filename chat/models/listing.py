"""The viewer's room list with unread and mention counts."""

from __future__ import annotations

from sqlalchemy import (
    and_,
    func,
    select,
)
from sqlalchemy.orm import (
    Session,
    aliased,
)

from chat.models.base import VIEWER
from chat.models.messages import UNREAD_MENTIONS
from chat.models.rooms import Listed, Membership, Room, RoomKind
from chat.models.users import User

_OTHER_MEMBER = aliased(Membership)
# A direct conversation is titled by the other person's name.
_TITLE = func.coalesce(User.username, Room.name)
_MENTION_COUNTS = UNREAD_MENTIONS.subquery()
_LISTED = (
    select(
        Room.id,
        _TITLE,
        Room.is_private,
        Room.kind == RoomKind.DIRECT,
        Room.last_seq - Membership.last_read_seq,
        func.coalesce(_MENTION_COUNTS.c.count, 0),
    )
    .join(Membership, and_(Membership.room_id == Room.id, Membership.user_id == VIEWER))
    .outerjoin(
        _OTHER_MEMBER,
        and_(
            Room.kind == RoomKind.DIRECT,
            _OTHER_MEMBER.room_id == Room.id,
            _OTHER_MEMBER.user_id != VIEWER,
        ),
    )
    .outerjoin(User, User.id == _OTHER_MEMBER.user_id)
    .outerjoin(_MENTION_COUNTS, _MENTION_COUNTS.c.room_id == Room.id)
    .order_by(func.lower(_TITLE), Room.id)
)


def listed_for(db: Session, user: User) -> tuple[list[Listed], list[Listed]]:
    """The viewer's rooms by name and, apart, their direct conversations by the
    other person's name, with unread and mention counts: what every page's room
    list shows, read as plain rows in one statement."""
    rows = db.connection().execute(_LISTED, {"viewer": user.id})
    listed = list(map(Listed._make, rows))
    return [r for r in listed if not r.is_direct], [r for r in listed if r.is_direct]
