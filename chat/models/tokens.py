"""API tokens: how bots and people's scripts sign in to /api/v1 (chat/api/).

A token is random and shown once; only its SHA-256 is stored (a token has 256 bits of
entropy, so a fast hash is enough: nothing to guess, unlike a password). It belongs
to one user (a bot or a person), is named, may be limited to reading and to some of
the rooms its user may see, and is revoked rather than deleted, so the list keeps
what it was and when it was last used.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chat.models.base import Base, UTCDateTime, utcnow
from chat.models.users import User

# What every token starts with: a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "chat_"  # noqa: S105 (not a secret)
MAX_TOKEN_NAME = 60
MAX_TOKEN_ROOMS = 50
# A token's last use is written at most this often (each write is a database write).
TOUCH_SECONDS = 60


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def room_list(room_ids: Iterable[int]) -> str:
    return ",".join(str(room_id) for room_id in sorted(set(room_ids)))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(MAX_TOKEN_NAME))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, so its owner can tell which one a script holds.
    hint: Mapped[str] = mapped_column(String(16))
    may_write: Mapped[bool] = mapped_column(default=False)
    # Comma-separated room ids the token is limited to; empty: every room of its user.
    room_ids: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined", foreign_keys=[user_id])

    @property
    def rooms(self) -> frozenset[int]:
        """The rooms it is limited to; empty when it is not limited."""
        return frozenset(int(each) for each in self.room_ids.split(",") if each)

    def may_see(self, room_id: int) -> bool:
        rooms = self.rooms
        return not rooms or room_id in rooms

    @property
    def scope(self) -> str:
        return "read and write" if self.may_write else "read"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    async def issue(
        cls,
        db: AsyncSession,
        user: User,
        name: str,
        *,
        may_write: bool,
        room_ids: Iterable[int] = (),
        created_by: User | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token for `user` and its secret, which is never stored or shown again."""
        secret = new_secret()
        token = cls(
            user_id=user.id,
            name=name,
            token_hash=secret_hash(secret),
            hint=secret[: len(TOKEN_PREFIX) + 4],
            may_write=may_write,
            room_ids=room_list(room_ids),
            created_by_id=(created_by or user).id,
        )
        db.add(token)
        await db.commit()
        return token, secret

    @classmethod
    async def by_secret(cls, db: AsyncSession, secret: str) -> ApiToken | None:
        """The live (not revoked) token whose secret this is, with its user; none for a
        deactivated account's."""
        return await db.scalar(
            select(cls)
            .join(User, User.id == cls.user_id)
            .where(
                cls.token_hash == secret_hash(secret),
                cls.revoked_at.is_(None),
                User.deactivated_at.is_(None),
            )
        )

    @classmethod
    async def of_user(cls, db: AsyncSession, user_id: int) -> list[ApiToken]:
        """The user's tokens, live ones first, newest first."""
        rows = await db.scalars(
            select(cls)
            .where(cls.user_id == user_id)
            .order_by(cls.revoked_at.is_not(None), cls.created_at.desc(), cls.id.desc())
        )
        return list(rows)

    async def touch(self, db: AsyncSession) -> None:
        now = utcnow()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > TOUCH_SECONDS:
            await db.execute(
                update(ApiToken).where(ApiToken.id == self.id).values(last_used_at=now)
            )
            await db.commit()
            self.last_used_at = now

    @classmethod
    async def revoke(cls, db: AsyncSession, token_id: int, user_ids: Iterable[int]) -> bool:
        """Revoke token `token_id` if it belongs to one of `user_ids`; False otherwise."""
        result = await db.execute(
            update(cls)
            .where(cls.id == token_id, cls.user_id.in_(list(user_ids)), cls.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        await db.commit()
        return result.rowcount > 0
