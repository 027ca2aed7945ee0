"""Invite links to a room: random, expiring, with a use limit, revocable. Only the
token's hash is stored; the link is shown once, to the owner who made it."""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from chat.models.base import Base, UTCDateTime, utcnow
from chat.models.rooms import Room
from chat.models.users import User

# Shown beside each link so its owner can tell them apart: the token's first characters.
HINT_CHARS = 6


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InviteState(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    USED_UP = "used up"
    REVOKED = "revoked"


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(HINT_CHARS))
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None: as many uses as the link's lifetime allows.
    max_uses: Mapped[int | None]
    uses: Mapped[int] = mapped_column(default=0, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def state(self) -> InviteState:
        if self.revoked_at is not None:
            return InviteState.REVOKED
        if self.expires_at <= utcnow():
            return InviteState.EXPIRED
        if self.max_uses is not None and self.uses >= self.max_uses:
            return InviteState.USED_UP
        return InviteState.VALID

    @classmethod
    async def issue(
        cls,
        db: AsyncSession,
        room: Room,
        creator: User,
        lifetime: timedelta,
        max_uses: int | None,
    ) -> tuple[Invite, str]:
        """A new link to `room` and its token, which is never stored or shown again."""
        token = secrets.token_urlsafe(24)
        invite = cls(
            token_hash=_token_hash(token),
            hint=token[:HINT_CHARS],
            room_id=room.id,
            created_by_id=creator.id,
            expires_at=utcnow() + lifetime,
            max_uses=max_uses,
        )
        db.add(invite)
        await db.commit()
        return invite, token

    @classmethod
    async def by_token(cls, db: AsyncSession, token: str) -> tuple[Invite, Room] | None:
        """The link of `token` (in whatever state) and its room."""
        row = (
            await db.execute(
                select(cls, Room)
                .join(Room, Room.id == cls.room_id)
                .where(cls.token_hash == _token_hash(token))
            )
        ).first()
        return None if row is None else (row[0], row[1])

    @classmethod
    async def of_room(cls, db: AsyncSession, room_id: int) -> list[Invite]:
        """The room's links that still work, newest first."""
        rows = await db.scalars(
            select(cls)
            .where(cls.room_id == room_id, cls.revoked_at.is_(None), cls.expires_at > utcnow())
            .order_by(cls.id.desc())
        )
        return [invite for invite in rows if invite.state == InviteState.VALID]

    async def use(self, db: AsyncSession) -> bool:
        """Count one use, atomically: False when the link stopped working meanwhile
        (revoked, expired or its last use taken by someone else)."""
        result = await db.execute(
            update(Invite)
            .where(
                Invite.id == self.id,
                Invite.revoked_at.is_(None),
                Invite.expires_at > utcnow(),
                or_(Invite.max_uses.is_(None), Invite.uses < Invite.max_uses),
            )
            .values(uses=Invite.uses + 1)
        )
        return result.rowcount == 1

    @classmethod
    async def revoke(cls, db: AsyncSession, room_id: int, invite_id: int) -> bool:
        result = await db.execute(
            update(cls)
            .where(cls.id == invite_id, cls.room_id == room_id, cls.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        await db.commit()
        return result.rowcount == 1
