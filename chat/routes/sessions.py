"""Sign up, log in, log out."""

from __future__ import annotations

import re
from datetime import timedelta

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat import rate_limits
from chat.auth import (
    end_session,
    hash_password,
    load_session,
    session_id,
    start_session,
    verify_password,
)
from chat.broker import user_channel
from chat.http_guards import client_address
from chat.message_path import end_session_signal
from chat.models import SignupPolicy, User, signup_policy
from chat.passwords import MAX_PASSWORD, password_problem
from chat.rate_limits import RateLimited
from chat.routes.forms import read_form
from chat.routes.invites import valid_invite

log = structlog.get_logger("chat.sessions")

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,31}")
MAX_USERNAME = 32
# A refused username is shown back as typed (as text), but never more of it than this.
MAX_ECHO = 256

FORMS = {
    "signup": {
        "title": "Create your account",
        "submit": "Sign up",
        "password_autocomplete": "new-password",
        "other": ("login", "Already have an account? Log in"),
    },
    "login": {
        "title": "Log in",
        "submit": "Log in",
        "password_autocomplete": "current-password",
        "other": ("signup", "New here? Create an account"),
    },
}


def _safe_next(value: str | None) -> str:
    """Only same-site paths: `//evil.example` or `/\\evil` would leave the site."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


async def current_signup_policy(request: Request) -> SignupPolicy:
    async with request.app.state.db() as db:
        return await signup_policy(db, request.app.state.settings.signup)


async def signup_allowed(request: Request, invite: str) -> tuple[bool, SignupPolicy]:
    """Whether sign-up is open to this request: always under `open`, with a working
    invite link under `invite`, never under `closed`. And the policy."""
    policy = await current_signup_policy(request)
    if policy == SignupPolicy.INVITE and invite:
        return await valid_invite(request, invite) is not None, policy
    return policy == SignupPolicy.OPEN, policy


async def _form(
    request: Request,
    purpose: str,
    *,
    error: str = "",
    username: str = "",
    status: int = 200,
    fields: dict[str, str] | None = None,
) -> Response:
    """The form; `next` and `invite` come from the submitted `fields`, else the query."""
    given = fields if fields is not None else request.query_params
    invite = given.get("invite", "")[:MAX_INVITE]
    allowed, policy = await signup_allowed(request, invite)
    closed = ""
    if purpose == "signup" and not allowed:
        closed = INVITE_GONE if invite else SIGNUP_CLOSED[policy]
    return request.app.state.templates.TemplateResponse(
        request,
        "sessions/form.html",
        {
            "purpose": purpose,
            "form": FORMS[purpose],
            "error": error,
            "username": username[:MAX_ECHO],
            "next": _safe_next(given.get("next")),
            "invite": invite if allowed else "",
            "signup_open": policy == SignupPolicy.OPEN,
            "signup_closed": closed,
        },
        status_code=403 if closed else status,
    )


async def _signed_in(request: Request, form: dict[str, str], user: User) -> Response:
    """Start the session and go where the login form was asked to lead (303)."""
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    await start_session(request, response, user)
    return response


async def signup_form(request: Request) -> Response:
    if await load_session(request):
        return RedirectResponse(request.url_for("index"), status_code=303)
    return await _form(request, "signup")


INVITE_GONE = "This invite link no longer works. Ask whoever sent it for a new one."
MAX_INVITE = 64
SIGNUP_CLOSED = {
    SignupPolicy.INVITE: "Sign-up is by invitation only: open the invite link you were given.",
    SignupPolicy.CLOSED: "Sign-up is closed. Ask an administrator of this chat for an account.",
}


async def signup(request: Request) -> Response:
    form = await read_form(request)
    if not (await signup_allowed(request, form.get("invite", "")[:MAX_INVITE]))[0]:
        return await _form(request, "signup", fields=form)
    username, password = form.get("username", "").strip(), form.get("password", "")
    if not USERNAME.fullmatch(username):
        return await _form(
            request,
            "signup",
            error="Usernames are 3 to 32 letters, digits, _ or -, starting with a letter or digit.",
            username=username,
            status=400,
            fields=form,
        )
    if problem := password_problem(password, username):
        return await _form(
            request, "signup", error=problem, username=username, status=400, fields=form
        )
    try:
        await rate_limits.hit(request, "signup", f"address:{client_address(request)}")
    except RateLimited as exc:
        return await _refused(request, "signup", exc, username, form)
    password_hash = await hash_password(password)
    reserved = timedelta(days=request.app.state.settings.username_reserved_days)
    async with request.app.state.db() as db:
        user = await User.create(db, username, password_hash)
        if user is None and await User.free_username(db, username, reserved):
            user = await User.create(db, username, password_hash)
    if user is None:
        return await _form(
            request,
            "signup",
            error="That username is taken.",
            username=username,
            status=400,
            fields=form,
        )
    log.info("user.signed_up", user_id=user.id)
    return await _signed_in(request, form, user)


async def login_form(request: Request) -> Response:
    if await load_session(request):
        return RedirectResponse(request.url_for("index"), status_code=303)
    return await _form(request, "login")


async def login(request: Request) -> Response:
    form = await read_form(request)
    username, password = form.get("username", "").strip(), form.get("password", "")
    # Failed logins are counted per account and per address; while either is used up,
    # even the right password is refused, so guessing learns nothing.
    keys = (
        ("login-account", f"account:{username[:MAX_USERNAME].lower()}"),
        ("login-address", f"address:{client_address(request)}"),
    )
    try:
        for limit, key in keys:
            await rate_limits.check(request, limit, key)
    except RateLimited as exc:
        return await _refused(request, "login", exc, username, form)
    user = None
    if username and len(password) <= MAX_PASSWORD:
        async with request.app.state.db() as db:
            user = await User.by_username(db, username)
    if not await verify_password(user.password_hash if user else None, password) or user is None:
        log.info("user.login_failed")
        for limit, key in keys:
            await rate_limits.hit(request, limit, key)
        return await _form(
            request,
            "login",
            error="Wrong username or password.",
            username=username,
            status=401,
            fields=form,
        )
    if not user.is_active:
        log.info("user.login_refused_deactivated", user_id=user.id)
        return await _form(
            request,
            "login",
            error="This account is deactivated. Ask an administrator of this chat.",
            username=username,
            status=403,
            fields=form,
        )
    log.info("user.logged_in", user_id=user.id)
    return await _signed_in(request, form, user)


async def _refused(
    request: Request, purpose: str, exc: RateLimited, username: str, form: dict[str, str]
) -> Response:
    response = await _form(
        request, purpose, error=exc.detail, username=username, status=429, fields=form
    )
    response.headers.update(exc.headers or {})
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(request.url_for("login"), status_code=303)
    auth_session = await load_session(request)
    if auth_session is not None:
        await end_session(request, response, auth_session)
        await request.app.state.broker.publish(
            user_channel(auth_session.user_id), end_session_signal(session_id(auth_session))
        )
        log.info("user.logged_out", user_id=auth_session.user_id)
    return response
