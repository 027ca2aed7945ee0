"""Pages of a room's messages, keyset on (room_id, seq), never OFFSET: as Message
objects (`page`), as MessageHead rows for a page whose HTML is cached (`heads`,
`heads_around`), and the content of those not cached yet as plain rows (`contents`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, bindparam, exists, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import Select

from chat.models.attachments import Attachment
from chat.models.base import ROOM
from chat.models.message_rows import (
    MessageContent,
    MessageHead,
    Quote,
    excerpt_of,
    group_reactions,
)
from chat.models.messages import Message, Reaction
from chat.models.users import User


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


# The statements of the room page, built once: making one (select(...) with its joins
# and conditions) costs a request more than running it, and a statement object
# remembers its cache key.
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


async def page(
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


def heads(
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


def heads_around(db: Session, room_id: int, seq: int, limit: int) -> list[MessageHead]:
    """About `limit` messages centred on `seq` (which is included when it exists),
    oldest first: what a permalink opens."""
    values = {"room": room_id, "at": seq, "older": limit // 2 + 1, "limit": limit}
    rows = db.connection().execute(_HEADS_AROUND, values)
    heads = sorted(map(MessageHead._make, rows), key=lambda head: head.seq)
    older = [head for head in heads if head.seq <= seq]
    # Near the room's start there are fewer older ones: more newer ones fill the page.
    newer = [head for head in heads if head.seq > seq][: limit - len(older)]
    return older + newer


def contents(db: Session, ids: Sequence[int]) -> list[MessageContent]:
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
