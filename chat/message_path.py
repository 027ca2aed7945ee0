"""The message path: post → commit with seq → render once → publish; changes to
messages (edit, delete, reactions) the same way; and the replay from SQL a stream
sends before its live frames (chat/room_stream.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import emoji
import structlog
from jinja2 import Environment
from markupsafe import Markup
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import sanitize, sse
from chat.broker import Broker, BrokerUnavailable, room_channel
from chat.content_stencils import ContentStencils
from chat.db import is_disconnect
from chat.hot_statements import run_prepared
from chat.html_cache import HtmlCache
from chat.models import Attachment, Membership, Message, Room, User, message_pages, message_posts
from chat.sse import Cursor
from chat.storage import MediaStorage
from chat.uploads import MAX_IMAGE_PIXELS, Upload, prepare

log = structlog.get_logger("chat.message_path")

REPLAY_BATCH = 500
# How much of a message a browser notification shows.
EXCERPT_CHARS = 140
# C0 and C1 control characters except tab and newline.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class InvalidMessage(ValueError):
    """The text cannot be posted; the message says why, for the person who typed it."""

    status = 400


EMPTY_MESSAGE = "Type a message before sending."


def clean_body(raw: str, max_chars: int, *, may_be_empty: bool = False) -> str:
    """The text as it is stored; it may be empty only for a message of files."""
    body = raw.replace("\r\n", "\n").strip()
    if not body and not may_be_empty:
        raise InvalidMessage(EMPTY_MESSAGE)
    if len(body) > max_chars:
        raise InvalidMessage(
            f"Messages can be at most {max_chars:,} characters; this one has {len(body):,}."
        )
    if _CONTROL_CHARACTERS.search(body):
        raise InvalidMessage("The message contains control characters.")
    return body


EMOJI_MAX_CHARS = 16


def clean_emoji(raw: str) -> str:
    """A reaction: exactly one emoji of Unicode's list (the `emoji` package's data), in
    its fully qualified form, so "❤" and "❤️" are one reaction and "👍" followed by
    invisible tag characters is none."""
    text = raw.strip()
    if not text:
        raise InvalidMessage("Choose an emoji to react with.")
    if len(text) > EMOJI_MAX_CHARS or not emoji.is_emoji(text):
        raise InvalidMessage("Reactions are a single emoji.")
    return emoji.emojize(emoji.demojize(text))


def leave_room_signal(room_id: int) -> bytes:
    return f"leave-room:{room_id}".encode()


# The last frame of a room stream that a signal ended (static/app.js shows a banner).
ENDED_REMOVED = sse.encode("ended", "removed")
ENDED_SIGNED_OUT = sse.encode("ended", "signed-out")


# On a room's channel when its members changed (joined, left, removed, added, made
# owner): the room page fetches its member list again (static/live.js).
MEMBERS_CHANGED = sse.encode("members", "changed")


def join_room_signal(room_id: int) -> bytes:
    """On a user's channel when they became a member (joined, added, a first direct
    message): their room-list streams reconnect with the room in their counts."""
    return f"join-room:{room_id}".encode()


def end_session_signal(session_id: str) -> bytes:
    return f"end-session:{session_id}".encode()


def room_state_signal(room_id: int, read_seq: int | None = None) -> bytes:
    """On a user's channel: their read marker or notify setting in the room changed;
    `read_seq`, when only the read marker moved, to where."""
    if read_seq is None:
        return f"room-state:{room_id}".encode()
    return f"room-state:{room_id}:{read_seq}".encode()


def activity_channel(room_id: int) -> str:
    """A room's small "message posted" notices, for the rooms page (chat/activity.py)."""
    return f"activity:{room_id}"


def activity_notice(message: Message, mentioned: list[User]) -> bytes:
    return json.dumps(
        {
            "room": message.room_id,
            "seq": message.seq,
            "author_id": message.author_id,
            "author": message.author.username if message.author else "",
            "mentioned": [user.id for user in mentioned],
            "excerpt": message.excerpt[:EXCERPT_CHARS],
        }
    ).encode()


@dataclass(frozen=True)
class MessagePath:
    """Everything posting and streaming need, built once in the app's lifespan."""

    db: async_sessionmaker[AsyncSession]
    broker: Broker
    templates: Environment
    html_cache: HtmlCache
    max_chars: int
    storage: MediaStorage
    # At most this many images decoded at once in the process (each takes memory in
    # proportion to its pixels), and their pixel cap: chat.uploads.
    image_decodes: anyio.Semaphore = field(default_factory=lambda: anyio.Semaphore(2))
    max_image_pixels: int = MAX_IMAGE_PIXELS
    # Gaps being read for streams (see `replay`), by (room, cursor, before seq).
    _gaps: dict[tuple[int, Cursor, int], asyncio.Future[list[tuple[Cursor, bytes]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Told of every stored message and whom it mentions, without being waited for
    # (chat.webhooks.OutgoingWebhooks.message_posted).
    after_post: Callable[[Message, list[User]], None] | None = None
    _articles: ContentStencils = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A new message's article around its content, from a stencil like its content's
        # (chat.content_stencils): the macro's call cost a frame as much as the rest.
        articles = ContentStencils(
            # A stand-in's HTML: the stencil's marker for the content's place.
            lambda message: str(self._article(message, Markup(message.html)))  # noqa: S704
        )
        object.__setattr__(self, "_articles", articles)

    @property
    def _article(self) -> Any:
        return self.templates.get_template("messages/_message.html").module.article

    def render(self, message: Message) -> str:
        """A frame's message: the one partial's macro (messages/_message.html), called
        for no reader. Called straight, not through a render of the template, which
        builds a template context each time: that cost several times the macro itself."""
        content = self.html_cache.content(message)
        if self.html_cache.fast:
            framed = self._articles.content(message, html=str(content))
            if framed is not None:
                return framed
        return str(self._article(message, content))

    def frame(self, message: Message, cursor: Cursor) -> bytes:
        """A new message, as it stands now."""
        return sse.encode("message", self.render(message), id=cursor)

    def change_frame(self, message: Message, cursor: Cursor) -> bytes:
        """A message the client already has, as it stands now."""
        kind = "delete" if message.is_deleted else "edit"
        return sse.encode(kind, self.render(message), id=cursor)

    async def post(
        self,
        room_id: int,
        author: User,
        raw_body: str,
        reply_to_seq: int | None = None,
        uploads: Sequence[Upload] = (),
    ) -> Message | None:
        """Store and broadcast a message (a reply to message `reply_to_seq` of the
        same room, when given) with the files `uploads`; None when `author` is not in
        the room.

        Raises InvalidMessage for text that cannot be posted, InvalidAttachment for
        a file that cannot be attached, and BrokerUnavailable
        (or a database disconnect) when it was not stored: the answer is then 503
        and sending again is safe. Once stored, a message is never reported as
        failed, because it will reach every stream: if its publish fails, every
        stream that may miss it is cut off and replays it (see RedisBroker)."""
        body = clean_body(raw_body, self.max_chars, may_be_empty=bool(uploads))
        self._refuse_while_broker_down()
        reply_to = await self._original(room_id, reply_to_seq)
        mentioned = await self._mentionable(room_id, body)
        html = self._html(body, mentioned)
        attachments = await self._store(uploads)
        keys = [attachment.key for attachment in attachments]
        try:
            posted = await run_prepared(
                self.db,
                lambda statements: message_posts.post(
                    statements, room_id, author, body, html, mentioned, reply_to, attachments
                ),
                group_commit=True,
                one_statement=not mentioned and not attachments,
            )
        except DBAPIError as exc:
            if is_disconnect(exc):
                # It may have been stored after all: then its files are needed.
                await self._republish_newest(room_id)
            else:
                await self.storage.delete(keys)
            raise
        if posted is None:
            await self.storage.delete(keys)
            return None
        message, cursor = posted
        # The rooms pages' notice goes with the frame; if that fails it is lost, and
        # rooms pages recount from SQL when they reconnect.
        notice = (activity_channel(room_id), activity_notice(message, mentioned))
        await self._publish(room_id, self.frame(message, cursor), cursor, also=(notice,))
        log.info("message.posted", room_id=room_id, seq=message.seq, user_id=author.id)
        if self.after_post is not None:
            self.after_post(message, mentioned)
        return message

    async def edit(self, room_id: int, seq: int, editor: User, raw_body: str) -> Message:
        """Replace the text of `editor`'s own message and show it changed everywhere.
        Raises InvalidMessage, MessageGone, NotYours or BrokerUnavailable."""
        body = clean_body(raw_body, self.max_chars, may_be_empty=True)
        self._refuse_while_broker_down()
        mentioned = await self._mentionable(room_id, body)
        html = self._html(body, mentioned)
        async with self.db() as db:
            message, cursor = await Message.change(db, room_id, seq, editor)
            if not body and not message.attachments:  # only files may stand alone
                await db.rollback()
                raise InvalidMessage(EMPTY_MESSAGE)
            await message.edit(db, body, html, mentioned)
            await db.commit()
        await self._publish(room_id, self.change_frame(message, cursor), cursor)
        log.info("message.edited", room_id=room_id, seq=seq, user_id=editor.id)
        return message

    async def delete(self, room_id: int, seq: int, user: User, *, may_moderate: bool) -> Message:
        """Delete a message (its author's, or any if `may_moderate`) for everyone."""
        self._refuse_while_broker_down()
        async with self.db() as db:
            message, cursor = await Message.change(
                db, room_id, seq, user, may_moderate=may_moderate
            )
            keys = await message.remove(db)
            await db.commit()
        # Only once the message no longer names them: a failed commit leaves both.
        await self.storage.delete(keys)
        await self._publish(room_id, self.change_frame(message, cursor), cursor)
        log.info("message.deleted", room_id=room_id, seq=seq, user_id=user.id)
        return message

    async def react(self, room_id: int, seq: int, user: User, raw_emoji: str) -> Message:
        """Toggle `user`'s reaction with an emoji on a message of a room they are in."""
        emoji = clean_emoji(raw_emoji)
        self._refuse_while_broker_down()
        async with self.db() as db:
            message, cursor = await Message.change(db, room_id, seq, user, may_moderate=True)
            await message.toggle_reaction(db, user, emoji)
            await db.commit()
        await self._publish(room_id, self.change_frame(message, cursor), cursor)
        return message

    async def _store(self, uploads: Sequence[Upload]) -> list[Attachment]:
        """Check and convert the uploads (Pillow, in a thread), then hand what is kept
        to storage. Raises InvalidAttachment before anything is stored."""
        if not uploads:
            return []
        prepared = []
        for upload in uploads:
            async with self.image_decodes:
                prepared.append(
                    await anyio.to_thread.run_sync(prepare, upload, self.max_image_pixels)
                )
        attachments = []
        for file in prepared:
            key = await self.storage.put(file.path)
            attachments.append(
                Attachment(
                    key=key,
                    filename=file.filename,
                    content_type=file.content_type,
                    size=file.size,
                    width=file.width,
                    height=file.height,
                )
            )
        return attachments

    def _refuse_while_broker_down(self) -> None:
        if not self.broker.is_up:
            raise BrokerUnavailable("refusing to store a change that could not go live")

    @staticmethod
    def _html(body: str, mentioned: list[User]) -> str:
        return sanitize.render(body, {user.username.lower(): user.username for user in mentioned})

    async def _publish(
        self, room_id: int, frame: bytes, cursor: Cursor, also: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        try:
            await self.broker.publish(room_channel(room_id), frame, also)
        except BrokerUnavailable:
            # Stored: the broker cuts off every stream that may have missed it,
            # and they replay it.
            log.warning("message.publish_deferred", room_id=room_id, cursor=str(cursor))

    async def _original(self, room_id: int, seq: int | None) -> Message | None:
        """The message a reply quotes; messages are never removed (deleting one
        empties it), so it still exists when the reply is stored."""
        if seq is None:
            return None
        async with self.db() as db:
            original = await Message.find(db, room_id, seq)
        if original is None:
            raise InvalidMessage("You can only reply to a message of this room.")
        return original

    async def _mentionable(self, room_id: int, body: str) -> list[User]:
        """The room's members that `body` @mentions."""
        if "@" not in body:  # most messages: no second Markdown parse
            return []
        names = sanitize.mention_candidates(body)
        if not names:
            return []
        async with self.db() as db:
            return await Membership.users_named(db, room_id, names)

    async def _republish_newest(self, room_id: int) -> None:
        """After a connection died during a post, the COMMIT may or may not have
        happened. Publishing the room's newest message makes every stream fill any
        gap up to it from SQL, so a message that did commit is not left unseen
        until the room's next one. Best effort: the database may still be down."""
        try:
            async with self.db() as db:
                room = await db.get(Room, room_id)
                newest = await message_pages.page(db, room_id, limit=1)
            if room is not None and newest:
                cursor = Cursor(newest[0].seq, room.last_change)
                await self.broker.publish(room_channel(room_id), self.frame(newest[0], cursor))
        except (DBAPIError, BrokerUnavailable):
            log.warning("message.republish_failed", room_id=room_id)

    async def replay(
        self, room_id: int, after: Cursor, before_seq: int | None = None
    ) -> AsyncIterator[tuple[Cursor, bytes]]:
        """(cursor, frame) for everything a client at cursor `after` is missing, in
        batches, each read in a short session of its own: first the messages it has
        that changed since (as they stand now), then the messages after it (before
        `before_seq`). Each frame's cursor is where the client stands once it has it.

        A gap of at most one batch (`before_seq` given: a frame arrived ahead of one
        still on its way) is read once for every stream of this worker that asks for
        the same one at the same time: when two posts' frames reach Redis out of order,
        every stream of the room finds the same gap at once, and a thousand of them each
        taking a database connection emptied the pool (`chat bench fanout` on
        PostgreSQL: streams waited 30 s for one and were closed)."""
        if before_seq is None or before_seq - after.seq > REPLAY_BATCH:
            async for each in self._replay(room_id, after, before_seq):
                yield each
            return
        key = (room_id, after, before_seq)
        gap = self._gaps.get(key)
        if gap is None:
            gap = self._gaps[key] = asyncio.ensure_future(
                self._read_gap(room_id, after, before_seq)
            )
            gap.add_done_callback(lambda _: self._gaps.pop(key, None))
        # Shielded: one stream that goes away does not cancel the read the others await.
        for each in await asyncio.shield(gap):
            yield each

    async def _read_gap(
        self, room_id: int, after: Cursor, before_seq: int
    ) -> list[tuple[Cursor, bytes]]:
        return [each async for each in self._replay(room_id, after, before_seq)]

    async def _replay(
        self, room_id: int, after: Cursor, before_seq: int | None
    ) -> AsyncIterator[tuple[Cursor, bytes]]:
        have_seq, change = after
        settled_change = None
        while True:
            async with self.db() as db:
                if settled_change is None:
                    # Read first: every change up to it is committed, so the reads
                    # below see it and the client has it once they are sent.
                    settled_change = await Room.change_count(db, room_id)
                batch = await Message.changed_after(
                    db, room_id, change, up_to_seq=have_seq, limit=REPLAY_BATCH
                )
            for message in batch:
                change = message.changed
                yield Cursor(have_seq, change), self.change_frame(message, Cursor(have_seq, change))
            if len(batch) < REPLAY_BATCH:
                break
        change = max(change, settled_change)
        seq = have_seq
        while True:
            async with self.db() as db:
                batch = await message_pages.page(
                    db, room_id, after=seq, before=before_seq, limit=REPLAY_BATCH
                )
            for message in batch:
                seq = message.seq
                yield Cursor(seq, change), self.frame(message, Cursor(seq, change))
            if len(batch) < REPLAY_BATCH:
                return
