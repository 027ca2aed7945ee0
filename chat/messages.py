"""The message path: post → commit with seq → render once → publish; and the room stream.

Stream invariant: a stream subscribes first, then replays from SQL everything after
the client's last seq, then forwards live frames. It tracks the last seq it sent:
anything at or below it is a duplicate and dropped; anything beyond last+1 means
frames were published out of order (two posts racing to the broker), so the gap is
filled from SQL first. Seq n is always committed before seq n+1 exists (see
Message.post), so the gap is always in the database by then.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from jinja2 import Environment
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import events, sanitize
from chat.broker import (
    Broker,
    BrokerUnavailable,
    SubscriptionOverflow,
    room_channel,
    user_channel,
)
from chat.db import is_disconnect
from chat.models import Membership, Message, User

log = structlog.get_logger("chat.messages")

REPLAY_BATCH = 500
# How much of a message a browser notification shows.
EXCERPT_CHARS = 140
# C0 and C1 control characters except tab and newline.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class InvalidMessage(ValueError):
    """The text cannot be posted; the message says why, for the person who typed it."""


def clean_body(raw: str, max_chars: int) -> str:
    body = raw.replace("\r\n", "\n").strip()
    if not body:
        raise InvalidMessage("Type a message before sending.")
    if len(body) > max_chars:
        raise InvalidMessage(
            f"Messages can be at most {max_chars:,} characters; this one has {len(body):,}."
        )
    if _CONTROL_CHARACTERS.search(body):
        raise InvalidMessage("The message contains control characters.")
    return body


def leave_room_signal(room_id: int) -> bytes:
    return f"leave-room:{room_id}".encode()


def end_session_signal(session_id: str) -> bytes:
    return f"end-session:{session_id}".encode()


def room_state_signal(room_id: int) -> bytes:
    """On a user's channel: their read marker or notify setting in the room changed."""
    return f"room-state:{room_id}".encode()


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
            "excerpt": message.body[:EXCERPT_CHARS],
        }
    ).encode()


@dataclass(frozen=True)
class MessagePath:
    """Everything posting and streaming need, built once in the app's lifespan."""

    db: async_sessionmaker[AsyncSession]
    broker: Broker
    templates: Environment
    max_chars: int

    def render(self, message: Message) -> str:
        return self.templates.get_template("messages/_message.html").render(message=message)

    def frame(self, message: Message) -> bytes:
        return events.encode("message", self.render(message), id=message.seq)

    async def post(
        self, room_id: int, author: User, raw_body: str, reply_to_seq: int | None = None
    ) -> Message | None:
        """Store and broadcast a message (a reply to message `reply_to_seq` of the
        same room, when given); None when `author` is not in the room.

        Raises InvalidMessage for text that cannot be posted, and BrokerUnavailable
        (or a database disconnect) when it was not stored: the answer is then 503
        and sending again is safe. Once stored, a message is never reported as
        failed, because it will reach every stream: if its publish fails, every
        stream that may miss it is cut off and replays it (see RedisBroker)."""
        body = clean_body(raw_body, self.max_chars)
        if not self.broker.is_up:
            raise BrokerUnavailable("refusing to store a message that could not go live")
        reply_to = await self._original(room_id, reply_to_seq)
        mentioned = await self._mentionable(room_id, body)
        html = sanitize.render(body, {user.username.lower(): user.username for user in mentioned})
        try:
            async with self.db() as db:
                message = await Message.post(db, room_id, author, body, html, mentioned, reply_to)
        except DBAPIError as exc:
            if is_disconnect(exc):
                await self._republish_newest(room_id)
            raise
        if message is not None:
            try:
                await self.broker.publish(room_channel(room_id), self.frame(message))
            except BrokerUnavailable:
                log.warning("message.publish_deferred", room_id=room_id, seq=message.seq)
            log.info("message.posted", room_id=room_id, seq=message.seq, user_id=author.id)
            try:
                await self.broker.publish(
                    activity_channel(room_id), activity_notice(message, mentioned)
                )
            except BrokerUnavailable:  # rooms pages recount from SQL when they reconnect
                log.warning("message.activity_lost", room_id=room_id, seq=message.seq)
        return message

    async def _original(self, room_id: int, seq: int | None) -> Message | None:
        """The message a reply quotes; messages are never removed (deleting one
        empties it), so it still exists when the reply is stored."""
        if seq is None:
            return None
        async with self.db() as db:
            original = await Message.in_room(db, room_id, seq)
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
                newest = await Message.page(db, room_id, limit=1)
            if newest:
                await self.broker.publish(room_channel(room_id), self.frame(newest[0]))
        except (DBAPIError, BrokerUnavailable):
            log.warning("message.republish_failed", room_id=room_id)

    async def replay(
        self, room_id: int, after: int, before: int | None = None
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(seq, frame) for every stored message after `after` (and before `before`),
        in batches, each read in a short session of its own."""
        while True:
            async with self.db() as db:
                batch = await Message.page(
                    db, room_id, after=after, before=before, limit=REPLAY_BATCH
                )
            for message in batch:
                yield message.seq, self.frame(message)
            if len(batch) < REPLAY_BATCH:
                return
            after = batch[-1].seq

    def stream(self, room_id: int, user_id: int, session_id: str, after: int) -> RoomStream:
        return RoomStream(self, room_id, user_id, session_id, after)


class RoomStream:
    """One client's stream of a room: `frames()` to send, `cut_off()` to race it with.

    `cut_off()` returns when the client fell so far behind that its queue
    overflowed; the response then closes the connection even if a write to the
    client is blocked, and the client comes back and replays from SQL.
    """

    def __init__(
        self, path: MessagePath, room_id: int, user_id: int, session_id: str, after: int
    ) -> None:
        self.path = path
        self.room_id = room_id
        self.user_id = user_id
        self.after = after
        self.ends_stream = {leave_room_signal(room_id), end_session_signal(session_id)}
        self._cut_off = asyncio.Event()

    async def cut_off(self) -> None:
        await self._cut_off.wait()
        log.info("stream.cut_off", room_id=self.room_id, user_id=self.user_id)

    async def frames(self) -> AsyncIterator[bytes]:
        """Every frame exactly once and in seq order (see the module docstring)."""
        path, room_id = self.path, self.room_id
        own = user_channel(self.user_id)
        async with path.broker.subscribe(
            room_channel(room_id), own, on_overflow=self._cut_off.set
        ) as subscription:
            yield events.RETRY_FRAME
            last_sent = self.after
            async for seq, frame in path.replay(room_id, last_sent):
                yield frame
                last_sent = seq
            while True:
                try:
                    channel, payload = await subscription.get()
                except SubscriptionOverflow:
                    return
                if channel == own:
                    if payload in self.ends_stream:
                        return
                    continue
                seq = events.seq_of(payload)
                if seq is None:
                    yield payload
                    continue
                if seq <= last_sent:
                    continue
                if seq > last_sent + 1:
                    async for missed_seq, missed_frame in path.replay(room_id, last_sent, seq):
                        yield missed_frame
                        last_sent = missed_seq
                yield payload
                last_sent = seq
