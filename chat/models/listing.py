"""The viewer's room list with unread and mention counts."""

from __future__ import annotations

from sqlalchemy import (
    and_,
    case,
    func,
    select,
)
from sqlalchemy.orm import (
    Session,
    aliased,
)

from chat.models.base import VIEWER
from chat.models.memberships import Membership
from chat.models.messages import UNREAD_MENTIONS
from chat.models.rooms import Listed, Room, RoomKind
from chat.models.users import User

_OTHER_MEMBER = aliased(Membership)
# A direct conversation is titled by the other person's name, looked up for direct
# conversations alone: as an outer join on every listed room, SQLite walked every
# member of every room, several times the cost of the whole list this way.
_OTHER_NAME = (
    select(User.username)
    .join(_OTHER_MEMBER, _OTHER_MEMBER.user_id == User.id)
    .where(_OTHER_MEMBER.room_id == Room.id, _OTHER_MEMBER.user_id != VIEWER)
    .limit(1)
    .correlate(Room)
    .scalar_subquery()
)
_TITLE = case(
    (Room.kind == RoomKind.DIRECT, func.coalesce(_OTHER_NAME, Room.name)), else_=Room.name
)
_MENTION_COUNTS = UNREAD_MENTIONS.subquery()
_LISTED = (
    select(
        Room.id,
        _TITLE,
        Room.is_private,
        Room.kind == RoomKind.DIRECT,
        # A muted room counts no unread messages (its @mentions still count).
        case((Membership.muted, 0), else_=Room.last_seq - Membership.last_read_seq),
        func.coalesce(_MENTION_COUNTS.c.count, 0),
    )
    .join(Membership, and_(Membership.room_id == Room.id, Membership.user_id == VIEWER))
    .outerjoin(_MENTION_COUNTS, _MENTION_COUNTS.c.room_id == Room.id)
    # Archived rooms are out of the lists (rooms/archived.html lists them).
    .where(Room.archived_at.is_(None))
    .order_by(func.lower(_TITLE), Room.id)
)


def listed_for(db: Session, user: User) -> tuple[list[Listed], list[Listed]]:
    """The viewer's rooms by name and, apart, their direct conversations by the
    other person's name, with unread and mention counts: what every page's room
    list shows, read as plain rows in one statement."""
    rows = db.connection().execute(_LISTED, {"viewer": user.id})
    listed = list(map(Listed._make, rows))
    return [r for r in listed if not r.is_direct], [r for r in listed if r.is_direct]
