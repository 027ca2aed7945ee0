"""The one-time password-reset link an administrator gives out (/admin): whoever opens
it chooses the account's new password and is signed in; every other session of the
account ends. An expired, used or replaced link is a friendly 404."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.accounts import end_sessions
from chat.auth import hash_password, start_session
from chat.models import PasswordReset, User
from chat.passwords import password_problem
from chat.routes.forms import read_form

log = structlog.get_logger("chat.password_reset")

# Tokens are 43 characters (secrets.token_urlsafe(32)); longer ones are not looked up.
MAX_TOKEN = 64
GONE = (
    "This password-reset link has expired, was used already or was replaced by a newer one."
    " Ask an administrator for a new one."
)


async def _valid(request: Request) -> tuple[PasswordReset, User]:
    token = request.path_params["token"]
    found = None
    if len(token) <= MAX_TOKEN:
        async with request.app.state.db() as db:
            found = await PasswordReset.valid(db, token)
    if found is None:
        raise HTTPException(404, GONE)
    return found


def _form(request: Request, user: User, *, error: str = "", status: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(
        request,
        "sessions/reset.html",
        {"target": user, "error": error},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def form(request: Request) -> Response:
    _, user = await _valid(request)
    return _form(request, user)


async def reset(request: Request) -> Response:
    """Field `password`: the account's new password."""
    reset_link, user = await _valid(request)
    password = (await read_form(request)).get("password", "")
    if problem := password_problem(password, user.username):
        return _form(request, user, error=problem, status=400)
    password_hash = await hash_password(password)
    async with request.app.state.db() as db:
        if not await reset_link.use(db):
            raise HTTPException(404, GONE)
        await User.change_password_hash(db, user.id, password_hash)
    await end_sessions(request.app.state, user.id)
    log.info("user.password_reset", user_id=user.id)
    response = RedirectResponse(request.url_for("index"), status_code=303)
    await start_session(request, response, user)
    return response
