"""Helpers for the API's tests: bots and tokens made straight in the database, and a
client that speaks to /api/v1 with a bearer token and no cookies."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from chat.models import ApiToken, Bot, Room, User
from tests.support import LIMITS


def sessions_of(app):
    """An app's sessionmaker, or a sessionmaker itself (a live server's database)."""
    state = getattr(app, "state", None)
    return state.db if state is not None else app


async def make_bot(app, name: str, rooms: Iterable[int] = (), owner: str | None = None) -> User:
    """A bot, member of `rooms`."""
    async with sessions_of(app)() as db:
        owner_user = await User.by_username(db, owner) if owner else None
        bot = await Bot.create(db, name, owner_user)
        for room_id in rooms:
            room = await db.get(Room, room_id)
            await room.add_member(db, bot.user)
        return bot.user


async def token_for(
    app, username: str, *, write: bool = True, rooms: Iterable[int] = (), revoked: bool = False
) -> str:
    async with sessions_of(app)() as db:
        user = await User.by_username(db, username)
        token, secret = await ApiToken.issue(
            db, user, "test", may_write=write, room_ids=list(rooms)
        )
        if revoked:
            await ApiToken.revoke(db, token.id, [user.id])
    return secret


def api_client(base_url: str, secret: str | None, **kwargs: object) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    kwargs.setdefault("limits", LIMITS)
    return httpx.AsyncClient(base_url=base_url, headers=headers, **kwargs)


def app_client(app, secret: str | None) -> httpx.AsyncClient:
    return api_client("http://testserver", secret, transport=httpx.ASGITransport(app=app))
