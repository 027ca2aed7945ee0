"""A room's incoming webhooks (/rooms/{id}/webhooks), for its owners: each is a secret
URL (served by chat/api/hooks.py) that posts to the room as a bot of its own."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import login_required
from chat.models import Bot, IncomingWebhook, Room
from chat.routes.forms import read_form
from chat.routes.rooms import MAX_ID, find_membership
from chat.routes.sessions import USERNAME

log = structlog.get_logger("chat.webhooks")


async def owned_room(request: Request) -> Room:
    """The room in the path, for its owners (404 if unseen, 403 for other members)."""
    room, membership = await find_membership(request)
    if room.is_direct or not membership.is_owner:
        raise HTTPException(403, "Only the room's owners manage its webhooks.")
    return room


async def _page(
    request: Request,
    room: Room,
    *,
    url: str = "",
    error: str = "",
    name: str = "",
    status: int = 200,
) -> Response:
    async with request.app.state.db() as db:
        hooks = await IncomingWebhook.of_room(db, room.id)
    return request.app.state.templates.TemplateResponse(
        request,
        "webhooks/page.html",
        {
            "room": room,
            "hooks": hooks,
            "new_url": url,
            "error": error,
            "name": name,
            "removed": request.query_params.get("done") == "removed",
        },
        status_code=status,
    )


@login_required
async def page(request: Request) -> Response:
    return await _page(request, await owned_room(request))


@login_required
async def create(request: Request) -> Response:
    """Field `name`: the bot it posts as (a new account of that name, in the room)."""
    room = await owned_room(request)
    name = (await read_form(request)).get("name", "").strip()
    if not USERNAME.fullmatch(name):
        return await _page(
            request,
            room,
            error="The name it posts as is 3 to 32 letters, digits, _ or -, like a username.",
            name=name[:32],
            status=400,
        )
    user = request.state.user
    async with request.app.state.db() as db:
        bot = await Bot.create(db, name, user)
        if bot is None:
            return await _page(
                request, room, error=f"The name “{name}” is taken.", name=name, status=400
            )
        await room.add_member(db, bot.user)
        hook, secret = await IncomingWebhook.create(db, room.id, bot.user, user)
    log.info("webhook.created", hook_id=hook.id, user_id=user.id)
    url = str(request.url_for("incoming_webhook", secret=secret))
    return await _page(request, room, url=url)


@login_required
async def remove(request: Request) -> Response:
    room = await owned_room(request)
    hook_id = request.path_params["hook_id"]
    async with request.app.state.db() as db:
        removed = hook_id <= MAX_ID and await IncomingWebhook.remove(db, room.id, hook_id)
    if not removed:
        raise HTTPException(404, "There is no such webhook in this room.")
    log.info("webhook.removed", hook_id=hook_id, user_id=request.state.user.id)
    url = request.url_for("room_webhooks", room_id=room.id)
    return RedirectResponse(f"{url}?done=removed", status_code=303)
