"""/admin: the instance's administrators find accounts, deactivate and reactivate them,
give out password-reset links and choose the sign-up policy. Everyone else (signed
out too) gets 404, as for a page that does not exist. Every action is written to the
audit log (chat.models.AdminEvent) and logged as an `admin.*` event."""

from __future__ import annotations

import functools
from datetime import timedelta

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chat.accounts import set_deactivated
from chat.auth import Handler, load_session
from chat.models import MAX_ID, AdminEvent, InstanceSetting, PasswordReset, SignupPolicy, User
from chat.models.admin import signup_policy
from chat.routes.forms import read_form
from chat.routes.rooms import int_param

log = structlog.get_logger("chat.admin")

USERS_SHOWN = 50
EVENTS_SHOWN = 50
MAX_QUERY = 32
# What the page says after an action it redirected from (?done=…).
DONE = {
    "deactivated": "The account is deactivated: its sessions have ended and it cannot sign in.",
    "reactivated": "The account is active again; its owner can sign in.",
    "signup": "The sign-up policy is changed.",
}
POLICY_TEXT = {
    SignupPolicy.OPEN: "Open: anyone can sign up",
    SignupPolicy.INVITE: "Invite only: sign-up needs an invite link to a room",
    SignupPolicy.CLOSED: "Closed: only administrators make accounts (chat create-user)",
}


def admin_required(handler: Handler) -> Handler:
    """404 for anyone who is not a signed-in administrator: /admin is not there for them."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        auth_session = await load_session(request)
        if auth_session is None or not auth_session.user.is_admin:
            raise HTTPException(404, "There is no such page.")
        return await handler(request)

    return wrapper


async def audit(request: Request, action: str, target: str, detail: str = "", **fields) -> None:
    """Write the action to the audit log and the log (`admin.<action>`, with the
    administrator and the target)."""
    admin: User = request.state.user
    async with request.app.state.db() as db:
        await AdminEvent.record(db, admin, action, target, detail)
    log.info(f"admin.{action}", admin_id=admin.id, target=target, **fields)


async def _page(request: Request, *, status: int = 200, context: dict | None = None) -> Response:
    query = request.query_params.get("q", "").strip()[:MAX_QUERY]
    before = int_param(request.query_params.get("before"), "before")
    settings = request.app.state.settings
    async with request.app.state.db() as db:
        users = await User.search(db, query, USERS_SHOWN + 1)
        events = await AdminEvent.newest(db, EVENTS_SHOWN + 1, before)
        policy = await signup_policy(db, settings.signup)
    return request.app.state.templates.TemplateResponse(
        request,
        "admin/page.html",
        {
            "done": DONE.get(request.query_params.get("done", ""), ""),
            "query": query,
            "users": users[:USERS_SHOWN],
            "more_users": len(users) > USERS_SHOWN,
            "events": events[:EVENTS_SHOWN],
            "older_events": events[EVENTS_SHOWN - 1].id if len(events) > EVENTS_SHOWN else None,
            "policy": policy,
            "policy_forced": bool(settings.signup),
            "policies": POLICY_TEXT,
            **(context or {}),
        },
        status_code=status,
    )


@admin_required
async def page(request: Request) -> Response:
    return await _page(request)


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(f"{request.url_for('admin')}?done={done}", status_code=303)


async def _target_user(request: Request) -> User:
    user_id = request.path_params["user_id"]
    user = None
    if user_id <= MAX_ID:
        async with request.app.state.db() as db:
            user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(404, "There is no such account.")
    return user


@admin_required
async def deactivate(request: Request) -> Response:
    user = await _target_user(request)
    if user.id == request.state.user.id:
        raise HTTPException(400, "You cannot deactivate your own account here.")
    if user.is_active:
        await set_deactivated(request.app.state, user, True)
        await audit(request, "user_deactivated", f"user {user.username}", user_id=user.id)
    return _back(request, "deactivated")


@admin_required
async def reactivate(request: Request) -> Response:
    user = await _target_user(request)
    if user.deleted_at is not None:
        raise HTTPException(400, "Its owner deleted this account: it cannot be reactivated.")
    if not user.is_active:
        await set_deactivated(request.app.state, user, False)
        await audit(request, "user_reactivated", f"user {user.username}", user_id=user.id)
    return _back(request, "reactivated")


@admin_required
async def reset_password(request: Request) -> Response:
    """A one-time link for the account's owner to choose a new password: shown once, on
    the page this answers, for the administrator to pass on."""
    user = await _target_user(request)
    if not user.is_active:
        raise HTTPException(400, "Reactivate the account before resetting its password.")
    hours = request.app.state.settings.password_reset_hours
    async with request.app.state.db() as db:
        token = await PasswordReset.issue(db, user, timedelta(hours=hours))
    await audit(request, "password_reset_link", f"user {user.username}", user_id=user.id)
    link = request.url_for("password_reset", token=token)
    return request.app.state.templates.TemplateResponse(
        request,
        "admin/reset_link.html",
        {"target": user, "link": link, "hours": hours},
        headers={"Cache-Control": "no-store"},
    )


@admin_required
async def set_signup_policy(request: Request) -> Response:
    """Field `policy`: open, invite or closed. 409 while CHAT_SIGNUP fixes it."""
    choice = (await read_form(request)).get("policy", "")
    if choice not in SignupPolicy.__members__.values():
        raise HTTPException(400, "policy must be open, invite or closed.")
    if request.app.state.settings.signup:
        raise HTTPException(409, "CHAT_SIGNUP sets the sign-up policy; change it there.")
    async with request.app.state.db() as db:
        before = await signup_policy(db, "")
        await InstanceSetting.put(db, "signup", choice)
    if before != choice:
        await audit(request, "signup_policy", "sign-up policy", f"{before} → {choice}")
    return _back(request, "signup")
