"""Rooms and direct conversations (their memberships: chat.models.memberships).

Authorization is done by scoping: a private room is only ever loaded through the
viewer's membership, so a room you may not see is simply not found.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    and_,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    Session,
    mapped_column,
)
from sqlalchemy.sql import Select

from chat.models.base import ROOM, VIEWER, Base, UTCDateTime, utcnow
from chat.models.memberships import Membership, Role
from chat.models.users import User, like_escaped
from chat.room_names import room_name_key
from chat.sanitize import render_inline


class Listed(NamedTuple):
    """A room in the viewer's room list: a direct conversation is titled by the other
    person's name."""

    id: int
    title: str
    is_private: bool
    is_direct: bool
    unread: int
    mentions: int  # unread messages that mention the viewer


class Member(NamedTuple):
    """A room's member as its member list shows them: plain rows, not ORM objects,
    because a room page lists every member (hundreds, in a big room)."""

    id: int
    username: str
    is_owner: bool
    display_name: str = ""


class RoomKind(enum.StrEnum):
    ROOM = "room"
    # A private conversation of exactly two people, made by Room.direct_between.
    DIRECT = "direct"


class NotDirectable(ValueError):
    """No direct conversation is possible with that person (yourself)."""


class LastOwner(ValueError):
    """The member is the room's only owner: a room always keeps one, so they may not go
    until someone else is made owner."""


def _name_key_of_inserted(context: DefaultExecutionContext) -> str:
    """Room.name_key for an insert that gives only the name (bulk inserts, chat seed)."""
    return room_name_key(context.get_current_parameters()["name"])


class Room(Base):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    # chat.room_names.room_name_key(name): unique among rooms (not direct conversations),
    # so "General" cannot be made beside "general". Case folding may lengthen a name.
    name_key: Mapped[str] = mapped_column(String(240), default=_name_key_of_inserted)
    is_private: Mapped[bool] = mapped_column(default=False)
    kind: Mapped[str] = mapped_column(String(10), default=RoomKind.ROOM, server_default="room")
    # For a direct conversation, "smaller user id:larger user id": its unique index
    # is what makes two people's racing first messages end up in one room.
    direct_key: Mapped[str | None] = mapped_column(String(41))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The seq of the newest message; the next message takes last_seq + 1.
    last_seq: Mapped[int] = mapped_column(default=0)
    # How many times a message of the room was edited, deleted or reacted to: each
    # change takes the next number, so a stream can resume after the changes it has.
    last_change: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # One line of the owners' Markdown subset, shown under the name (room settings).
    topic: Mapped[str] = mapped_column(String(250), default="", server_default="")
    # An archived room is read-only and left out of room lists; its members still
    # open and search it.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def topic_html(self) -> str:
        return render_inline(self.topic) if self.topic else ""

    @classmethod
    async def change_count(cls, db: AsyncSession, room_id: int) -> int:
        return await db.scalar(select(cls.last_change).where(cls.id == room_id)) or 0

    @property
    def visibility(self) -> str:
        return "private" if self.is_private else "public"

    @property
    def is_direct(self) -> bool:
        return self.kind == RoomKind.DIRECT

    @staticmethod
    def _direct_key(one: User, other: User) -> str:
        low, high = sorted((one.id, other.id))
        return f"{low}:{high}"

    @classmethod
    async def direct_between(
        cls, db: AsyncSession, viewer: User, other: User, *, create: bool = False
    ) -> Room | None:
        """The direct conversation of `viewer` and `other`; with `create`, made (with
        both memberships) when there is none yet. Two racing creations both end
        with the one room: the loser's INSERT hits the unique key and reads the
        winner's."""
        if viewer.id == other.id:
            raise NotDirectable("A direct conversation needs someone else.")
        key = cls._direct_key(viewer, other)
        room = await db.scalar(select(cls).where(cls.direct_key == key))
        if room is not None or not create:
            return room
        first, second = sorted((viewer, other), key=lambda user: user.id)
        room = cls(
            name=f"{first.username} and {second.username}",
            is_private=True,
            kind=RoomKind.DIRECT,
            direct_key=key,
            created_by_id=viewer.id,
        )
        db.add(room)
        try:
            await db.flush()
            # Every direct message is for you: notified like an @mention.
            db.add_all(
                Membership(user_id=user.id, room_id=room.id, notify=True)
                for user in (first, second)
            )
            await db.commit()
        except IntegrityError:
            await db.rollback()
            # The rollback expired every object of the session, the two people included:
            # load them again, or the caller's next `.id` is a lazy load outside it (a 500).
            for user in (viewer, other):
                if user in db:
                    await db.refresh(user)
            return await db.scalar(select(cls).where(cls.direct_key == key))
        return room

    def title_for(self, members: Sequence[Member], viewer: User) -> str:
        """What the viewer calls this room: a direct conversation is named by the
        other person."""
        if self.is_direct:
            for member in members:
                if member.id != viewer.id:
                    return member.username
        return self.name

    @classmethod
    async def create(
        cls, db: AsyncSession, creator: User, name: str, *, is_private: bool
    ) -> Room | None:
        """A room named `name` (as chat.room_names.clean_room_name made it), its creator
        its owner; None when a room of that name exists (in any letter case)."""
        room = cls(name=name, is_private=is_private, created_by_id=creator.id)
        db.add(room)
        try:
            await db.flush()
        except IntegrityError:
            await db.rollback()
            return None
        db.add(Membership(user_id=creator.id, room_id=room.id, role=Role.OWNER))
        await db.commit()
        return room

    async def rename(self, db: AsyncSession, name: str) -> bool:
        """Give the room `name` (as chat.room_names.clean_room_name made it); False
        when another room has that name (in any letter case)."""
        try:
            await db.execute(
                update(Room)
                .where(Room.id == self.id)
                .values(name=name, name_key=room_name_key(name))
            )
            await db.commit()
        except IntegrityError:
            await db.rollback()
            return False
        self.name, self.name_key = name, room_name_key(name)
        return True

    async def set_topic(self, db: AsyncSession, topic: str) -> None:
        """`topic` as chat.room_names.clean_topic made it ("" for none)."""
        await db.execute(update(Room).where(Room.id == self.id).values(topic=topic))
        await db.commit()
        self.topic = topic

    async def set_archived(self, db: AsyncSession, archived: bool) -> None:
        when = utcnow() if archived else None
        await db.execute(update(Room).where(Room.id == self.id).values(archived_at=when))
        await db.commit()
        self.archived_at = when

    async def delete(self, db: AsyncSession) -> list[int]:
        """Delete the room with its messages, memberships and attachment rows (the
        database cascades; Message.attachment_keys_of names the files to delete first).
        The ids of its members, whose streams of it the caller closes."""
        member_ids = list(await db.scalars(Membership.user_ids_of(self.id)))
        await db.execute(Room.__table__.delete().where(Room.id == self.id))
        await db.commit()
        return member_ids

    @classmethod
    async def named_like(cls, db: AsyncSession, text: str, limit: int) -> list[tuple[Room, int]]:
        """Rooms (not direct conversations) whose name contains `text`, by name, with
        their member counts: the administrators' list."""
        if "\x00" in text:  # no name holds one, and PostgreSQL refuses it in a query
            return []
        pattern = "%" + like_escaped(room_name_key(text)) + "%"
        members = (
            select(func.count())
            .select_from(Membership)
            .where(Membership.room_id == cls.id)
            .correlate(cls)
            .scalar_subquery()
        )
        rows = await db.execute(
            select(cls, members)
            .where(cls.kind == RoomKind.ROOM, cls.name_key.like(pattern, escape="\\"))
            .order_by(cls.name_key, cls.id)
            .limit(limit)
        )
        return [(room, count) for room, count in rows]

    @classmethod
    def visible_to(
        cls, db: Session, user: User, room_id: int
    ) -> tuple[Room, Membership | None] | None:
        """The room and the viewer's membership; None for a room that does not exist
        and, identically, for a private room the viewer is not in. Synchronous: every
        request about a room asks it first (chat.hot_statements.run_sync_work)."""
        row = db.execute(_VISIBLE_ROOM, {"room": room_id, "viewer": user.id}).first()
        return None if row is None else (row[0], row[1])

    @classmethod
    def readable_by(cls, user: User) -> Select[tuple[int]]:
        """The ids of every room `user` may read: public rooms and the rooms they are in
        (the same rule as `visible_to`, for queries across rooms such as search)."""
        is_member = exists().where(Membership.room_id == cls.id, Membership.user_id == user.id)
        # An archived room is searched by its members only.
        return select(cls.id).where(
            or_(and_(~cls.is_private, cls.archived_at.is_(None)), is_member)
        )

    @classmethod
    async def of_member(
        cls, db: AsyncSession, user: User, kind: RoomKind | None = None
    ) -> list[tuple[Room, Membership]]:
        """The rooms `user` is in (only those of `kind` when given)."""
        query = (
            select(cls, Membership)
            .join(Membership, Membership.room_id == cls.id)
            .where(Membership.user_id == user.id)
            .order_by(func.lower(cls.name), cls.id)
        )
        if kind is not None:
            query = query.where(cls.kind == kind)
        return [(room, membership) for room, membership in await db.execute(query)]

    @classmethod
    def joinable_by(cls, db: Session, user: User) -> list[Room]:
        is_member = exists().where(Membership.room_id == cls.id, Membership.user_id == user.id)
        rows = db.scalars(
            select(cls)
            .where(~cls.is_private, ~is_member, cls.archived_at.is_(None))
            .order_by(func.lower(cls.name), cls.id)
        )
        return list(rows)

    def members(self, db: Session) -> list[Member]:
        return list(map(Member._make, db.connection().execute(_MEMBERS, {"room": self.id})))

    async def has_member(self, db: AsyncSession, user_id: int) -> bool:
        found = await db.scalar(
            select(Membership.user_id).where(
                Membership.room_id == self.id, Membership.user_id == user_id
            )
        )
        return found is not None

    async def add_member(self, db: AsyncSession, user: User, role: Role = Role.MEMBER) -> bool:
        """Make `user` a member; False when they already were."""
        db.add(Membership(user_id=user.id, room_id=self.id, role=role, last_read_seq=self.last_seq))
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
            return False
        return True

    async def remove_member(self, db: AsyncSession, user_id: int) -> bool:
        """End `user_id`'s membership (leaving, or removed by an owner); False when they
        were not a member. Raises LastOwner for the room's only owner: a room always
        keeps an owner, even when two owners leave at the same moment."""
        await self._lock(db)
        other_owner = exists().where(
            Membership.room_id == self.id,
            Membership.user_id != user_id,
            Membership.role == Role.OWNER,
        )
        result = await db.execute(
            Membership.__table__.delete().where(
                Membership.room_id == self.id,
                Membership.user_id == user_id,
                or_(Membership.role != Role.OWNER, other_owner),
            )
        )
        if result.rowcount == 0 and await self._role_of(db, user_id) == Role.OWNER:
            await db.rollback()
            raise LastOwner("A room always keeps an owner: make someone else owner first.")
        await db.commit()
        return result.rowcount > 0

    async def make_owner(self, db: AsyncSession, user_id: int) -> bool:
        """Make the member `user_id` an owner of the room (besides those it has); False
        when they are not a member. The admin's "transfer ownership" is this, then the
        old owner's choice to leave or stay."""
        if self.is_direct:
            raise ValueError("A direct conversation has no owners.")
        result = await db.execute(
            update(Membership)
            .where(Membership.room_id == self.id, Membership.user_id == user_id)
            .values(role=Role.OWNER)
        )
        await db.commit()
        return result.rowcount > 0

    async def is_last_owner(self, db: AsyncSession, user_id: int) -> bool:
        """Whether `user_id` is the room's only owner (and so may not leave)."""
        owners = await db.scalars(
            select(Membership.user_id)
            .where(Membership.room_id == self.id, Membership.role == Role.OWNER)
            .limit(2)
        )
        return list(owners) == [user_id]

    async def _lock(self, db: AsyncSession) -> None:
        """Serialise membership changes of this room on PostgreSQL (SQLite's writes
        are serialised already): the last-owner rule reads other rows than it deletes."""
        if db.get_bind().dialect.name == "postgresql":
            await db.execute(select(Room.id).where(Room.id == self.id).with_for_update())

    async def _role_of(self, db: AsyncSession, user_id: int) -> str | None:
        return await db.scalar(
            select(Membership.role).where(
                Membership.room_id == self.id, Membership.user_id == user_id
            )
        )


Index("uq_rooms_direct_key", Room.direct_key, unique=True)
_ONLY_ROOMS = Room.kind == RoomKind.ROOM.value
Index(
    "uq_rooms_name_key",
    Room.name_key,
    unique=True,
    sqlite_where=_ONLY_ROOMS,
    postgresql_where=_ONLY_ROOMS,
)


_VISIBLE_ROOM = (
    select(Room, Membership)
    .outerjoin(Membership, and_(Membership.room_id == Room.id, Membership.user_id == VIEWER))
    .where(Room.id == ROOM, or_(~Room.is_private, Membership.user_id.is_not(None)))
)

_MEMBERS = (
    select(User.id, User.username, Membership.role == Role.OWNER, User.display_name)
    .join(Membership, Membership.user_id == User.id)
    .where(Membership.room_id == ROOM)
    .order_by(func.lower(User.username))
)
