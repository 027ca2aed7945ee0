"""Posting messages and paging back through a room's history."""

from __future__ import annotations

from collections.abc import Awaitable

from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat import page_cache, rate_limits
from chat.auth import login_required
from chat.hot_statements import run_sync_work
from chat.html_cache import csrf_field
from chat.htmx import is_htmx
from chat.message_path import InvalidMessage
from chat.models import (
    Message,
    MessageContent,
    MessageGone,
    MessageHead,
    NotYours,
    Room,
    message_pages,
)
from chat.rate_limits import RateLimited
from chat.routes.forms import message_form, read_form, refusal, refusal_status, typed_body
from chat.routes.rooms import (
    MAX_ID,
    find_membership,
    find_room,
    find_writable_membership,
    int_param,
    room_page,
)
from chat.uploads import InvalidAttachment

# The refusals of the message routes, each said the same way wherever it comes up.
NO_SUCH_MESSAGE = "There is no such message."
MESSAGE_GONE = "This message does not exist or was deleted."
NOT_YOURS = "Only its author can change this message."


@login_required
async def create(request: Request) -> Response:
    room, membership = await find_writable_membership(request)
    body, reply_to_seq = "", None
    try:
        async with message_form(request) as form:
            body = form.fields.get("body", "")
            reply_to_seq = int_param(form.fields.get("reply_to"), "reply_to")
            await rate_limits.hit(request, "post", f"user:{request.state.user.id}")
            message = await request.app.state.messages.post(
                room.id, request.state.user, body, reply_to_seq, form.uploads
            )
    except (InvalidMessage, InvalidAttachment, RateLimited) as exc:
        error, status, body = refusal(exc), refusal_status(exc), typed_body(exc, body)
        if is_htmx(request):
            response = await _composer(
                request, room, error=error, body=body, reply_to_seq=reply_to_seq, status=status
            )
        else:
            response = await room_page(
                request, room, membership, composer_error=error, draft=body, status=status
            )
        if isinstance(exc, RateLimited):
            response.headers.update(exc.headers or {})
        return response
    if message is None:  # they left or were removed a moment ago
        raise HTTPException(403, "You are no longer a member of this room.")
    if is_htmx(request):
        # The message itself reaches this tab through its stream, like every other tab.
        response = await _composer(request, room)
    else:
        response = RedirectResponse(
            f"{request.url_for('room', room_id=room.id)}#message-{message.seq}", status_code=303
        )
    # After the reply: ending the poster's typing notice need not delay it.
    response.background = BackgroundTask(
        request.app.state.presence.stopped_typing, room.id, request.state.user
    )
    return response


async def _composer(
    request: Request,
    room: Room,
    *,
    error: str = "",
    body: str = "",
    reply_to_seq: int | None = None,
    status: int = 200,
) -> Response:
    """A fresh composer, or the one that was sent back with its error, its text and
    (when it still exists) the message it replies to."""
    if not (error or body or room.is_direct or reply_to_seq is not None):
        return request.app.state.html_cache.empty_composer(request, room)
    context: dict[str, object] = {"room": room, "error": error, "body": body}
    if room.is_direct or reply_to_seq is not None:
        async with request.app.state.db() as db:
            if room.is_direct:
                members = await db.run_sync(room.members)
                context["room_title"] = room.title_for(members, request.state.user)
            if reply_to_seq is not None:
                context["reply_to"] = await Message.find(db, room.id, reply_to_seq, deleted=True)
    return request.app.state.templates.TemplateResponse(
        request, "messages/_composer.html", context, status_code=status
    )


@login_required
async def history(request: Request) -> Response:
    """A fragment of history: the page of messages before `before` with its own "older"
    link, or the page after `after` with its own "newer" link."""
    room, _ = await find_room(request)
    before = int_param(request.query_params.get("before"), "before")
    after = int_param(request.query_params.get("after"), "after")
    if (before is None) == (after is None):
        raise HTTPException(400, "Give exactly one of before and after.")
    return await request.app.state.page_cache.respond(
        request, page_cache.history(room), lambda: _history_page(request, room, before, after)
    )


async def _history_page(
    request: Request, room: Room, before: int | None, after: int | None
) -> Response:
    state = request.app.state

    def read_page(db: Session) -> tuple[list[MessageHead], list[MessageContent]]:
        messages = message_pages.heads(
            db, room.id, before=before, after=after, limit=state.settings.page_size
        )
        return messages, state.html_cache.read_uncached(db, messages)

    messages, uncached = await run_sync_work(state.db, read_page, autocommit=True)
    contents = await state.html_cache.contents(state.db, messages, csrf_field(request), uncached)
    return request.app.state.templates.TemplateResponse(
        request,
        "messages/_page.html",
        {
            "room": room,
            "messages": messages,
            "contents": contents,
            "older_link": before is not None,
            "newer_link": after is not None,
        },
    )


def _seq(request: Request) -> int:
    seq = request.path_params["seq"]
    if seq > MAX_ID:
        raise HTTPException(404, NO_SUCH_MESSAGE)
    return seq


async def _changed(request: Request, room: Room, change: Awaitable[Message]) -> Response:
    """Run a change to a message; reply with the message as it now stands (htmx swaps
    it in place; every other tab gets it through its stream) or go back to it."""
    try:
        message = await change
    except MessageGone as exc:
        raise HTTPException(404, MESSAGE_GONE) from exc
    except NotYours as exc:
        raise HTTPException(403, NOT_YOURS) from exc
    if is_htmx(request):
        return request.app.state.templates.TemplateResponse(
            request, "messages/_message.html", {"message": message}
        )
    return _back_to(request, room.id, message.seq)


@login_required
async def show(request: Request) -> Response:
    """One message as it stands (htmx: the partial, e.g. to cancel an edit)."""
    room, _ = await find_room(request)
    seq = _seq(request)
    if not is_htmx(request):
        return _back_to(request, room.id, seq)
    async with request.app.state.db() as db:
        message = await Message.find(db, room.id, seq, deleted=True)
    if message is None:
        raise HTTPException(404, NO_SUCH_MESSAGE)
    return request.app.state.templates.TemplateResponse(
        request, "messages/_message.html", {"message": message}
    )


def _back_to(request: Request, room_id: int, seq: int) -> Response:
    """The message's permalink: the room page around it."""
    return RedirectResponse(
        f"{request.url_for('room', room_id=room_id)}?at={seq}#message-{seq}", status_code=303
    )


@login_required
async def actions(request: Request) -> Response:
    """What the viewer may do with a message: the menu (htmx) or a page of its own."""
    room, membership = await find_membership(request)
    async with request.app.state.db() as db:
        message = await Message.find(db, room.id, _seq(request))
    if message is None:
        raise HTTPException(404, MESSAGE_GONE)
    mine = message.author_id == request.state.user.id
    template = "messages/_menu.html" if is_htmx(request) else "messages/actions.html"
    return request.app.state.templates.TemplateResponse(
        request,
        template,
        {
            "room": room,
            "message": message,
            "may_edit": mine,
            "may_delete": mine or membership.is_owner,
        },
    )


@login_required
async def edit_form(request: Request) -> Response:
    room, _ = await find_writable_membership(request)
    seq = _seq(request)
    async with request.app.state.db() as db:
        message = await Message.find(db, room.id, seq)
    if message is None:
        raise HTTPException(404, MESSAGE_GONE)
    if message.author_id != request.state.user.id:
        raise HTTPException(403, NOT_YOURS)
    return _edit_form(request, room, message, body=message.body)


def _edit_form(
    request: Request, room: Room, message: Message, *, body: str, error: str = "", status: int = 200
) -> Response:
    template = "messages/_edit.html" if is_htmx(request) else "messages/edit.html"
    return request.app.state.templates.TemplateResponse(
        request,
        template,
        {"room": room, "message": message, "body": body, "error": error},
        status_code=status,
    )


@login_required
async def edit(request: Request) -> Response:
    room, _ = await find_writable_membership(request)
    seq = _seq(request)
    body = (await read_form(request)).get("body", "")
    await rate_limits.hit(request, "change", f"user:{request.state.user.id}")
    path = request.app.state.messages
    try:
        return await _changed(request, room, path.edit(room.id, seq, request.state.user, body))
    except InvalidMessage as exc:
        async with request.app.state.db() as db:
            message = await Message.find(db, room.id, seq)
        if message is None:
            raise HTTPException(404, MESSAGE_GONE) from exc
        if message.author_id != request.state.user.id:
            raise HTTPException(403, NOT_YOURS) from exc
        return _edit_form(request, room, message, body=body, error=str(exc), status=400)


@login_required
async def delete(request: Request) -> Response:
    room, membership = await find_writable_membership(request)
    await rate_limits.hit(request, "change", f"user:{request.state.user.id}")
    change = request.app.state.messages.delete(
        room.id, _seq(request), request.state.user, may_moderate=membership.is_owner
    )
    return await _changed(request, room, change)


@login_required
async def react(request: Request) -> Response:
    room, _ = await find_writable_membership(request)
    emoji = (await read_form(request)).get("emoji", "")
    await rate_limits.hit(request, "change", f"user:{request.state.user.id}")
    try:
        change = request.app.state.messages.react(room.id, _seq(request), request.state.user, emoji)
        return await _changed(request, room, change)
    except InvalidMessage as exc:
        raise HTTPException(400, str(exc)) from exc
