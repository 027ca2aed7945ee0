"""Your account page: change your password, see where you are signed in, sign out
other sessions. Each section is a partial of its own (templates/account/_*.html),
included by account/page.html in order."""

from __future__ import annotations

import re
import unicodedata
import zoneinfo

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from chat import rate_limits
from chat.accounts import delete_account, end_sessions
from chat.auth import SESSION_COOKIE, cookie_name, hash_password, login_required, verify_password
from chat.avatars import make_avatar
from chat.models import AuthSession, Message, User
from chat.passwords import MAX_PASSWORD, password_problem
from chat.rate_limits import RateLimited
from chat.room_names import FORBIDDEN_CATEGORIES
from chat.routes.forms import message_form, read_form
from chat.uploads import InvalidAttachment

log = structlog.get_logger("chat.account")

# What the page says after a change it redirected from (?done=…).
DONE = {
    "profile": "Your profile is saved.",
    "avatar": "Your picture is saved.",
    "avatar_removed": "Your picture is removed: your initials show instead.",
    "password": "Your password is changed. Every other session of your account is signed out.",
    "session": "That session is signed out.",
    "others": "Every other session of your account is signed out.",
}
PUBLIC_ID = re.compile(r"[0-9a-f]{16}")


async def _page(
    request: Request,
    *,
    refusal: str = "",
    delete_refusal: str = "",
    profile_refusal: str = "",
    avatar_refusal: str = "",
    status: int = 200,
    headers: dict | None = None,
) -> Response:
    user = request.state.user
    async with request.app.state.db() as db:
        sessions = await AuthSession.of_user(db, user.id)
    current = request.state.auth_session.token_hash
    return request.app.state.templates.TemplateResponse(
        request,
        "account/page.html",
        {
            "done": DONE.get(request.query_params.get("done", ""), ""),
            "refusal": refusal,
            "delete_refusal": delete_refusal,
            "profile_refusal": profile_refusal,
            "avatar_refusal": avatar_refusal,
            "time_zones": TIME_ZONES,
            "sessions": [
                {
                    "session": each,
                    "device": device_name(each.user_agent),
                    "current": each.token_hash == current,
                }
                for each in sessions
            ],
        },
        status_code=status,
        headers=headers,
    )


@login_required
async def page(request: Request) -> Response:
    return await _page(request)


@login_required
async def change_password(request: Request) -> Response:
    """Fields `current_password`, `new_password`. Every other session of the account
    ends at once (and their streams); this one goes on."""
    form = await read_form(request)
    current, new = form.get("current_password", ""), form.get("new_password", "")
    user: User = request.state.user
    if refused := await _password_refused(request, current, "Your current password is wrong."):
        detail, status, headers = refused
        return await _page(request, refusal=detail, status=status, headers=headers)
    if problem := password_problem(new, user.username):
        return await _page(request, refusal=problem, status=400)
    if new == current:
        return await _page(request, refusal="The new password is your current one.", status=400)
    async with request.app.state.db() as db:
        await User.change_password_hash(db, user.id, await hash_password(new))
    await _end_sessions(request, None)
    log.info("user.password_changed", user_id=user.id)
    return _back(request, "password")


@login_required
async def end_session(request: Request) -> Response:
    """Sign out one of your other sessions (this one signs out with Log out)."""
    public_id = request.path_params["session"]
    if not PUBLIC_ID.fullmatch(public_id) or not await _end_sessions(request, {public_id}):
        raise HTTPException(404, "There is no such session of yours, or it has ended.")
    return _back(request, "session")


@login_required
async def end_other_sessions(request: Request) -> Response:
    await _end_sessions(request, None)
    return _back(request, "others")


async def _end_sessions(request: Request, public_ids: set[str] | None) -> list[str]:
    """End the viewer's sessions named by `public_ids` (all when None) but this one."""
    return await end_sessions(
        request.app.state,
        request.state.user.id,
        public_ids,
        keep=request.state.auth_session.token_hash,
    )


MAX_DISPLAY_NAME = 64
# IANA zones, for the profile's choice (read once: the list is the system's).
TIME_ZONES = tuple(sorted(zoneinfo.available_timezones()))


def clean_display_name(raw: str) -> str:
    """Trimmed and NFC; raises ValueError for control or invisible characters."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if len(name) > MAX_DISPLAY_NAME:
        raise ValueError(f"A display name is at most {MAX_DISPLAY_NAME} characters.")
    if any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in name):
        raise ValueError("A display name cannot contain control or invisible characters.")
    return name


@login_required
async def profile(request: Request) -> Response:
    """Fields `display_name` (empty: the username) and `time_zone` (an IANA zone, or
    empty for the browser's). A new display name shows beside every message of theirs."""
    form = await read_form(request)
    time_zone = form.get("time_zone", "")
    try:
        display_name = clean_display_name(form.get("display_name", ""))
        if time_zone and time_zone not in TIME_ZONES:
            raise ValueError("Choose a time zone from the list.")
    except ValueError as exc:
        return await _page(request, profile_refusal=str(exc), status=400)
    user: User = request.state.user
    renamed = display_name != user.display_name
    async with request.app.state.db() as db:
        await user.set_profile(db, display_name, time_zone)
        if renamed:
            await Message.author_changed(db, user.id)
    log.info("user.profile_changed", user_id=user.id)
    return _back(request, "profile")


@login_required
async def set_avatar(request: Request) -> Response:
    """A multipart form: `csrf_token` first, then the image as `files`. It is re-encoded
    to one small square PNG (chat/avatars.py) and shown beside every message of theirs."""
    state, user = request.app.state, request.state.user
    try:
        async with message_form(request) as form:
            if len(form.uploads) != 1:
                raise InvalidAttachment("Choose one image file.")
            upload = form.uploads[0]
            target = upload.path.with_name(upload.path.name + ".png")
            await anyio.to_thread.run_sync(
                make_avatar, upload, target, state.settings.max_image_pixels
            )
            key = await state.messages.storage.put(target)
    except InvalidAttachment as exc:
        return await _page(request, avatar_refusal=str(exc), status=exc.status)
    await _replace_avatar(request, user, key)
    return _back(request, "avatar")


@login_required
async def remove_avatar(request: Request) -> Response:
    await _replace_avatar(request, request.state.user, None)
    return _back(request, "avatar_removed")


async def _replace_avatar(request: Request, user: User, key: str | None) -> None:
    old = user.avatar_key
    async with request.app.state.db() as db:
        await user.set_avatar(db, key)
        await Message.author_changed(db, user.id)
    if old:
        await request.app.state.messages.storage.delete([old])
    log.info("user.avatar_changed", user_id=user.id)


@login_required
async def avatar(request: Request) -> Response:
    """A profile picture, for anyone signed in: its key is random and names one image
    for ever, so browsers may keep it."""
    key = request.path_params["key"]
    async with request.app.state.db() as db:
        exists = len(key) <= 64 and await User.avatar_exists(db, key)
    if not exists:
        raise HTTPException(404, "There is no such picture.")
    return StreamingResponse(
        request.app.state.messages.storage.read(key),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


@login_required
async def delete(request: Request) -> Response:
    """Fields `password` and `messages` (`keep` their text, or `remove` it): the account
    is deleted at once (chat.accounts.delete_account); 303 to the login page."""
    form = await read_form(request)
    password, messages = form.get("password", ""), form.get("messages", "keep")
    if messages not in {"keep", "remove"}:
        raise HTTPException(400, "messages must be keep or remove.")
    user: User = request.state.user
    if refused := await _password_refused(request, password, "That is not your password."):
        detail, status, headers = refused
        return await _page(request, delete_refusal=detail, status=status, headers=headers)
    await delete_account(request.app.state, user, remove_text=messages == "remove")
    response = RedirectResponse(request.url_for("login"), status_code=303)
    settings = request.app.state.settings
    response.delete_cookie(
        cookie_name(SESSION_COOKIE, settings.https), httponly=True, samesite="lax"
    )
    return response


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(f"{request.url_for('account')}?done={done}", status_code=303)


# (what the user agent contains, what to call it), the first match wins.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str) -> str:
    """ "Firefox on Linux" from a user agent string; the string itself when neither
    is recognised, and "Unknown browser" when there was none."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or user_agent[:60] or "Unknown browser"


async def _password_refused(
    request: Request, password: str, wrong: str
) -> tuple[str, int, dict[str, str] | None] | None:
    """Why the signed-in person's own password is refused (text, status, headers), or
    None when it is right. Guessing it is guessing a login: the same limit counts it."""
    user: User = request.state.user
    key = f"account:{user.username.lower()}"
    try:
        await rate_limits.check(request, "login-account", key)
    except RateLimited as exc:
        return exc.detail, 429, exc.headers
    if len(password) > MAX_PASSWORD or not await verify_password(user.password_hash, password):
        await rate_limits.hit(request, "login-account", key)
        return wrong, 400, None
    return None
