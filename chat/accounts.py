"""What happens to an account beyond one request: its sessions ending everywhere at
once, deactivation and reactivation. The account page, /admin and the command line
share these."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from sqlalchemy import select

from chat.broker import BrokerUnavailable, user_channel
from chat.message_path import end_session_signal
from chat.models import AuthSession, LastOwner, Membership, Message, Room, User

log = structlog.get_logger("chat.accounts")


async def end_sessions(
    state: Any, user_id: int, public_ids: Collection[str] | None = None, keep: str = ""
) -> list[str]:
    """End the user's sessions named by `public_ids` (all when None) but the one whose
    hash is `keep`; their open streams close at once, on every worker (the end-session
    signal on the user's channel, as Log out sends). The public ids of those ended."""
    async with state.db() as db:
        ended = await AuthSession.end(db, user_id, public_ids, keep=keep)
    for public_id in ended:
        try:
            await state.broker.publish(user_channel(user_id), end_session_signal(public_id))
        except BrokerUnavailable:  # the sessions are gone; their streams end on reconnect
            log.warning("session.end_signal_lost", user_id=user_id)
    if ended:
        log.info("user.sessions_ended", user_id=user_id, count=len(ended))
    return ended


async def set_deactivated(state: Any, user: User, deactivated: bool) -> None:
    """Deactivate (no sign-in, every session and stream ended now) or reactivate."""
    async with state.db() as db:
        await user.set_deactivated(db, deactivated)
    if deactivated:
        await end_sessions(state, user.id)


async def delete_account(state: Any, user: User, *, remove_text: bool) -> None:
    """The owner deletes their account: deactivated at once (sessions and streams end),
    out of every room (an only owner hands the room to its longest-standing member
    first), its messages kept by "deleted user" with their text kept or removed, its
    username reserved for CHAT_USERNAME_RESERVED_DAYS."""
    async with state.db() as db:
        await user.mark_deleted(db)
    await end_sessions(state, user.id)
    async with state.db() as db:
        for room, membership in await Room.of_member(db, user):
            if membership.is_owner and await room.is_last_owner(db, user.id):
                heir = await db.scalar(
                    select(Membership.user_id)
                    .where(Membership.room_id == room.id, Membership.user_id != user.id)
                    .order_by(Membership.joined_at, Membership.user_id)
                    .limit(1)
                )
                if heir is not None:
                    await room.make_owner(db, heir)
            try:
                await room.remove_member(db, user.id)
            except LastOwner:  # no one else is in it: an administrator can hand it on
                await db.rollback()
        keys = await Message.forget_author(db, user.id, remove_text=remove_text)
    await state.messages.storage.delete(keys)
    log.info("user.deleted", user_id=user.id, text_removed=remove_text)
