"""The instance as its administrators run it: the audit log of what they did, the
instance's own settings (the sign-up policy) and one-time password-reset links."""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from chat.models.base import Base, UTCDateTime, utcnow
from chat.models.users import User

# What the audit log calls an action taken from the command line (no account did it).
COMMAND_LINE = "command line"


class SignupPolicy(enum.StrEnum):
    OPEN = "open"  # anyone may sign up
    INVITE = "invite"  # only with an invite link to a room
    CLOSED = "closed"  # no one; administrators make accounts (chat create-user)


class AdminEvent(Base):
    """One line of the audit log: an administrator (or the command line) did something
    to a target. Names are copied, so a line still reads right after a rename."""

    __tablename__ = "admin_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str] = mapped_column(String(200), default="", server_default="")

    @classmethod
    async def record(
        cls,
        db: AsyncSession,
        actor: User | None,
        action: str,
        target: str,
        detail: str = "",
    ) -> AdminEvent:
        event = cls(
            actor_id=actor.id if actor else None,
            actor=actor.username if actor else COMMAND_LINE,
            action=action,
            target=target[:120],
            detail=detail[:200],
        )
        db.add(event)
        await db.commit()
        return event

    @classmethod
    async def newest(
        cls, db: AsyncSession, limit: int, before: int | None = None
    ) -> list[AdminEvent]:
        """The newest `limit` events (older than the event `before`, when given)."""
        query = select(cls).order_by(cls.id.desc()).limit(limit)
        if before is not None:
            query = query.where(cls.id < before)
        return list(await db.scalars(query))


class InstanceSetting(Base):
    """A setting administrators change on /admin (rather than in the environment)."""

    __tablename__ = "instance_settings"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))

    @classmethod
    async def get(cls, db: AsyncSession, name: str) -> str | None:
        return await db.scalar(select(cls.value).where(cls.name == name))

    @classmethod
    async def put(cls, db: AsyncSession, name: str, value: str) -> None:
        result = await db.execute(update(cls).where(cls.name == name).values(value=value))
        if result.rowcount == 0:
            db.add(cls(name=name, value=value))
        try:
            await db.commit()
        except IntegrityError:  # another admin inserted it first: theirs is overwritten
            await db.rollback()
            await db.execute(update(cls).where(cls.name == name).values(value=value))
            await db.commit()


async def signup_policy(db: AsyncSession, forced: str) -> SignupPolicy:
    """The policy in force: CHAT_SIGNUP when set (`forced`), else the administrators'
    choice, else open."""
    if forced:
        return SignupPolicy(forced)
    stored = await InstanceSetting.get(db, "signup")
    return (
        SignupPolicy(stored) if stored in SignupPolicy.__members__.values() else SignupPolicy.OPEN
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordReset(Base):
    """A one-time link an administrator gives someone who lost their password: only the
    token's hash is stored, and using it once (or its expiry) ends it."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @classmethod
    async def issue(cls, db: AsyncSession, user: User, lifetime: timedelta) -> str:
        """A new link's token for `user`; every earlier unused link of theirs ends."""
        now = utcnow()
        await db.execute(
            update(cls).where(cls.user_id == user.id, cls.used_at.is_(None)).values(used_at=now)
        )
        token = secrets.token_urlsafe(32)
        db.add(cls(token_hash=_token_hash(token), user_id=user.id, expires_at=now + lifetime))
        await db.commit()
        return token

    @classmethod
    async def valid(cls, db: AsyncSession, token: str) -> tuple[PasswordReset, User] | None:
        """The unused, unexpired link of `token` and its (active) account."""
        row = (
            await db.execute(
                select(cls, User)
                .join(User, User.id == cls.user_id)
                .where(
                    cls.token_hash == _token_hash(token),
                    cls.used_at.is_(None),
                    cls.expires_at > utcnow(),
                    User.deactivated_at.is_(None),
                )
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def use(self, db: AsyncSession) -> bool:
        """Mark the link used; False when another request used it first."""
        result = await db.execute(
            update(PasswordReset)
            .where(PasswordReset.token_hash == self.token_hash, PasswordReset.used_at.is_(None))
            .values(used_at=utcnow())
        )
        await db.commit()
        return result.rowcount == 1
