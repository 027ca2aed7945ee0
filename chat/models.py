"""Tables and the behaviour that belongs to them.

Authorization is done by scoping: a private room is only ever loaded through the
viewer's membership, so a room you may not see is simply not found.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import (
    DDL,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    foreign,
    make_transient_to_detached,
    mapped_column,
    relationship,
    remote,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator

from chat.db import Detached, DriverTrip, Prepared
from chat.events import Cursor

# Ids beyond a signed 64-bit integer cannot exist; asking the database would be an error.
MAX_ID = 2**63 - 1
# How much of a message a reply quotes.
QUOTE_CHARS = 140
# The largest an attached image is shown in a message, in CSS pixels.
THUMBNAIL_BOX = (320, 240)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


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


class RoomKind(enum.StrEnum):
    ROOM = "room"
    # A private conversation of exactly two people, made by Room.direct_between.
    DIRECT = "direct"


class NotDirectable(ValueError):
    """No direct conversation is possible with that person (yourself)."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    async def by_username(cls, db: AsyncSession, username: str) -> User | None:
        return await db.scalar(select(cls).where(func.lower(cls.username) == username.lower()))

    @classmethod
    async def create(cls, db: AsyncSession, username: str, password_hash: str) -> User | None:
        """Insert a user; None when the name is taken (in any letter case)."""
        user = cls(username=username, password_hash=password_hash)
        db.add(user)
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
            return None
        return user


# Case-insensitive uniqueness: "Alice" and "alice" are one person in @mentions.
Index("uq_users_username_lower", func.lower(User.username), unique=True)


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


class Room(Base):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
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

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.last_seq, self.last_change)

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
            return await db.scalar(select(cls).where(cls.direct_key == key))
        return room

    @classmethod
    def listed_for(cls, db: Session, user: User) -> tuple[list[Listed], list[Listed]]:
        """The viewer's rooms by name and, apart, their direct conversations by the
        other person's name, with unread and mention counts: what every page's room
        list shows, read as plain rows in one statement."""
        rows = db.connection().execute(_LISTED, {"viewer": user.id})
        listed = list(map(Listed._make, rows))
        return [r for r in listed if not r.is_direct], [r for r in listed if r.is_direct]

    def title_for(self, members: Sequence[Member], viewer: User) -> str:
        """What the viewer calls this room: a direct conversation is named by the
        other person."""
        if self.is_direct:
            for member in members:
                if member.id != viewer.id:
                    return member.username
        return self.name

    @classmethod
    async def create(cls, db: AsyncSession, creator: User, name: str, *, is_private: bool) -> Room:
        room = cls(name=name, is_private=is_private, created_by_id=creator.id)
        db.add(room)
        await db.flush()
        db.add(Membership(user_id=creator.id, room_id=room.id, role=Role.OWNER))
        await db.commit()
        return room

    @classmethod
    def visible_to(
        cls, db: Session, user: User, room_id: int
    ) -> tuple[Room, Membership | None] | None:
        """The room and the viewer's membership; None for a room that does not exist
        and, identically, for a private room the viewer is not in. Synchronous: every
        request about a room asks it first, in one trip (chat.db.in_one_trip)."""
        row = db.execute(_VISIBLE_ROOM, {"room": room_id, "viewer": user.id}).first()
        return None if row is None else (row[0], row[1])

    @classmethod
    def readable_by(cls, user: User) -> Select[tuple[int]]:
        """The ids of every room `user` may read: public rooms and the rooms they are in
        (the same rule as `visible_to`, for queries across rooms such as search)."""
        is_member = exists().where(Membership.room_id == cls.id, Membership.user_id == user.id)
        return select(cls.id).where(or_(~cls.is_private, is_member))

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
            select(cls).where(~cls.is_private, ~is_member).order_by(func.lower(cls.name), cls.id)
        )
        return list(rows)

    def members(self, db: Session) -> list[Member]:
        return list(map(Member._make, db.connection().execute(_MEMBERS, {"room": self.id})))

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
        result = await db.execute(
            Membership.__table__.delete().where(
                Membership.room_id == self.id, Membership.user_id == user_id
            )
        )
        await db.commit()
        return result.rowcount > 0


Index("uq_rooms_direct_key", Room.direct_key, unique=True)


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

    async def set_notify(self, db: AsyncSession, notify: bool) -> None:
        await db.execute(
            update(Membership)
            .where(Membership.user_id == self.user_id, Membership.room_id == self.room_id)
            .values(notify=notify)
        )
        await db.commit()
        self.notify = notify

    @classmethod
    async def users_named(cls, db: AsyncSession, room_id: int, names: set[str]) -> list[User]:
        """The members of the room whose lower-cased usernames are in `names`."""
        rows = await db.scalars(
            select(User)
            .join(cls, cls.user_id == User.id)
            .where(cls.room_id == room_id, func.lower(User.username).in_(names))
        )
        return list(rows)


class MessageGone(LookupError):
    """No such message in the room, or it was deleted."""


class NotYours(PermissionError):
    """Only the author may do this (or, for deleting, a room owner)."""


# A message with a link: one the sanitizer gave an anchor (bare URLs included). Written
# out, not bound, so that the planners match it to ix_messages_with_link's condition.
HAS_LINK_SQL = "messages.html LIKE '%<a %'"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room_id", "seq", name="uq_messages_room_id_seq"),
        # Replaying the changes a reconnecting stream missed.
        Index("ix_messages_room_id_changed", "room_id", "changed"),
        # Newest-first walks over one person's or one room's messages: a search with
        # from: or in: reads those and checks the words, instead of filtering every
        # message that has the words (PostgreSQL; SQLite's FTS5 table drives there).
        Index("ix_messages_author_id_id", "author_id", "id"),
        Index("ix_messages_room_id_id", "room_id", "id"),
        # Search's has:link walks the few messages with a link, newest first.
        Index(
            "ix_messages_with_link",
            "id",
            postgresql_where=text(HAS_LINK_SQL),
            sqlite_where=text(HAS_LINK_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    seq: Mapped[int]
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The text as typed, and the sanitized HTML made from it once, at posting time
    # (and again at each edit). A deleted message keeps neither.
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The seq of the message (in the same room) this one replies to.
    reply_to_seq: Mapped[int | None]
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The room change number of this message's latest change (0: never changed).
    changed: Mapped[int] = mapped_column(default=0, server_default="0")

    author: Mapped[User | None] = relationship(lazy="joined")
    # Read at render time, not copied at posting time, so that a quote follows
    # the original's edits and deletion. Joined one level deep (a quote's own quote
    # is not shown) so that a page of messages stays one query.
    reply_to: Mapped[Message | None] = relationship(
        primaryjoin=lambda: and_(
            foreign(Message.room_id) == remote(Message.room_id),
            foreign(Message.reply_to_seq) == remote(Message.seq),
        ),
        lazy="joined",
        join_depth=1,
        viewonly=True,
    )
    reactions: Mapped[list[Reaction]] = relationship(
        lazy="selectin", order_by="Reaction.created_at", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        lazy="selectin", order_by="Attachment.id", cascade="all, delete-orphan"
    )

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def author_name(self) -> str:
        return self.author.username if self.author else ""

    @property
    def version(self) -> MessageVersion:
        """Everything its rendered HTML depends on (see MessageHead)."""
        original = self.reply_to.changed if self.reply_to is not None else None
        return (self.id, self.changed, original)

    @property
    def reaction_groups(self) -> list[tuple[str, list[str]]]:
        return group_reactions(
            (reaction.emoji, reaction.user.username if reaction.user else "")
            for reaction in self.reactions
        )

    @property
    def excerpt(self) -> str:
        return excerpt_of(self.body, self.attachments)

    @property
    def quote(self) -> Quote | None:
        original = self.reply_to
        if original is None:
            return None
        return Quote(original.author_name, original.excerpt, original.changed)

    @classmethod
    def post(
        cls,
        trip: DriverTrip,
        room_id: int,
        author: User,
        body: str,
        html: str,
        mentioned: Sequence[User] = (),
        reply_to: Message | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> tuple[Message, Cursor] | None:
        """Insert a message (with its @mentions and attachments) with the room's next
        seq; None if `author` is not a member. `reply_to` is a message of the same
        room. Also returns the room's cursor right after it. Synchronous: the whole
        post is one trip to the database (chat.db.driver_trip).

        The counter bump is the transaction's first statement and also its
        authorization check: it takes the room's row lock (PostgreSQL) or the write
        lock (SQLite) at once, so concurrent posts queue for it and commit in seq
        order; a message with seq n is committed before seq n+1 is handed out.
        """
        row = trip.first(_BUMP_SEQ, {"room": room_id, "author": author.id})
        if row is None:
            trip.rollback()
            return None
        cursor = Cursor(*row)
        values = {
            "room_id": room_id,
            "seq": cursor.seq,
            "author_id": author.id,
            "body": body,
            "html": html,
            "created_at": utcnow(),
            "reply_to_seq": reply_to.seq if reply_to is not None else None,
            "changed": 0,
        }
        (message_id,) = trip.first(_INSERT_MESSAGE, values)  # type: ignore[misc]
        for user in mentioned:
            trip.run(_INSERT_MENTION, {"message_id": message_id, "user_id": user.id})
        for attachment in attachments:
            attachment.message_id = message_id
            attachment.created_at = values["created_at"]
            (attachment.id,) = trip.first(  # type: ignore[misc]
                _INSERT_ATTACHMENT,
                {column.key: getattr(attachment, column.key) for column in _ATTACHMENT_VALUES},
            )
            make_transient_to_detached(attachment)
        # Your own message is never unread for you.
        trip.run(_MARK_OWN_READ, {"room": room_id, "author": author.id, "seq": cursor.seq})
        trip.commit()
        # What its frame is rendered from; stored above, so never added to a session.
        # Relationships set as loaded, not assigned: assigning fires the ORM's
        # attribute events and history for each, half of building the object.
        message = cls(id=message_id, **values)
        for name, value in (
            ("author", author),
            ("reactions", []),
            ("attachments", list(attachments)),
            ("reply_to", reply_to),
        ):
            set_committed_value(message, name, value)
        return message, cursor

    @classmethod
    async def change(
        cls, db: AsyncSession, room_id: int, seq: int, user: User, *, may_moderate: bool = False
    ) -> tuple[Message, Cursor]:
        """Start changing message `seq`: take the room's next change number (and with
        it the room's lock, as posting does, so changes and posts commit in the order
        of their numbers) and load the message. Raises MessageGone or NotYours (rolled
        back); the caller changes the message and commits."""
        room_cursor = (
            await db.execute(
                update(Room)
                .where(Room.id == room_id)
                .values(last_change=Room.last_change + 1)
                .returning(Room.last_seq, Room.last_change)
            )
        ).first()
        message = await cls.find(db, room_id, seq)
        if room_cursor is None or message is None:
            await db.rollback()
            raise MessageGone(seq)
        if message.author_id != user.id and not may_moderate:
            await db.rollback()
            raise NotYours(seq)
        cursor = Cursor(*room_cursor)
        message.changed = cursor.change
        return message, cursor

    async def edit(self, db: AsyncSession, body: str, html: str, mentioned: Sequence[User]) -> None:
        self.body, self.html, self.edited_at = body, html, utcnow()
        # Mentions follow the text; nobody is notified again for an edit.
        await db.execute(delete(Mention).where(Mention.message_id == self.id))
        db.add_all(Mention(message_id=self.id, user_id=user.id) for user in mentioned)

    async def remove(self, db: AsyncSession) -> list[str]:
        """What a deleted message keeps is its place: seq, author and times. Returns
        the storage keys of its attachments, whose files go once this is committed."""
        keys = [attachment.key for attachment in self.attachments]
        self.body, self.html, self.deleted_at = "", "", utcnow()
        self.reactions.clear()
        self.attachments.clear()
        await db.execute(delete(Mention).where(Mention.message_id == self.id))
        return keys

    async def toggle_reaction(self, db: AsyncSession, user: User, emoji: str) -> bool:
        """Add `user`'s `emoji` reaction, or take it back; True if it was added."""
        for reaction in self.reactions:
            if reaction.user_id == user.id and reaction.emoji == emoji:
                self.reactions.remove(reaction)
                return False
        reaction = Reaction(user_id=user.id, emoji=emoji)
        # This session's own copy: it may have loaded the same user as an author.
        reaction.user = await db.get(User, user.id)
        self.reactions.append(reaction)
        return True

    @classmethod
    async def find(
        cls, db: AsyncSession, room_id: int, seq: int, *, deleted: bool = False
    ) -> Message | None:
        """Message `seq` of the room (if it was deleted, only when asked for)."""
        query = select(cls).where(cls.room_id == room_id, cls.seq == seq)
        if not deleted:
            query = query.where(cls.deleted_at.is_(None))
        return await db.scalar(query)

    @classmethod
    async def changed_after(
        cls, db: AsyncSession, room_id: int, change: int, *, up_to_seq: int, limit: int
    ) -> list[Message]:
        """Messages up to `up_to_seq` changed after change number `change`, in the
        order of their latest change: what a stream that has them must be sent again."""
        rows = await db.scalars(
            select(cls)
            .where(cls.room_id == room_id, cls.changed > change, cls.seq <= up_to_seq)
            .order_by(cls.changed)
            .limit(limit)
        )
        return list(rows)

    @classmethod
    async def page(
        cls,
        db: AsyncSession,
        room_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """Up to `limit` messages, oldest first: the oldest ones after `after` when it is
        given, else the newest ones (before `before`). Keyset on (room_id, seq), never OFFSET."""
        query, values = _MESSAGE_PAGES.page(room_id, before, after, limit)
        rows = (await db.scalars(query, values)).all()
        return rows[::-1] if after is None else list(rows)

    @classmethod
    def heads(
        cls,
        db: Session,
        room_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[MessageHead]:
        """`page`, as MessageHead rows: what a page needs when the messages' HTML is
        already rendered (chat/fragments.py)."""
        query, values = _HEAD_PAGES.page(room_id, before, after, limit)
        # Core, on the session's connection: the ORM's handling of plain rows cost
        # more than SQLite's work on them (so for every statement of a room page).
        heads = list(map(MessageHead._make, db.connection().execute(query, values)))
        return heads[::-1] if after is None else heads

    @classmethod
    def heads_around(cls, db: Session, room_id: int, seq: int, limit: int) -> list[MessageHead]:
        """About `limit` messages centred on `seq` (which is included when it exists),
        oldest first: what a permalink opens."""
        values = {"room": room_id, "at": seq, "older": limit // 2 + 1, "limit": limit}
        rows = db.connection().execute(_HEADS_AROUND, values)
        heads = sorted(map(MessageHead._make, rows), key=lambda head: head.seq)
        older = [head for head in heads if head.seq <= seq]
        # Near the room's start there are fewer older ones: more newer ones fill the page.
        newer = [head for head in heads if head.seq > seq][: limit - len(older)]
        return older + newer

    @classmethod
    def contents(cls, db: Session, ids: Sequence[int]) -> list[MessageContent]:
        """The messages, as their content renders (messages/_content.html), read as
        plain rows: a page not rendered yet shows fifty, and making each a Message with
        its author, its quoted original and their collections cost four times the SQL.
        One statement for the messages with their quotes, and one each for the files
        and the reactions of those that have any."""
        connection = db.connection()
        rows = connection.execute(_CONTENTS, {"ids": list(ids)}).all()
        # A quote of a message of files alone names the files (Message.excerpt).
        with_files = [row.id for row in rows if row.has_files]
        with_files += [row.original_id for row in rows if row.original_body == ""]
        files: dict[int, list[Attachment]] = {}
        if with_files:
            for attachment in db.scalars(_ATTACHMENTS, {"ids": with_files}):
                files.setdefault(attachment.message_id, []).append(attachment)
        with_reactions = [row.id for row in rows if row.has_reactions]
        reactions: dict[int, list[tuple[str, str]]] = {}
        if with_reactions:
            for message_id, emoji, name in connection.execute(_REACTIONS, {"ids": with_reactions}):
                reactions.setdefault(message_id, []).append((emoji, name))
        return [
            MessageContent(
                id=row.id,
                room_id=row.room_id,
                seq=row.seq,
                author_name=row.author_name,
                created_at=row.created_at,
                edited_at=row.edited_at,
                is_deleted=row.is_deleted,
                html=row.html,
                changed=row.changed,
                reply_to_seq=row.reply_to_seq,
                quote=None
                if row.original_id is None
                else Quote(
                    row.original_author_name,
                    excerpt_of(row.original_body, files.get(row.original_id, ())),
                    row.original_changed,
                ),
                attachments=files.get(row.id, []),
                reaction_groups=group_reactions(reactions.get(row.id, ())),
            )
            for row in rows
        ]


class KeysetPages:
    """A query over messages, narrowed to a page of one room's (`page`): keyset on
    (room_id, seq), never OFFSET. Its statements, one for each of the bounds a page
    may have, are built once."""

    def __init__(self, query: Select) -> None:
        self._statements: dict[tuple[bool, bool], Select] = {}
        for before in (False, True):
            for after in (False, True):
                page = query.where(Message.room_id == _ROOM)
                if before:
                    page = page.where(Message.seq < bindparam("before"))
                if after:
                    page = page.where(Message.seq > bindparam("after")).order_by(Message.seq)
                else:
                    page = page.order_by(Message.seq.desc())
                self._statements[before, after] = page.limit(bindparam("limit"))

    def page(
        self, room_id: int, before: int | None, after: int | None, limit: int
    ) -> tuple[Select, dict[str, int | None]]:
        """The statement and its values: the oldest `limit` messages after `after`
        (oldest first) when it is given, else the newest ones before `before` (newest
        first)."""
        statement = self._statements[before is not None, after is not None]
        return statement, {"room": room_id, "before": before, "after": after, "limit": limit}


# A message's id and change number, and the change number of the message it quotes:
# its rendered HTML is the same for as long as these are. A plain tuple, which the
# garbage collector stops tracking (chat/fragments.py keeps thousands).
MessageVersion = tuple[int, int, int | None]


def group_reactions(reactions: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(emoji, names of who reacted) in the order each emoji was first used, from
    (emoji, name) in the order of the reactions ("" for an account since deleted)."""
    groups: dict[str, list[str]] = {}
    for emoji, name in reactions:
        groups.setdefault(emoji, []).append(name or "deleted user")
    return list(groups.items())


def excerpt_of(body: str, attachments: Iterable[Attachment]) -> str:
    """The start of the text as typed, on one line (or, for a message of files alone,
    their names): what a reply quotes. Empty for a deleted message."""
    text = " ".join(body.split()) or ", ".join(a.filename for a in attachments)
    if len(text) <= QUOTE_CHARS:
        return text
    return text[: QUOTE_CHARS - 1].rstrip() + "…"


class Quote(NamedTuple):
    """What a reply shows of the message it quotes, as that message is now."""

    author_name: str  # "" for an account since deleted
    excerpt: str  # "" once deleted
    changed: int


class MessageContent(NamedTuple):
    """What a message's content shows (messages/_content.html), as Message.contents
    reads it; a Message offers the template the same names."""

    id: int
    room_id: int
    seq: int
    author_name: str
    created_at: datetime
    edited_at: datetime | None
    is_deleted: bool
    html: str
    changed: int
    reply_to_seq: int | None
    quote: Quote | None
    attachments: list[Attachment]
    reaction_groups: list[tuple[str, list[str]]]

    @property
    def version(self) -> MessageVersion:
        return (self.id, self.changed, self.quote.changed if self.quote is not None else None)


class MessageHead(NamedTuple):
    """What a page shows of a message around its HTML (chat/fragments.py keeps that HTML):
    read as a plain row, since the HTML itself is rendered once per version."""

    id: int
    seq: int
    author_id: int | None
    author_name: str
    is_deleted: bool
    changed: int
    original_changed: int | None

    @property
    def version(self) -> MessageVersion:
        return (self.id, self.changed, self.original_changed)


class Reaction(Base):
    """One person's emoji on one message."""

    __tablename__ = "reactions"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User | None] = relationship(lazy="joined")


def size_text(size: int) -> str:
    """A byte count as people read it: "512 bytes", "40 KB", "1.5 MB", "10 MB"."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


class Attachment(Base):
    """A file sent with a message. Its bytes are in media storage under `key` (random,
    never the file's name); what they are was read from the bytes (chat/attachments.py)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # As the sender's browser named it (cleaned); shown escaped, and the image's alt text.
    filename: Mapped[str] = mapped_column(String(255))
    # An image type for re-encoded images, else application/octet-stream.
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    width: Mapped[int | None]
    height: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def thumbnail_size(self) -> tuple[int, int]:
        """The image's size shown in a message: scaled down to fit THUMBNAIL_BOX."""
        width, height = self.width or 1, self.height or 1
        scale = min(1.0, THUMBNAIL_BOX[0] / width, THUMBNAIL_BOX[1] / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    @property
    def download_name(self) -> str:
        """The name it is saved under: an image's extension says what it is now."""
        if not self.is_image:
            return self.filename
        extension = "jpg" if self.content_type == "image/jpeg" else self.content_type[6:]
        return f"{self.filename.rsplit('.', 1)[0] or 'image'}.{extension}"

    @property
    def size_text(self) -> str:
        return size_text(self.size)

    @classmethod
    async def of_room(cls, db: AsyncSession, room_id: int, key: str) -> Attachment | None:
        """The attachment stored under `key` of a live message of the room."""
        return await db.scalar(
            select(cls)
            .join(Message, Message.id == cls.message_id)
            .where(cls.key == key, Message.room_id == room_id, Message.deleted_at.is_(None))
        )


class Mention(Base):
    """An @mention of a member in a message (what sanitize.render highlighted)."""

    __tablename__ = "mentions"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    @classmethod
    async def unread_counts(
        cls, db: AsyncSession, user_id: int, room_id: int | None = None
    ) -> dict[int, int]:
        """room id → how many messages after the read marker mention `user_id`."""
        query = _UNREAD_MENTIONS
        if room_id is not None:
            query = query.where(Message.room_id == room_id)
        return {room: count for room, count in await db.execute(query, {"viewer": user_id})}


# Full-text search over message bodies. The database keeps the index in step with
# `messages` itself, inside the transaction of every INSERT, UPDATE and DELETE, so no
# code path can forget it. SQLite: an external-content FTS5 table (the text is stored
# once, in messages.body) kept by triggers, with indexes of 2- and 3-letter prefixes
# (a search's last word is a prefix; without them "th" merges thousands of words' lists).
# PostgreSQL: a generated tsvector column with
# a GIN index; words are runs of letters and digits there too (its own parser would keep
# "example.org" or "foo-bar" whole), so a search finds the same messages on both.
# These statements run after `create_all` creates `messages`; migration a1c0search0001
# creates the same objects (tests/test_search_index.py compares them).
SEARCH_INDEX_DDL = {
    "sqlite": (
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2', "
        "prefix='2 3')",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    ),
    "postgresql": (
        "ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        "(to_tsvector('simple'::regconfig, regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) "
        "STORED",
        "CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)",
    ),
}
# Schema objects that live outside the models: Alembic's autogenerate must not call
# them drift (migrations/env.py). FTS5 keeps its index in these shadow tables.
SEARCH_INDEX_OBJECTS = frozenset(
    {
        "messages_fts",
        "messages_fts_data",
        "messages_fts_idx",
        "messages_fts_docsize",
        "messages_fts_config",
        "search_vector",
        "ix_messages_search_vector",
    }
)
for _dialect, _statements in SEARCH_INDEX_DDL.items():
    for _statement in _statements:
        event.listen(
            Message.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )


# The statements of every request (the session, the room), of posting and of the room
# page, built once: making one (select(...) with its joins and conditions) costs a
# request more than running it, and a statement object remembers its cache key. Here,
# below every model, because aliasing a model configures the mappers.
_ROOM = bindparam("room")
_VIEWER = bindparam("viewer")
_AUTHOR = bindparam("author")
# The session and the room it asks about: the room is missing, exactly as in
# _VISIBLE_ROOM, when it does not exist or is private and the user is not a member.
_SESSION_AND_ROOM_ROWS = Detached(AuthSession, User, Room, Membership)
_SESSION_AND_ROOM = Prepared(
    _SESSION_AND_ROOM_ROWS.select()
    .select_from(AuthSession)
    .join(User, User.id == AuthSession.user_id)
    .outerjoin(
        Membership, and_(Membership.room_id == _ROOM, Membership.user_id == AuthSession.user_id)
    )
    .outerjoin(Room, and_(Room.id == _ROOM, or_(~Room.is_private, Membership.user_id.is_not(None))))
    .where(AuthSession.token_hash == bindparam("token_hash"))
)
_VISIBLE_ROOM = (
    select(Room, Membership)
    .outerjoin(Membership, and_(Membership.room_id == Room.id, Membership.user_id == _VIEWER))
    .where(Room.id == _ROOM, or_(~Room.is_private, Membership.user_id.is_not(None)))
)
_BUMP_SEQ = Prepared(
    update(Room)
    .where(
        Room.id == _ROOM,
        exists().where(Membership.room_id == _ROOM, Membership.user_id == _AUTHOR),
    )
    .values(last_seq=Room.last_seq + 1)
    .returning(Room.last_seq, Room.last_change)
)
_MESSAGE_VALUES = (
    "room_id",
    "seq",
    "author_id",
    "body",
    "html",
    "created_at",
    "reply_to_seq",
    "changed",
)
_INSERT_MESSAGE = Prepared(
    insert(Message)
    .values({name: bindparam(name) for name in _MESSAGE_VALUES})
    .returning(Message.id)
)
_INSERT_MENTION = Prepared(
    insert(Mention).values(message_id=bindparam("message_id"), user_id=bindparam("user_id"))
)
_ATTACHMENT_VALUES = tuple(c for c in Attachment.__table__.c if not c.primary_key)
_INSERT_ATTACHMENT = Prepared(
    insert(Attachment)
    .values({column.key: bindparam(column.key) for column in _ATTACHMENT_VALUES})
    .returning(Attachment.id)
)
_MARK_OWN_READ = Prepared(
    update(Membership)
    .where(Membership.room_id == _ROOM, Membership.user_id == _AUTHOR)
    .values(last_read_seq=bindparam("seq"))
)
_MEMBERS = (
    select(User.id, User.username, Membership.role == Role.OWNER)
    .join(Membership, Membership.user_id == User.id)
    .where(Membership.room_id == _ROOM)
    .order_by(func.lower(User.username))
)
_ORIGINAL = aliased(Message)
_MESSAGE_HEADS = (
    select(
        Message.id,
        Message.seq,
        Message.author_id,
        func.coalesce(User.username, ""),
        Message.deleted_at.is_not(None),
        Message.changed,
        _ORIGINAL.changed,
    )
    .outerjoin(User, User.id == Message.author_id)
    .outerjoin(
        _ORIGINAL,
        and_(_ORIGINAL.room_id == Message.room_id, _ORIGINAL.seq == Message.reply_to_seq),
    )
)
_HEAD_PAGES = KeysetPages(_MESSAGE_HEADS)
# A permalink's page: up to `older` messages up to `at` and up to `limit` after it.
_HEADS_AROUND = union_all(
    select(
        _MESSAGE_HEADS.where(Message.room_id == _ROOM, Message.seq <= bindparam("at"))
        .order_by(Message.seq.desc())
        .limit(bindparam("older"))
        .subquery()
    ),
    select(
        _MESSAGE_HEADS.where(Message.room_id == _ROOM, Message.seq > bindparam("at"))
        .order_by(Message.seq)
        .limit(bindparam("limit"))
        .subquery()
    ),
)
_MESSAGE_PAGES = KeysetPages(select(Message))
_OTHER_MEMBER = aliased(Membership)
# A direct conversation is titled by the other person's name.
_TITLE = func.coalesce(User.username, Room.name)
# Room id → how many messages after the viewer's read marker mention them.
_UNREAD_MENTIONS = (
    select(Message.room_id, func.count().label("count"))
    .select_from(Mention)
    .join(Message, Message.id == Mention.message_id)
    .join(
        Membership,
        and_(Membership.room_id == Message.room_id, Membership.user_id == Mention.user_id),
    )
    .where(Mention.user_id == _VIEWER, Message.seq > Membership.last_read_seq)
    .group_by(Message.room_id)
)
_MENTION_COUNTS = _UNREAD_MENTIONS.subquery()
_LISTED = (
    select(
        Room.id,
        _TITLE,
        Room.is_private,
        Room.kind == RoomKind.DIRECT,
        Room.last_seq - Membership.last_read_seq,
        func.coalesce(_MENTION_COUNTS.c.count, 0),
    )
    .join(Membership, and_(Membership.room_id == Room.id, Membership.user_id == _VIEWER))
    .outerjoin(
        _OTHER_MEMBER,
        and_(
            Room.kind == RoomKind.DIRECT,
            _OTHER_MEMBER.room_id == Room.id,
            _OTHER_MEMBER.user_id != _VIEWER,
        ),
    )
    .outerjoin(User, User.id == _OTHER_MEMBER.user_id)
    .outerjoin(_MENTION_COUNTS, _MENTION_COUNTS.c.room_id == Room.id)
    .order_by(func.lower(_TITLE), Room.id)
)
_ORIGINAL_AUTHOR = aliased(User)
_IDS = bindparam("ids", expanding=True)
_CONTENTS = (
    select(
        Message.id,
        Message.room_id,
        Message.seq,
        func.coalesce(User.username, "").label("author_name"),
        Message.created_at,
        Message.edited_at,
        Message.deleted_at.is_not(None).label("is_deleted"),
        Message.html,
        Message.changed,
        Message.reply_to_seq,
        _ORIGINAL.id.label("original_id"),
        func.coalesce(_ORIGINAL_AUTHOR.username, "").label("original_author_name"),
        _ORIGINAL.body.label("original_body"),
        _ORIGINAL.changed.label("original_changed"),
        exists().where(Attachment.message_id == Message.id).label("has_files"),
        exists().where(Reaction.message_id == Message.id).label("has_reactions"),
    )
    .outerjoin(User, User.id == Message.author_id)
    .outerjoin(
        _ORIGINAL,
        and_(_ORIGINAL.room_id == Message.room_id, _ORIGINAL.seq == Message.reply_to_seq),
    )
    .outerjoin(_ORIGINAL_AUTHOR, _ORIGINAL_AUTHOR.id == _ORIGINAL.author_id)
    .where(Message.id.in_(_IDS))
)
_ATTACHMENTS = select(Attachment).where(Attachment.message_id.in_(_IDS)).order_by(Attachment.id)
_REACTIONS = (
    select(Reaction.message_id, Reaction.emoji, func.coalesce(User.username, ""))
    .outerjoin(User, User.id == Reaction.user_id)
    .where(Reaction.message_id.in_(_IDS))
    .order_by(Reaction.created_at)
)
