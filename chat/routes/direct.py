"""Direct messages: a private conversation of two, made by its first message."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat import rate_limits
from chat.auth import login_required
from chat.message_path import InvalidMessage, clean_body
from chat.models import NotDirectable, Room, User
from chat.rate_limits import RateLimited
from chat.routes.forms import message_form, refusal, refusal_status, typed_body
from chat.routes.members import members_changed
from chat.routes.rooms import navigation_lists
from chat.routes.sessions import USERNAME
from chat.uploads import InvalidAttachment


async def _conversation(request: Request, *, create: bool = False) -> tuple[User, Room | None]:
    """The person in the path and your conversation with them (None when there is
    none yet and `create` is false): 404 for no such person, 400 for yourself."""
    username = request.path_params["username"]
    async with request.app.state.db() as db:
        other = await User.by_username(db, username) if USERNAME.fullmatch(username) else None
        if other is None:
            raise HTTPException(404, f"There is no user called “{username}”.")
        try:
            room = await Room.direct_between(db, request.state.user, other, create=create)
        except NotDirectable as exc:
            raise HTTPException(400, str(exc)) from None
    return other, room


async def _draft_page(
    request: Request, other: User, *, error: str = "", body: str = "", status: int = 200
) -> Response:
    async with request.app.state.db() as db:
        navigation = await db.run_sync(navigation_lists, request.state.user)
    return request.app.state.templates.TemplateResponse(
        request,
        "direct/new.html",
        {
            **navigation,
            "other": other,
            "room_title": other.username,
            "draft_url": request.url_for("post_direct", username=other.username),
            "error": error,
            "body": body,
        },
        status_code=status,
    )


@login_required
async def find(request: Request) -> Response:
    """The "new direct message" form: `?username=NAME` → that conversation's page."""
    username = request.query_params.get("username", "").strip().lstrip("@")
    if not USERNAME.fullmatch(username):
        raise HTTPException(404, f"There is no user called “{username}”.")
    return RedirectResponse(request.url_for("direct", username=username), status_code=303)


@login_required
async def page(request: Request) -> Response:
    """Your conversation with someone if it exists; else an empty one to write the
    first message in (nothing is stored until it is sent)."""
    other, room = await _conversation(request)
    if room is not None:
        return RedirectResponse(request.url_for("room", room_id=room.id), status_code=303)
    return await _draft_page(request, other)


@login_required
async def post_message(request: Request) -> Response:
    """Post to your conversation with someone, making it on the first message."""
    messages = request.app.state.messages
    body = ""
    key = f"user:{request.state.user.id}"
    try:
        async with message_form(request) as form:
            body = form.fields.get("body", "")
            # Before a room is made for nothing.
            clean_body(body, messages.max_chars, may_be_empty=bool(form.uploads))
            await rate_limits.hit(request, "post", key)
            _, room = await _conversation(request)
            if room is None:
                await rate_limits.hit(request, "direct", key)
                other, room = await _conversation(request, create=True)
                # Both room lists show the new conversation at once.
                for person in (request.state.user, other):
                    await members_changed(request, room.id, person.id)
            message = await messages.post(room.id, request.state.user, body, uploads=form.uploads)
    except (InvalidMessage, InvalidAttachment, RateLimited) as exc:
        other, room = await _conversation(request)
        status = refusal_status(exc)
        if room is None:
            body = typed_body(exc, body)
            response = await _draft_page(
                request, other, error=refusal(exc), body=body, status=status
            )
            if isinstance(exc, RateLimited):
                response.headers.update(exc.headers or {})
            return response
        if isinstance(exc, RateLimited):
            raise
        raise HTTPException(status, refusal(exc)) from None
    return RedirectResponse(
        f"{request.url_for('room', room_id=room.id)}#message-{message.seq}", status_code=303
    )
