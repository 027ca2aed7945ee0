"""Who is asking: `Authorization: Bearer <token>` and nothing else.

A request with cookies is refused, so a browser's ambient session can never act through
the API (and the API needs no CSRF token). A token's user acts as on the pages, within
the token's limits: read only or read and write, and only the rooms it names (any other
room is 404, as a room you may not see is on the pages).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from chat import rate_limits
from chat.api.errors import ApiError
from chat.models import MAX_ID, ApiToken, Membership, Room, User
from chat.models.tokens import TOKEN_PREFIX
from chat.sse import Cursor

# What the pages' tokens look like (chat.models.tokens.new_secret): anything else is
# refused without asking the database.
TOKEN_SHAPE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chat"'}
NO_SUCH_ROOM = "There is no such room, or this token may not see it."


def unauthorized(detail: str, code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, detail, CHALLENGE)


def bearer_secret(request: Request) -> str:
    if "cookie" in request.headers:
        raise ApiError(
            400,
            "cookies_refused",
            "The API takes a bearer token and no cookies; send the request without them.",
        )
    header = request.headers.get("authorization")
    if header is None:
        raise unauthorized("Send Authorization: Bearer <token>.")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not TOKEN_SHAPE.fullmatch(secret):
        raise unauthorized("The Authorization header is not a bearer token of this chat.")
    return secret


async def authenticate(request: Request) -> ApiToken:
    """The request's live token (its user on request.state.user), counted against the
    token's request rate; its last use is written down now and then."""
    secret = bearer_secret(request)
    async with request.app.state.db() as db:
        token = await ApiToken.by_secret(db, secret)
        if token is None or not token.user.is_active:
            raise unauthorized("The token is unknown or revoked.", "invalid_token")
        await token.touch(db)
    request.state.token = token
    request.state.user = token.user
    structlog.contextvars.bind_contextvars(user_id=token.user_id, token_id=token.id)
    await rate_limits.hit(request, "api", f"token:{token.id}")
    return token


Handler = Callable[[Request], Awaitable[Response]]


def api_route(*, write: bool = False) -> Callable[[Handler], Handler]:
    """A route of the API: authenticated; with `write`, only for read-and-write tokens."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            token = await authenticate(request)
            if write and not token.may_write:
                raise ApiError(403, "insufficient_scope", "This token may only read.")
            return await handler(request)

        return wrapper

    return decorate


def path_number(request: Request, name: str) -> int:
    number = request.path_params[name]
    if number > MAX_ID:
        raise ApiError(404, "not_found", f"There is no such {name}.")
    return number


async def visible_room(request: Request) -> tuple[Room, Membership | None]:
    """The room in the path, as the token's user may see it and the token may reach it;
    404 otherwise, identically."""
    room_id = path_number(request, "room_id")
    token: ApiToken = request.state.token
    found = None
    if token.may_see(room_id):
        async with request.app.state.db() as db:
            found = await db.run_sync(lambda sync: Room.visible_to(sync, token.user, room_id))
    if found is None:
        raise ApiError(404, "not_found", NO_SUCH_ROOM)
    structlog.contextvars.bind_contextvars(room_id=room_id)
    return found


async def member_room(request: Request) -> tuple[Room, Membership]:
    room, membership = await visible_room(request)
    if membership is None:
        raise ApiError(403, "not_a_member", "Join this room first.")
    return room, membership


async def writable_room(request: Request) -> tuple[Room, Membership]:
    """As member_room, for a change to the room's messages: 409 while it is archived."""
    room, membership = await member_room(request)
    if room.is_archived:
        raise ApiError(409, "archived", "This room is archived: it is read-only.")
    return room, membership


MAX_DIGITS = len(str(MAX_ID))


def query_number(request: Request, name: str) -> int | None:
    """A whole number from the query string (ASCII digits, within the columns' range)."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
        raise ApiError(400, "bad_request", f"{name} must be a whole number.")
    if int(value) > MAX_ID:
        raise ApiError(400, "bad_request", f"{name} is out of range.")
    return int(value)


def cursor(value: str | None, name: str) -> Cursor | None:
    """A stream cursor (`42` or `42.7`) from a header or the query string."""
    if value is None or value == "":
        return None
    parsed = Cursor.parse(value)
    if parsed is None or max(parsed) > MAX_ID:
        raise ApiError(400, "bad_request", f"{name} must be a message cursor such as 42 or 42.7.")
    return parsed


def viewer(request: Request) -> User:
    return request.state.user


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to CHAT_MAX_API_BODY_BYTES (413 past it)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = request.app.state.settings.max_api_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"The body is over {limit:,} bytes.")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    """body[name], of `kind` (a JSON number is an int, never a bool); None when absent
    and not `required`."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {str: "a string", int: "a whole number"}
        raise ApiError(422, "invalid", f"`{name}` must be {names.get(kind, kind.__name__)}.")
    if kind is int and not 0 <= value <= MAX_ID:
        raise ApiError(422, "invalid", f"`{name}` is out of range.")
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON's "\udc00": a lone surrogate
            raise ApiError(422, "invalid", f"`{name}` is not valid Unicode.") from exc
    return value
