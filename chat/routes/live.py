"""What makes rooms feel alive: typing notices, read markers, notification settings,
and the rooms page's stream of unread counts. None of it is needed to chat."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat import rate_limits
from chat.activity import UserStream
from chat.auth import login_required, session_id
from chat.hot_statements import run_prepared
from chat.htmx import is_htmx
from chat.routes.forms import read_form
from chat.routes.rooms import find_membership, int_param, room_state_changed


@login_required
async def typing(request: Request) -> Response:
    """204; nothing is stored (see chat/presence.py)."""
    room, _ = await find_membership(request)
    if not await request.app.state.presence.typing(room.id, request.state.user):
        raise HTTPException(429, "Typing notices are limited to one a second.")
    return Response(status_code=204)


@login_required
async def mark_read(request: Request) -> Response:
    """Field `seq`: the newest message this tab has shown. The marker never goes back."""
    room, membership = await find_membership(request)
    seq = int_param((await read_form(request)).get("seq"), "seq")
    if seq is None:
        raise HTTPException(400, "seq is required.")
    seq = min(seq, room.last_seq)
    # With the posts and other marks that queue for SQLite's connection meanwhile, in
    # one transaction (chat.group_commit): a crowd sends three to five marks per post.
    moved = await run_prepared(
        request.app.state.db,
        lambda runner: membership.advance_read(runner, seq),
        group_commit=True,
    )
    if moved:
        await room_state_changed(request, membership, read_seq=membership.last_read_seq)
    return Response(status_code=204)


@login_required
async def notify(request: Request) -> Response:
    """Field `notify`: `on` for a notification about every message here, `off` for
    @mentions only."""
    room, membership = await find_membership(request)
    choice = (await read_form(request)).get("notify")
    if choice not in {"on", "off"}:
        raise HTTPException(400, "notify must be on or off.")
    async with request.app.state.db() as db:
        await membership.set_notify(db, choice == "on")
    await room_state_changed(request, membership)
    if is_htmx(request):
        return request.app.state.templates.TemplateResponse(
            request, "rooms/_notify.html", {"room": room, "membership": membership}
        )
    return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)


@login_required
async def user_events(request: Request) -> Response:
    """`text/event-stream` of `event: unread` and `event: notify` for all your rooms."""
    state = request.app.state
    await rate_limits.check_streams(request, request.state.user.id)
    stream = UserStream(
        state.db, state.broker, request.state.user, session_id(request.state.auth_session)
    )
    return state.streams.response(stream)
