"""Messages, their reactions and @mentions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    foreign,
    mapped_column,
    relationship,
    remote,
)

from chat.models.attachments import Attachment
from chat.models.base import VIEWER, Base, UTCDateTime, utcnow
from chat.models.memberships import Membership
from chat.models.message_rows import (
    MessageVersion,
    Quote,
    excerpt_of,
    group_reactions,
)
from chat.models.rooms import Room
from chat.models.users import User
from chat.sse import Cursor


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
    def author_display(self) -> str:
        return self.author.display_name if self.author else ""

    @property
    def author_avatar(self) -> str | None:
        return self.author.avatar_key if self.author else None

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
    async def forget_author(cls, db: AsyncSession, user_id: int, *, remove_text: bool) -> list[str]:
        """The account `user_id` is deleted: its messages stay, by "deleted user" (no
        author), with their text kept or removed. The storage keys of the files removed
        with the text, for the caller to delete."""
        keys: list[str] = []
        values: dict[str, object] = {"author_id": None}
        if remove_text:
            theirs = select(cls.id).where(cls.author_id == user_id)
            keys = list(
                await db.scalars(select(Attachment.key).where(Attachment.message_id.in_(theirs)))
            )
            await db.execute(delete(Attachment).where(Attachment.message_id.in_(theirs)))
            values |= {
                "body": "",
                "html": "",
                "deleted_at": func.coalesce(cls.deleted_at, utcnow()),
            }
        await cls.author_changed(db, user_id, **values)
        return keys

    @classmethod
    async def author_changed(cls, db: AsyncSession, user_id: int, **values: object) -> None:
        """How the author of these messages shows changed (a display name, a deleted
        account, with `values` for the messages themselves): each room's change counter
        moves on once and their messages take that number, as an edit does, so cached
        renderings and kept pages are of an older version; commits."""
        room_ids = list(
            await db.scalars(select(cls.room_id).where(cls.author_id == user_id).distinct())
        )
        # The rooms they are in show them in their member lists: those pages are of an
        # older version too.
        member_of = select(Membership.room_id).where(Membership.user_id == user_id)
        await db.execute(
            update(Room)
            .where(Room.id.in_(member_of), Room.id.not_in(room_ids))
            .values(last_change=Room.last_change + 1)
        )
        for room_id in room_ids:
            change = await db.scalar(
                update(Room)
                .where(Room.id == room_id)
                .values(last_change=Room.last_change + 1)
                .returning(Room.last_change)
            )
            await db.execute(
                update(cls)
                .where(cls.room_id == room_id, cls.author_id == user_id)
                .values(changed=change, **values)
            )
        await db.commit()

    @classmethod
    async def attachment_keys_of(cls, db: AsyncSession, room_id: int) -> list[str]:
        """The storage keys of every file sent in the room."""
        rows = await db.scalars(
            select(Attachment.key)
            .join(cls, cls.id == Attachment.message_id)
            .where(cls.room_id == room_id)
        )
        return list(rows)

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
    async def attachment(cls, db: AsyncSession, room_id: int, key: str) -> Attachment | None:
        """The attachment stored under `key` of a live message of the room."""
        return await db.scalar(
            select(Attachment)
            .join(cls, cls.id == Attachment.message_id)
            .where(Attachment.key == key, cls.room_id == room_id, cls.deleted_at.is_(None))
        )

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
        query = UNREAD_MENTIONS
        if room_id is not None:
            query = query.where(Message.room_id == room_id)
        return {room: count for room, count in await db.execute(query, {"viewer": user_id})}


# Room id → how many messages after the viewer's read marker mention them.
UNREAD_MENTIONS = (
    select(Message.room_id, func.count().label("count"))
    .select_from(Mention)
    .join(Message, Message.id == Mention.message_id)
    .join(
        Membership,
        and_(Membership.room_id == Message.room_id, Membership.user_id == Mention.user_id),
    )
    .where(Mention.user_id == VIEWER, Message.seq > Membership.last_read_seq)
    .group_by(Message.room_id)
)
