"""Accounts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    Index,
    String,
    cast,
    false,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
)

from chat.models.base import Base, UTCDateTime, utcnow

# A deleted account's username once it is free again: "~" is not allowed in usernames.
DELETED_PREFIX = "~deleted~"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A bot (chat/models/bots.py) signs in only with API tokens: its password hash is
    # empty, which no password verifies.
    is_bot: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Administrators see /admin (chat create-user --admin, chat admin grant NAME).
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A deactivated account cannot sign in and has no sessions; its messages stay.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deleted by its owner (deactivated too): its username stays taken for a while
    # (CHAT_USERNAME_RESERVED_DAYS), then a sign-up may take it (User.free_username).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Shown beside the account's messages and in the header (empty: the username);
    # @mentions still use the username.
    display_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # An IANA zone ("Europe/Paris") the pages show times in; empty: the browser's own.
    time_zone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # The storage key of their profile picture (chat/avatars.py), if they chose one.
    avatar_key: Mapped[str | None] = mapped_column(String(64))

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username

    @classmethod
    async def by_username(cls, db: AsyncSession, username: str) -> User | None:
        if "\x00" in username:  # no name holds one, and PostgreSQL refuses it in a query
            return None
        return await db.scalar(select(cls).where(func.lower(cls.username) == username.lower()))

    @classmethod
    async def create(
        cls, db: AsyncSession, username: str, password_hash: str, *, is_admin: bool = False
    ) -> User | None:
        """Insert a user; None when the name is taken (in any letter case)."""
        user = cls(username=username, password_hash=password_hash, is_admin=is_admin)
        db.add(user)
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
            return None
        return user

    @classmethod
    async def free_username(cls, db: AsyncSession, username: str, reserved: timedelta) -> bool:
        """Let a sign-up take `username` when a deleted account has held it for longer
        than `reserved`: that account is renamed to a name no one can sign up with."""
        result = await db.execute(
            update(cls)
            .where(
                func.lower(cls.username) == username.lower(),
                cls.deleted_at.is_not(None),
                cls.deleted_at < utcnow() - reserved,
            )
            .values(username=literal(DELETED_PREFIX) + cast(cls.id, String))
        )
        await db.commit()
        return result.rowcount > 0

    @classmethod
    async def search(cls, db: AsyncSession, text: str, limit: int) -> list[User]:
        """Accounts whose username contains `text` (any letter case), by username."""
        if "\x00" in text:  # no name holds one, and PostgreSQL refuses it in a query
            return []
        pattern = "%" + like_escaped(text.lower()) + "%"
        rows = await db.scalars(
            select(cls)
            .where(func.lower(cls.username).like(pattern, escape="\\"))
            .order_by(func.lower(cls.username))
            .limit(limit)
        )
        return list(rows)

    async def set_admin(self, db: AsyncSession, is_admin: bool) -> None:
        await db.execute(update(User).where(User.id == self.id).values(is_admin=is_admin))
        await db.commit()
        self.is_admin = is_admin

    async def set_deactivated(self, db: AsyncSession, deactivated: bool) -> None:
        """Deactivate (now) or reactivate; the caller ends the account's sessions."""
        when = utcnow() if deactivated else None
        await db.execute(update(User).where(User.id == self.id).values(deactivated_at=when))
        await db.commit()
        self.deactivated_at = when

    async def set_profile(self, db: AsyncSession, display_name: str, time_zone: str) -> None:
        await db.execute(
            update(User)
            .where(User.id == self.id)
            .values(display_name=display_name, time_zone=time_zone)
        )
        await db.commit()
        self.display_name, self.time_zone = display_name, time_zone

    async def set_avatar(self, db: AsyncSession, key: str | None) -> None:
        await db.execute(update(User).where(User.id == self.id).values(avatar_key=key))
        await db.commit()
        self.avatar_key = key

    @classmethod
    async def avatar_exists(cls, db: AsyncSession, key: str) -> bool:
        return await db.scalar(select(cls.id).where(cls.avatar_key == key)) is not None

    async def mark_deleted(self, db: AsyncSession) -> None:
        """Deleted by its owner: deactivated, and its username reserved from now."""
        now = utcnow()
        await db.execute(
            update(User).where(User.id == self.id).values(deactivated_at=now, deleted_at=now)
        )
        await db.commit()
        self.deactivated_at = self.deleted_at = now

    @classmethod
    async def change_password_hash(cls, db: AsyncSession, user_id: int, password_hash: str) -> None:
        await db.execute(update(cls).where(cls.id == user_id).values(password_hash=password_hash))
        await db.commit()


# Case-insensitive uniqueness: "Alice" and "alice" are one person in @mentions.
Index("uq_users_username_lower", func.lower(User.username), unique=True)


def like_escaped(text: str) -> str:
    """`text` matched literally by LIKE (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
