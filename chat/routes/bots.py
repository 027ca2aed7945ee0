"""Bots (/account/bots): make one, put it in rooms, issue and revoke its tokens. A bot
is managed by the person who made it; anyone else gets 404 for its page."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.auth import login_required
from chat.models import ApiToken, Bot, Room, WebhookDelivery
from chat.models.bots import MAX_WEBHOOK_URL
from chat.routes.forms import read_form
from chat.routes.rooms import MAX_ID, int_param
from chat.routes.sessions import USERNAME
from chat.routes.tokens import end_token_streams, read_fields, rooms_of, token_request
from chat.webhooks import UnsafeTarget, check_target

log = structlog.get_logger("chat.bots")

DONE = {
    "created": "The bot is made. Add it to rooms and issue it a token.",
    "revoked": "The token is revoked: requests with it are refused from now on.",
    "added": "The bot is in the room now.",
    "outgoing": "The outgoing webhook is saved.",
}


def may_create_bots(request: Request) -> bool:
    """Per CHAT_BOT_CREATORS: everyone, or only admins."""
    if request.app.state.settings.bot_creators == "everyone":
        return True
    return bool(getattr(request.state.user, "is_admin", False))


async def _list_page(
    request: Request, *, error: str = "", name: str = "", status: int = 200
) -> Response:
    async with request.app.state.db() as db:
        bots = await Bot.owned_by(db, request.state.user)
    return request.app.state.templates.TemplateResponse(
        request,
        "bots/list.html",
        {"bots": bots, "may_create": may_create_bots(request), "error": error, "name": name},
        status_code=status,
    )


@login_required
async def index(request: Request) -> Response:
    return await _list_page(request)


@login_required
async def create(request: Request) -> Response:
    if not may_create_bots(request):
        raise HTTPException(403, "Only admins may make bots on this chat.")
    name = (await read_form(request)).get("name", "").strip()
    if not USERNAME.fullmatch(name):
        return await _list_page(
            request,
            error="A bot's name is 3 to 32 letters, digits, _ or -, like a username.",
            name=name[:32],
            status=400,
        )
    async with request.app.state.db() as db:
        bot = await Bot.create(db, name, request.state.user)
    if bot is None:
        return await _list_page(
            request, error=f"The name “{name}” is taken.", name=name, status=400
        )
    log.info("bot.created", bot_id=bot.user_id, user_id=request.state.user.id)
    return _back(request, bot, "created")


async def owned_bot(request: Request) -> Bot:
    """The bot in the path, when the viewer made it; else 404."""
    bot_id = request.path_params["bot_id"]
    bot = None
    if bot_id <= MAX_ID:
        async with request.app.state.db() as db:
            bot = await Bot.get(db, bot_id)
    if bot is None or bot.owner_id != request.state.user.id:
        raise HTTPException(404, "There is no such bot of yours.")
    return bot


async def addable_rooms(request: Request, bot_rooms: list[Room]) -> list[Room]:
    """Rooms the viewer may put a bot in: public rooms they are in and rooms they own,
    but not direct conversations, nor rooms the bot is in already."""
    async with request.app.state.db() as db:
        mine = await Room.of_member(db, request.state.user)
    present = {room.id for room in bot_rooms}
    return [
        room
        for room, membership in mine
        if not room.is_direct
        and room.id not in present
        and (not room.is_private or membership.is_owner)
    ]


async def _bot_page(
    request: Request,
    bot: Bot,
    *,
    secret: str = "",
    error: str = "",
    outgoing_error: str = "",
    status: int = 200,
) -> Response:
    async with request.app.state.db() as db:
        tokens = await ApiToken.of_user(db, bot.user_id)
        deliveries = await WebhookDelivery.log_of(db, bot.user_id)
    rooms = await rooms_of(request, bot.user)
    return request.app.state.templates.TemplateResponse(
        request,
        "bots/show.html",
        {
            "bot": bot,
            "tokens": tokens,
            "rooms": rooms,
            "room_names": {room.id: room.name for room in rooms},
            "addable": await addable_rooms(request, rooms),
            "deliveries": deliveries,
            "secret": secret,
            "error": error,
            "outgoing_error": outgoing_error,
            "done": DONE.get(request.query_params.get("done", ""), ""),
        },
        status_code=status,
    )


@login_required
async def show(request: Request) -> Response:
    return await _bot_page(request, await owned_bot(request))


@login_required
async def issue_token(request: Request) -> Response:
    bot = await owned_bot(request)
    wanted = token_request(await read_fields(request), await rooms_of(request, bot.user))
    if isinstance(wanted, str):
        return await _bot_page(request, bot, error=wanted, status=400)
    async with request.app.state.db() as db:
        token, secret = await ApiToken.issue(
            db,
            bot.user,
            wanted.name,
            may_write=wanted.may_write,
            room_ids=wanted.room_ids,
            created_by=request.state.user,
        )
    log.info("token.issued", token_id=token.id, bot_id=bot.user_id, user_id=request.state.user.id)
    return await _bot_page(request, bot, secret=secret)


@login_required
async def revoke_token(request: Request) -> Response:
    bot = await owned_bot(request)
    token_id = request.path_params["token_id"]
    async with request.app.state.db() as db:
        revoked = token_id <= MAX_ID and await ApiToken.revoke(db, token_id, [bot.user_id])
    if not revoked:
        raise HTTPException(404, "There is no such token of this bot, or it is revoked.")
    await end_token_streams(request, token_id, bot.user_id)
    log.info("token.revoked", token_id=token_id, bot_id=bot.user_id)
    return _back(request, bot, "revoked")


@login_required
async def add_to_room(request: Request) -> Response:
    """Put the bot in one of the viewer's rooms, as an owner adds a person."""
    bot = await owned_bot(request)
    room_id = int_param((await read_form(request)).get("room_id"), "room_id")
    choices = await addable_rooms(request, await rooms_of(request, bot.user))
    room = next((room for room in choices if room.id == room_id), None)
    if room is None:
        return await _bot_page(
            request, bot, error="Choose one of your rooms to add the bot to.", status=400
        )
    async with request.app.state.db() as db:
        await room.add_member(db, bot.user)
    log.info("room.member_added", user_id=bot.user_id, by_user_id=request.state.user.id)
    return _back(request, bot, "added")


@login_required
async def set_outgoing(request: Request) -> Response:
    """Fields `url` (empty: no outgoing webhook) and any number of `watch` (ids of the
    bot's rooms whose every message it is sent; it is always sent its @mentions)."""
    bot = await owned_bot(request)
    fields = await read_fields(request)
    url = dict(fields).get("url", "").strip()
    rooms = {room.id for room in await rooms_of(request, bot.user)}
    watched = []
    for key, value in fields:
        if key == "watch":
            room_id = int_param(value, "watch")
            if room_id not in rooms:
                return await _bot_page(
                    request, bot, outgoing_error="A bot can only watch rooms it is in.", status=400
                )
            watched.append(room_id)
    if len(url) > MAX_WEBHOOK_URL:
        return await _bot_page(request, bot, outgoing_error="That URL is too long.", status=400)
    if url:
        try:
            await check_target(url, request.app.state.settings.webhook_allow_private)
        except UnsafeTarget as exc:
            return await _bot_page(request, bot, outgoing_error=str(exc), status=400)
    async with request.app.state.db() as db:
        await bot.set_outgoing(db, url, watched)
    await request.app.state.webhooks.refresh()
    log.info("bot.outgoing_set", bot_id=bot.user_id, user_id=request.state.user.id)
    return _back(request, bot, "outgoing")


def _back(request: Request, bot: Bot, done: str) -> Response:
    url = request.url_for("bot", bot_id=bot.user_id)
    return RedirectResponse(f"{url}?done={done}", status_code=303)
