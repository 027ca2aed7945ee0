"""Bots, incoming webhooks and the outgoing webhooks' deliveries.

A bot is a user (`User.is_bot`) with a row here naming the person who made it (its
owner, who issues its tokens) and, optionally, the URL its outgoing webhook calls when
it is @mentioned or something is said in a room it watches. An incoming webhook is a
secret URL that posts to one room as a bot of its own.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, Text, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chat.models.base import Base, UTCDateTime, utcnow
from chat.models.tokens import TOKEN_PREFIX, new_secret, room_list, secret_hash
from chat.models.users import User

MAX_WEBHOOK_URL = 2000
# How many deliveries a bot's page lists (the newest).
DELIVERY_LOG = 20


class Bot(Base):
    __tablename__ = "bots"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # Where its outgoing webhook POSTs; empty: it has none.
    outgoing_url: Mapped[str] = mapped_column(
        String(MAX_WEBHOOK_URL), default="", server_default=""
    )
    # The HMAC key of X-Chat-Signature, which the receiver keeps to check it.
    signing_secret: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(32))
    # Comma-separated ids of rooms whose every message goes to the webhook.
    watched_room_ids: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(lazy="joined", foreign_keys=[user_id])

    @property
    def watched_rooms(self) -> frozenset[int]:
        return frozenset(int(each) for each in self.watched_room_ids.split(",") if each)

    @classmethod
    async def create(cls, db: AsyncSession, name: str, owner: User | None) -> Bot | None:
        """A bot user named `name`; None when the name is taken (in any letter case)."""
        user = await User.create(db, name, "")
        if user is None:
            return None
        await db.execute(update(User).where(User.id == user.id).values(is_bot=True))
        bot = cls(user_id=user.id, owner_id=owner.id if owner else None)
        db.add(bot)
        await db.commit()
        return await cls.get(db, user.id)

    @classmethod
    async def get(cls, db: AsyncSession, user_id: int) -> Bot | None:
        return await db.scalar(
            select(cls).where(cls.user_id == user_id).execution_options(populate_existing=True)
        )

    @classmethod
    async def owned_by(cls, db: AsyncSession, owner: User) -> list[Bot]:
        rows = await db.scalars(
            select(cls)
            .join(User, User.id == cls.user_id)
            .where(cls.owner_id == owner.id)
            .order_by(func.lower(User.username))
        )
        return list(rows)

    async def set_outgoing(self, db: AsyncSession, url: str, watched: list[int]) -> None:
        self.outgoing_url, self.watched_room_ids = url, room_list(watched)
        await db.execute(
            update(Bot)
            .where(Bot.user_id == self.user_id)
            .values(outgoing_url=self.outgoing_url, watched_room_ids=self.watched_room_ids)
        )
        await db.commit()


class IncomingWebhook(Base):
    """A secret URL (/hooks/{secret}) that posts to one room as its own bot."""

    __tablename__ = "incoming_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    bot: Mapped[User] = relationship(lazy="joined", foreign_keys=[bot_id])

    @classmethod
    async def create(
        cls, db: AsyncSession, room_id: int, bot: User, created_by: User
    ) -> tuple[IncomingWebhook, str]:
        """A webhook posting to the room as `bot`, and its secret (shown once)."""
        secret = new_secret()
        hook = cls(
            room_id=room_id,
            bot_id=bot.id,
            token_hash=secret_hash(secret),
            hint=secret[: len(TOKEN_PREFIX) + 4],
            created_by_id=created_by.id,
        )
        db.add(hook)
        await db.commit()
        return hook, secret

    @classmethod
    async def by_secret(cls, db: AsyncSession, secret: str) -> IncomingWebhook | None:
        return await db.scalar(select(cls).where(cls.token_hash == secret_hash(secret)))

    async def touch(self, db: AsyncSession) -> None:
        now = utcnow()
        if self.last_used_at is None or (now - self.last_used_at) > timedelta(minutes=1):
            await db.execute(
                update(IncomingWebhook)
                .where(IncomingWebhook.id == self.id)
                .values(last_used_at=now)
            )
            await db.commit()

    @classmethod
    async def remove(cls, db: AsyncSession, room_id: int, hook_id: int) -> bool:
        result = await db.execute(delete(cls).where(cls.id == hook_id, cls.room_id == room_id))
        await db.commit()
        return result.rowcount > 0

    @classmethod
    async def of_room(cls, db: AsyncSession, room_id: int) -> list[IncomingWebhook]:
        rows = await db.scalars(
            select(cls).where(cls.room_id == room_id).order_by(cls.created_at, cls.id)
        )
        return list(rows)


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One event for a bot's outgoing webhook: stored before it is sent, so a restart
    sends what was pending, and kept as the bot page's delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    seq: Mapped[int]
    # The JSON body, exactly as it is signed and sent every time.
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the last attempt got: an HTTP status, or why there was none.
    last_status: Mapped[int | None]
    last_error: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @classmethod
    async def due(cls, db: AsyncSession, limit: int) -> list[WebhookDelivery]:
        rows = await db.scalars(
            select(cls)
            .where(cls.state == DeliveryState.PENDING, cls.due_at <= utcnow())
            .order_by(cls.due_at, cls.id)
            .limit(limit)
        )
        return list(rows)

    @classmethod
    async def next_due_at(cls, db: AsyncSession) -> datetime | None:
        return await db.scalar(
            select(func.min(cls.due_at)).where(cls.state == DeliveryState.PENDING)
        )

    @classmethod
    async def prune(cls, db: AsyncSession, finished_before: datetime) -> int:
        """Forget deliveries finished before then (the log shows only recent ones)."""
        result = await db.execute(
            delete(cls).where(
                cls.state.in_([DeliveryState.DELIVERED, DeliveryState.FAILED]),
                cls.finished_at < finished_before,
            )
        )
        await db.commit()
        return result.rowcount

    @classmethod
    async def log_of(cls, db: AsyncSession, bot_id: int) -> list[WebhookDelivery]:
        rows = await db.scalars(
            select(cls).where(cls.bot_id == bot_id).order_by(cls.id.desc()).limit(DELIVERY_LOG)
        )
        return list(rows)

    async def record(
        self,
        db: AsyncSession,
        *,
        state: str,
        status: int | None,
        error: str,
        retry_in: timedelta | None = None,
    ) -> None:
        values: dict[str, object] = {
            "state": state,
            "attempts": self.attempts + 1,
            "last_status": status,
            "last_error": error[:200],
        }
        if retry_in is not None:
            values["due_at"] = utcnow() + retry_in
        if state != DeliveryState.PENDING:
            values["finished_at"] = utcnow()
        await db.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == self.id).values(**values)
        )
        await db.commit()
