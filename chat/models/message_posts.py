"""Posting a message: one transaction that takes the room's next seq with its first
statement (see `post`), run as statements prepared once."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.instrumentation import manager_of_class

from chat.hot_statements import Prepared, PreparedRunner
from chat.models.attachments import Attachment
from chat.models.base import AUTHOR, ROOM, utcnow
from chat.models.memberships import Membership
from chat.models.messages import Mention, Message
from chat.models.rooms import Room
from chat.models.users import User
from chat.sse import Cursor

# Built once: making a statement costs a post more than running it, and a statement
# object remembers its cache key.
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


def post(
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
        return _posted(message_id, values, author, reply_to, attachments), cursor
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
    return _posted(message_id, values, author, reply_to, attachments), cursor


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
