"""Invite links: an owner makes them on the room's settings page; whoever opens one
(`/invites/{token}`) joins the room with one button, after signing up or logging in
when signed out (the `invite` sign-up policy lets only them sign up).

Opening the link does not join by itself: link previews in other chats fetch it, and
each fetch would take a use."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import load_session, login_required
from chat.models import MAX_ID, Invite, InviteState, Room
from chat.routes.forms import read_form
from chat.routes.room_settings import owned_room, settings_page

log = structlog.get_logger("chat.invites")

# What the owner chooses from: form value → (lifetime, what the page calls it).
LIFETIMES = {
    "1h": (timedelta(hours=1), "1 hour"),
    "1d": (timedelta(days=1), "1 day"),
    "7d": (timedelta(days=7), "7 days"),
    "30d": (timedelta(days=30), "30 days"),
}
USE_LIMITS = {"1": 1, "5": 5, "10": 10, "25": 25, "100": 100, "": None}
# Tokens are 32 characters; longer ones are not looked up.
MAX_TOKEN = 64
GONE = {
    InviteState.EXPIRED: "This invite link has expired.",
    InviteState.USED_UP: "This invite link has been used as many times as it allows.",
    InviteState.REVOKED: "This invite link was revoked.",
}
ASK_AGAIN = " Ask whoever sent it for a new one."


async def find_invite(db_factory, token: str) -> tuple[Invite, Room] | None:
    if len(token) > MAX_TOKEN:
        return None
    async with db_factory() as db:
        return await Invite.by_token(db, token)


async def valid_invite(request: Request, token: str) -> tuple[Invite, Room] | None:
    """The link, when it still works and its room is not archived (sign-up asks)."""
    found = await find_invite(request.app.state.db, token)
    if found is None or found[0].state != InviteState.VALID or found[1].is_archived:
        return None
    return found


async def _found(request: Request) -> tuple[Invite, Room]:
    found = await find_invite(request.app.state.db, request.path_params["token"])
    if found is None:
        raise HTTPException(404, "There is no such invite link." + ASK_AGAIN)
    return found


def _check_usable(invite: Invite, room: Room) -> None:
    """410 for a link that no longer works, saying why."""
    if invite.state != InviteState.VALID:
        raise HTTPException(410, GONE[invite.state] + ASK_AGAIN)
    if room.is_archived:
        raise HTTPException(410, "The room of this invite link is archived." + ASK_AGAIN)


async def _member_already(request: Request, room: Room) -> bool:
    auth_session = await load_session(request)
    if auth_session is None:
        return False
    async with request.app.state.db() as db:
        return await room.has_member(db, auth_session.user_id)


async def show(request: Request) -> Response:
    """Signed in: a Join button (a member goes to the room, whatever the link's state).
    Signed out: sign up or log in first, then back here."""
    invite, room = await _found(request)
    if await _member_already(request, room):
        return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)
    _check_usable(invite, room)
    here = request.url.path
    return request.app.state.templates.TemplateResponse(
        request,
        "invites/page.html",
        {
            "room": room,
            "signed_in": request.state.user is not None,
            "signup_url": f"{request.url_for('signup')}?"
            + urlencode({"invite": request.path_params["token"], "next": here}),
            "login_url": f"{request.url_for('login')}?" + urlencode({"next": here}),
        },
        headers={"Cache-Control": "no-store"},
    )


async def accept(request: Request) -> Response:
    """Join the room, taking one use of the link; 303 to the room."""
    invite, room = await _found(request)
    if await _member_already(request, room):
        return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)
    _check_usable(invite, room)
    if request.state.user is None:
        login = f"{request.url_for('login')}?" + urlencode({"next": request.url.path})
        return RedirectResponse(login, status_code=303)
    async with request.app.state.db() as db:
        if not await invite.use(db):
            await db.rollback()
            raise HTTPException(410, "This invite link no longer works." + ASK_AGAIN)
        # Commits the use with the membership, or neither (joined meanwhile).
        if await room.add_member(db, request.state.user):
            log.info("room.joined_by_invite", room_id=room.id, invite_id=invite.id)
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


@login_required
async def create(request: Request) -> Response:
    """Fields `expires` (1h, 1d, 7d or 30d) and `max_uses` (1, 5, 10, 25, 100 or empty
    for no limit): the settings page, with the new link shown once."""
    room, membership = await owned_room(request)
    form = await read_form(request)
    lifetime, max_uses = LIFETIMES.get(form.get("expires", "")), form.get("max_uses", "")
    if lifetime is None or max_uses not in USE_LIMITS:
        raise HTTPException(400, "expires must be 1h, 1d, 7d or 30d; max_uses 1 to 100 or empty.")
    if room.is_archived:
        raise HTTPException(409, "Unarchive the room before inviting people to it.")
    async with request.app.state.db() as db:
        invite, token = await Invite.issue(
            db, room, request.state.user, lifetime[0], USE_LIMITS[max_uses]
        )
    log.info("room.invite_made", room_id=room.id, invite_id=invite.id)
    link = str(request.url_for("invite", token=token))
    return await settings_page(request, room, membership, new_invite=link)


@login_required
async def revoke(request: Request) -> Response:
    room, _ = await owned_room(request)
    invite_id = request.path_params["invite_id"]
    async with request.app.state.db() as db:
        revoked = invite_id <= MAX_ID and await Invite.revoke(db, room.id, invite_id)
    if not revoked:
        raise HTTPException(404, "There is no such invite link of this room, or it was revoked.")
    log.info("room.invite_revoked", room_id=room.id, invite_id=invite_id)
    url = request.url_for("room_settings", room_id=room.id)
    return RedirectResponse(f"{url}?done=revoked", status_code=303)
