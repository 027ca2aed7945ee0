"""Accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Index,
    String,
    false,
    func,
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


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A bot (chat/models/bots.py) signs in only with API tokens: its password hash is
    # empty, which no password verifies.
    is_bot: Mapped[bool] = mapped_column(default=False, server_default=false())

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

    @classmethod
    async def change_password_hash(cls, db: AsyncSession, user_id: int, password_hash: str) -> None:
        await db.execute(update(cls).where(cls.id == user_id).values(password_hash=password_hash))
        await db.commit()


# Case-insensitive uniqueness: "Alice" and "alice" are one person in @mentions.
Index("uq_users_username_lower", func.lower(User.username), unique=True)
