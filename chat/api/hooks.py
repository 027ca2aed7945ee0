"""Incoming webhooks: `POST /hooks/{secret}` posts to the webhook's room as its bot.

Slack-compatible: a JSON body `{"text": "..."}`, or a form with one field `payload` that
holds that JSON. The text is a message like any other (the Markdown subset, the sanitizer,
@mentions), posted through the browser's message path, so open tabs show it at once. The
secret in the URL is the only credential: it is stored hashed and never logged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat import rate_limits
from chat.api.auth import TOKEN_SHAPE, field
from chat.api.errors import ApiError
from chat.api.messages import permalink
from chat.message_path import InvalidMessage
from chat.models import IncomingWebhook

log = structlog.get_logger("chat.hooks")

NO_SUCH_HOOK = "There is no such webhook, or it was removed."


async def _read(request: Request) -> bytes:
    limit = request.app.state.settings.max_api_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"The body is over {limit:,} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _payload(content_type: str, raw: bytes) -> dict[str, Any]:
    """The JSON object sent, straight or as a form's `payload` field (Slack's way)."""
    try:
        if content_type == "application/x-www-form-urlencoded":
            fields = dict(
                parse_qsl(raw.decode("ascii"), encoding="utf-8", errors="strict", max_num_fields=20)
            )
            if "payload" not in fields:
                raise ApiError(400, "invalid_json", "The form needs a `payload` field of JSON.")
            raw = fields["payload"].encode()
        elif content_type != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                "Send application/json, or a form with a `payload` field.",
            )
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


async def incoming(request: Request) -> Response:
    secret = request.path_params["secret"]
    hook = None
    if TOKEN_SHAPE.fullmatch(secret):
        async with request.app.state.db() as db:
            hook = await IncomingWebhook.by_secret(db, secret)
            if hook is not None:
                await hook.touch(db)
    if hook is None or not hook.bot.is_active:
        raise ApiError(404, "not_found", NO_SUCH_HOOK)
    structlog.contextvars.bind_contextvars(hook_id=hook.id, room_id=hook.room_id)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    text = field(_payload(content_type, await _read(request)), "text", str)
    await rate_limits.hit(request, "hook", f"hook:{hook.id}")
    try:
        message = await request.app.state.messages.post(hook.room_id, hook.bot, text)
    except InvalidMessage as exc:
        raise ApiError(422, "invalid_message", str(exc)) from exc
    if message is None:  # its bot was removed from the room
        raise ApiError(403, "not_a_member", "The webhook's bot is no longer in the room.")
    return JSONResponse(
        {"ok": True, "seq": message.seq, "permalink": permalink(request, hook.room_id, message.seq)}
    )
