"""Personal access tokens (/account/tokens): the API (chat/api/) as yourself. A bot's
tokens are issued on its own page (chat/routes/bots.py) with the same form."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.api.stream import token_signal
from chat.auth import login_required
from chat.broker import BrokerUnavailable, user_channel
from chat.models import ApiToken, Room, User
from chat.models.tokens import MAX_TOKEN_NAME, MAX_TOKEN_ROOMS
from chat.routes.forms import MAX_FIELDS
from chat.routes.rooms import MAX_ID, int_param

log = structlog.get_logger("chat.tokens")


async def end_token_streams(request: Request, token_id: int, user_id: int) -> None:
    """A revoked token's open event streams end at once, on every worker."""
    try:
        await request.app.state.broker.publish(user_channel(user_id), token_signal(token_id))
    except BrokerUnavailable:  # they end when they reconnect and are refused
        log.warning("token.end_signal_lost", token_id=token_id)


async def read_fields(request: Request) -> list[tuple[str, str]]:
    """A URL-encoded form's fields in order, repeated names included (checkboxes)."""
    body = await request.body()
    try:
        return parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, "The form data is malformed.") from exc


@dataclass
class TokenRequest:
    name: str
    may_write: bool
    room_ids: list[int]


def token_request(fields: list[tuple[str, str]], choosable: list[Room]) -> TokenRequest | str:
    """The token the form asks for, or what is wrong with it. `rooms` are ids among
    `choosable` (none: every room of the token's user)."""
    values = dict(fields)
    name = " ".join(values.get("name", "").split())
    if not name:
        return "Give the token a name, to tell it from your others."
    if len(name) > MAX_TOKEN_NAME or not name.isprintable():
        return f"A token's name is at most {MAX_TOKEN_NAME} printable characters."
    scope = values.get("scope", "read")
    if scope not in ("read", "write"):
        return "Choose what the token may do: read, or read and write."
    allowed = {room.id for room in choosable}
    room_ids = []
    for key, value in fields:
        if key == "rooms":
            room_id = int_param(value, "rooms")
            if room_id not in allowed:
                return "A token can only be limited to rooms its user is in."
            room_ids.append(room_id)
    if len(set(room_ids)) > MAX_TOKEN_ROOMS:
        return f"A token can be limited to at most {MAX_TOKEN_ROOMS} rooms."
    return TokenRequest(name, scope == "write", room_ids)


async def rooms_of(request: Request, user: User) -> list[Room]:
    """The rooms `user` is in: what a token of theirs may be limited to."""
    async with request.app.state.db() as db:
        return [room for room, _ in await Room.of_member(db, user)]


async def _page(
    request: Request, *, secret: str = "", error: str = "", status: int = 200
) -> Response:
    user = request.state.user
    async with request.app.state.db() as db:
        tokens = await ApiToken.of_user(db, user.id)
    rooms = await rooms_of(request, user)
    return request.app.state.templates.TemplateResponse(
        request,
        "tokens/page.html",
        {
            "tokens": tokens,
            "rooms": rooms,
            "room_names": {room.id: room.name for room in rooms},
            "secret": secret,
            "error": error,
            "done": request.query_params.get("done") == "revoked",
        },
        status_code=status,
    )


@login_required
async def page(request: Request) -> Response:
    return await _page(request)


@login_required
async def issue(request: Request) -> Response:
    """Issue a personal token: the page answers with its secret, shown this once."""
    user = request.state.user
    wanted = token_request(await read_fields(request), await rooms_of(request, user))
    if isinstance(wanted, str):
        return await _page(request, error=wanted, status=400)
    async with request.app.state.db() as db:
        token, secret = await ApiToken.issue(
            db, user, wanted.name, may_write=wanted.may_write, room_ids=wanted.room_ids
        )
    log.info("token.issued", token_id=token.id, user_id=user.id)
    return await _page(request, secret=secret)


@login_required
async def revoke(request: Request) -> Response:
    token_id = request.path_params["token_id"]
    async with request.app.state.db() as db:
        revoked = token_id <= MAX_ID and await ApiToken.revoke(
            db, token_id, [request.state.user.id]
        )
    if not revoked:
        raise HTTPException(404, "There is no such token of yours, or it is revoked.")
    await end_token_streams(request, token_id, request.state.user.id)
    log.info("token.revoked", token_id=token_id, user_id=request.state.user.id)
    return RedirectResponse(f"{request.url_for('tokens')}?done=revoked", status_code=303)
