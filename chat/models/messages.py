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
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    Session,
    aliased,
    foreign,
    make_transient_to_detached,
    mapped_column,
    relationship,
    remote,
)
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import Select

from chat.hot_statements import Prepared, PreparedRunner
from chat.models.attachments import Attachment
from chat.models.base import AUTHOR, ROOM, VIEWER, Base, UTCDateTime, utcnow
from chat.models.message_rows import (
    MessageContent,
    MessageHead,
    MessageVersion,
    Quote,
    excerpt_of,
    group_reactions,
)
from chat.models.rooms import Membership, Room
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
    def post(
        cls,
        statements: PreparedRunner,
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
        post is one hop to the database (chat.hot_statements.run_prepared).

        The counter bump is the transaction's first statement and also its
        authorization check: it takes the room's row lock (PostgreSQL) or the write
        lock (SQLite) at once, so concurrent posts queue for it and commit in seq
        order; a message with seq n is committed before seq n+1 is handed out, or in
        the same transaction (SQLite's group commit, chat.group_commit: then `statements`'
        commit ends this post's savepoint, and the group commits after it).
        """
        values = {
            "room_id": room_id,
            "author_id": author.id,
            "body": body,
            "html": html,
            "created_at": utcnow(),
            "reply_to_seq": reply_to.seq if reply_to is not None else None,
            "changed": 0,
        }
        if statements.one_statement:
            if mentioned or attachments:
                raise ValueError("a post with mentions or files takes several statements")
            row = statements.first(_POST_IN_ONE, {**values, "room": room_id, "author": author.id})
            if row is None:  # not a member: nothing was written
                return None
            message_id, *room_cursor = row
            cursor = Cursor(*room_cursor)
            values["seq"] = cursor.seq
            return cls._posted(message_id, values, author, reply_to, attachments), cursor
        row = statements.first(_BUMP_SEQ, {"room": room_id, "author": author.id})
        if row is None:
            statements.rollback()
            return None
        cursor = Cursor(*row)
        values["seq"] = cursor.seq
        (message_id,) = statements.first(_INSERT_MESSAGE, values)  # type: ignore[misc]
        for user in mentioned:
            statements.run(_INSERT_MENTION, {"message_id": message_id, "user_id": user.id})
        for attachment in attachments:
            attachment.message_id = message_id
            attachment.created_at = values["created_at"]
            (attachment.id,) = statements.first(  # type: ignore[misc]
                _INSERT_ATTACHMENT,
                {column.key: getattr(attachment, column.key) for column in _ATTACHMENT_VALUES},
            )
            make_transient_to_detached(attachment)
        # Your own message is never unread for you.
        statements.run(_MARK_OWN_READ, {"room": room_id, "author": author.id, "seq": cursor.seq})
        statements.commit()
        return cls._posted(message_id, values, author, reply_to, attachments), cursor

    @staticmethod
    def _posted(
        message_id: int,
        values: dict[str, object],
        author: User,
        reply_to: Message | None,
        attachments: Sequence[Attachment],
    ) -> Message:
        """What a stored message's frame is rendered from: never added to a session,
        and only read. Its values go straight into the object, as a closed session
        leaves what it loaded (chat.hot_statements.Detached): the constructor and
        set_committed_value fire the ORM's attribute events and history for each, 30 µs
        a post against 2 µs. Its lists are plain lists for the same reason."""
        message = _MESSAGE_MANAGER.new_instance()
        message.__dict__.update(
            values,
            id=message_id,
            edited_at=None,
            deleted_at=None,
            author=author,
            reactions=[],
            attachments=list(attachments),
            reply_to=reply_to,
        )
        return message

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
        already rendered (chat/html_cache.py)."""
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
                author_display=row.author_display,
                author_avatar=row.author_avatar,
            )
            for row in rows
        ]


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


class KeysetPages:
    """A query over messages, narrowed to a page of one room's (`page`): keyset on
    (room_id, seq), never OFFSET. Its statements, one for each of the bounds a page
    may have, are built once."""

    def __init__(self, query: Select) -> None:
        self._statements: dict[tuple[bool, bool], Select] = {}
        for before in (False, True):
            for after in (False, True):
                page = query.where(Message.room_id == ROOM)
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


# The statements of posting and of the room page, built once: making one (select(...)
# with its joins and conditions) costs a request more than running it, and a statement
# object remembers its cache key. Here, below the models, because aliasing a model
# configures the mappers.
_MESSAGE_MANAGER = manager_of_class(Message)
_BUMP_SEQ = Prepared(
    update(Room)
    .where(
        Room.id == ROOM,
        exists().where(Membership.room_id == ROOM, Membership.user_id == AUTHOR),
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
    .where(Membership.room_id == ROOM, Membership.user_id == AUTHOR)
    .values(last_read_seq=bindparam("seq"))
)


def _post_in_one() -> Prepared:
    """PostgreSQL: a post without mentions or files as one statement, which commits by
    itself: the bump (its row lock and membership check, as _BUMP_SEQ), the insert with
    the seq it returned and the author's read marker, in CTEs. One round trip, where
    the three statements with BEGIN and COMMIT were five, each also through SQLAlchemy
    and asyncpg. No row when the author is not a member: then nothing is written."""
    bump = (
        update(Room)
        .where(
            Room.id == ROOM,
            exists().where(Membership.room_id == ROOM, Membership.user_id == AUTHOR),
        )
        .values(last_seq=Room.last_seq + 1)
        .returning(Room.id, Room.last_seq, Room.last_change)
        .cte("bump")
    )
    columns = Message.__table__.c
    inserted = (
        insert(Message)
        .from_select(
            [
                "room_id",
                "seq",
                *(name for name in _MESSAGE_VALUES if name not in ("room_id", "seq")),
            ],
            select(
                bump.c.id,
                bump.c.last_seq,
                *(
                    bindparam(name, type_=columns[name].type)
                    for name in _MESSAGE_VALUES
                    if name not in ("room_id", "seq")
                ),
            ),
        )
        .returning(Message.id, Message.room_id, Message.author_id, Message.seq)
        .cte("inserted")
    )
    marked = (
        update(Membership)
        .where(
            Membership.room_id == inserted.c.room_id,
            Membership.user_id == inserted.c.author_id,
        )
        .values(last_read_seq=inserted.c.seq)
        .returning(Membership.user_id)
        .cte("marked")
    )
    return Prepared(
        select(inserted.c.id, bump.c.last_seq, bump.c.last_change)
        .select_from(inserted.join(bump, bump.c.id == inserted.c.room_id))
        .add_cte(marked)
    )


_POST_IN_ONE = _post_in_one()

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
        _MESSAGE_HEADS.where(Message.room_id == ROOM, Message.seq <= bindparam("at"))
        .order_by(Message.seq.desc())
        .limit(bindparam("older"))
        .subquery()
    ),
    select(
        _MESSAGE_HEADS.where(Message.room_id == ROOM, Message.seq > bindparam("at"))
        .order_by(Message.seq)
        .limit(bindparam("limit"))
        .subquery()
    ),
)
_MESSAGE_PAGES = KeysetPages(select(Message))

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

_ORIGINAL_AUTHOR = aliased(User)
_IDS = bindparam("ids", expanding=True)
_CONTENTS = (
    select(
        Message.id,
        Message.room_id,
        Message.seq,
        func.coalesce(User.username, "").label("author_name"),
        func.coalesce(User.display_name, "").label("author_display"),
        User.avatar_key.label("author_avatar"),
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
