"""Passwords, signed-in sessions and cross-site request forgery protection."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat.api.errors import is_machine_path
from chat.hot_statements import run_prepared
from chat.htmx import is_htmx
from chat.http_guards import client_address
from chat.models import MAX_ID, AuthSession, User, utcnow
from chat.multipart import PART_END, MalformedForm, MultipartReader, Part, is_multipart

SESSION_COOKIE = "chat_session"
CSRF_COOKIE = "chat_csrf"
# With CHAT_HTTPS the cookies are Secure and carry this prefix, which browsers only
# accept from HTTPS, for the whole site, without a Domain: no subdomain can set them.
SECURE_PREFIX = "__Host-"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A session's last use is written at most this often (each write is a database write).
TOUCH_SECONDS = 300
MAX_USER_AGENT = 200


def cookie_name(name: str, https: bool) -> str:
    return SECURE_PREFIX + name if https else name


def _set_cookie(
    request_scheme: str, https: bool, response: Response, name: str, value: str, **extra: Any
) -> None:
    response.set_cookie(
        cookie_name(name, https),
        value,
        httponly=True,
        samesite="lax",
        secure=https or request_scheme == "https",
        **extra,
    )


_hasher = PasswordHasher()
# Verified against when the username is unknown, so both failures take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def _serializer(secret_key: str, purpose: str) -> URLSafeSerializer:
    # One salt per purpose: a CSRF token can never be replayed as a session cookie.
    return URLSafeSerializer(secret_key, salt=f"chat.{purpose}")


# Signing is deterministic (no timestamp), so a browser's cookie and CSRF token, sent
# with each of its requests, are checked and made once, not with an HMAC each time.
# Remembering a signature proves nothing about the session: that is looked up every time.
SIGNATURES_REMEMBERED = 4096


@functools.lru_cache(maxsize=SIGNATURES_REMEMBERED)
def _signed(secret_key: str, purpose: str, value: str) -> str:
    return _serializer(secret_key, purpose).dumps(value)


@functools.lru_cache(maxsize=SIGNATURES_REMEMBERED)
def _unsigned(secret_key: str, purpose: str, signed: str) -> object:
    """The value `signed` carries; None when its signature is not ours."""
    try:
        return _serializer(secret_key, purpose).loads(signed)
    except BadSignature:
        return None


@functools.lru_cache(maxsize=SIGNATURES_REMEMBERED)
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_id(auth_session: AuthSession) -> str:
    """A short, non-secret name for a session, used to end its open streams."""
    return auth_session.public_id


async def start_session(request: Request, response: Response, user: User) -> None:
    """Sign `user` in: a new session (expired ones of anyone's are cleaned up now) and
    a new CSRF secret, so a token seen before signing in is worth nothing after it."""
    settings = request.app.state.settings
    token = secrets.token_urlsafe(32)
    agent = "".join(c for c in request.headers.get("user-agent", "") if c.isprintable())
    async with request.app.state.db() as db:
        await AuthSession.delete_expired(db, *session_lifetimes(settings))
        db.add(
            AuthSession(
                token_hash=_token_hash(token),
                user_id=user.id,
                user_agent=agent[:MAX_USER_AGENT],
                address=client_address(request),
            )
        )
        await db.commit()
    scheme = request.url.scheme
    signed = _signed(settings.secret_key, "session", token)
    _set_cookie(
        scheme, settings.https, response, SESSION_COOKIE, signed, max_age=_seconds(settings)
    )
    _set_cookie(scheme, settings.https, response, CSRF_COOKIE, secrets.token_urlsafe(32))


def session_lifetimes(settings: Any) -> tuple[timedelta, timedelta]:
    """How long a session lasts at most, and unused."""
    return _lifetimes(settings.session_days, settings.session_idle_days)


@functools.lru_cache(maxsize=16)
def _lifetimes(days: float, idle_days: float) -> tuple[timedelta, timedelta]:
    return timedelta(days=days), timedelta(days=idle_days)


def _seconds(settings: Any) -> int:
    return int(settings.session_days * 86400)


async def end_session(request: Request, response: Response, auth_session: AuthSession) -> None:
    async with request.app.state.db() as db:
        await db.execute(
            delete(AuthSession).where(AuthSession.token_hash == auth_session.token_hash)
        )
        await db.commit()
    settings = request.app.state.settings
    response.delete_cookie(
        cookie_name(SESSION_COOKIE, settings.https),
        httponly=True,
        samesite="lax",
        secure=settings.https,
    )


async def _still_valid(request: Request, auth_session: AuthSession) -> bool:
    """Whether the session has not expired (an expired one is deleted); its last use is
    written down when the one on record is older than TOUCH_SECONDS."""
    lifetime, idle = session_lifetimes(request.app.state.settings)
    now = utcnow()
    if auth_session.expired(now, lifetime, idle):
        async with request.app.state.db() as db:
            await AuthSession.delete_expired(db, lifetime, idle)
        return False
    if (now - auth_session.last_seen_at).total_seconds() > TOUCH_SECONDS:
        async with request.app.state.db() as db:
            await AuthSession.touch(db, auth_session.token_hash, now)
        auth_session.last_seen_at = now
    return True


async def load_session(request: Request) -> AuthSession | None:
    """The request's signed-in session (with its user), cached on request.state.

    A request about a room (a `room_id` in its path) asks for the room next
    (chat.routes.rooms.find_room): the same statement reads it, in the same hop to the
    database, for find_room to take from request.state."""
    # request.state's own dictionary: asking request.state for a name it lacks raises
    # (and formats) an AttributeError, on every signed-in request.
    state = request.scope.setdefault("state", {})
    if "auth_session" in state:
        return state["auth_session"]  # type: ignore[no-any-return]
    auth_session, room_asked, visible_room = None, None, None
    settings = request.app.state.settings
    cookie = request_cookies(request.scope).get(cookie_name(SESSION_COOKIE, settings.https))
    if cookie:
        token = _unsigned(settings.secret_key, "session", cookie)
        if isinstance(token, str):
            room_id = request.path_params.get("room_id")
            if room_id is not None and room_id <= MAX_ID:
                room_asked = room_id

            token_hash = _token_hash(token)
            # Kept while the database is unchanged (chat.kept_reads): signing out and
            # deactivating are commits, seen by the next request; expiry is checked
            # below on every one.
            found = AuthSession.found(
                await request.app.state.kept_reads.read(
                    request.scope,
                    ("session", token_hash, room_asked),
                    lambda: run_prepared(
                        request.app.state.db,
                        lambda statements: AuthSession.find_columns(
                            statements, token_hash, room_asked
                        ),
                        autocommit=True,
                    ),
                )
            )
            # A deactivated account's sessions were ended; one that raced it is refused.
            if (
                found is not None
                and found[0].user.deactivated_at is None
                and await _still_valid(request, found[0])
            ):
                auth_session, visible_room = found
    state["auth_session"] = auth_session
    state["user"] = auth_session.user if auth_session else None
    state["room_asked"] = room_asked if auth_session else None
    state["visible_room"] = visible_room
    # On every log line of the request, including an event stream's, which does not
    # keep these rows (chat.streams.HandoverStarlette).
    structlog.contextvars.bind_contextvars(user_id=auth_session.user_id if auth_session else None)
    return auth_session


# Where a request's cookies are kept once parsed, in its scope.
COOKIES_KEY = "chat.cookies"


def request_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies as Starlette's `Request.cookies` parses them, parsed once
    per request (the CSRF check and the session lookup each read one) and kept in its
    scope."""
    cookies: dict[str, str] | None = scope.get(COOKIES_KEY)
    if cookies is None:
        cookies = {}
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookies.update(cookie_parser(value.decode("latin-1")))
        scope[COOKIES_KEY] = cookies
    return cookies


Handler = Callable[[Request], Awaitable[Response]]


SIGNED_OUT = "You were signed out. Log in again to go on."


def login_required(handler: Handler) -> Handler:
    """Anonymous requests go to the login page (303); the user is on request.state.user.
    An htmx request gets 401 instead: following the redirect would swap a whole login
    page into the part of the page that asked (static/app.js says "You were signed out"
    and keeps what was typed)."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        if await load_session(request) is None:
            if is_htmx(request):
                raise HTTPException(401, SIGNED_OUT)
            return RedirectResponse(request.url_for("login"), status_code=303)
        return await handler(request)

    return wrapper


class CSRFMiddleware:
    """Refuses unsafe requests that are cross-origin or lack a valid CSRF token.

    The token is the signed value of a random HttpOnly cookie (signed double
    submit), so it works before login too (login CSRF) and needs no server state.
    It travels in the `X-CSRF-Token` header (htmx) or the `csrf_token` form field.
    """

    def __init__(
        self, app: ASGIApp, secret_key: str, max_body_bytes: int, https: bool = False
    ) -> None:
        self.app = app
        self.secret_key = secret_key
        self.max_body_bytes = max_body_bytes
        self.https = https
        self.cookie = cookie_name(CSRF_COOKIE, https)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The API and incoming webhooks take no cookies (chat/api/auth.py refuses them):
        # with nothing ambient to forge a request with, they need no token.
        if scope["type"] != "http" or is_machine_path(scope["path"]):
            return await self.app(scope, receive, send)
        secret = request_cookies(scope).get(self.cookie, "")
        fresh_secret = None
        if len(secret) != 43:
            fresh_secret = secret = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = _signed(self.secret_key, "csrf", secret)

        if scope["method"] not in SAFE_METHODS:
            request = Request(scope)
            if not _is_same_origin(request):
                return await _refuse(scope, receive, send, 403, "Cross-origin request refused.")
            token = request.headers.get("x-csrf-token")
            content_type = request.headers.get("content-type", "")
            if token is None and is_multipart(content_type):
                token, read, more_body = await _multipart_token(
                    receive, content_type, self.max_body_bytes
                )
                receive = _replay(read, more_body=more_body, then=receive)
            elif token is None:
                body = await _read_body(receive, self.max_body_bytes)
                if body is None:
                    return await _refuse(scope, receive, send, 413, "Request body too large.")
                token = _form_token(body)
                receive = _replay(body, then=receive)
            if fresh_secret is not None or not self._valid(token, secret):
                return await _refuse(
                    scope, receive, send, 403, "Missing or invalid CSRF token. Reload the page."
                )

        if fresh_secret is None:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                holder = Response()
                _set_cookie(
                    scope.get("scheme", "http"), self.https, holder, CSRF_COOKIE, fresh_secret
                )
                cookie = [h for h in holder.raw_headers if h[0] == b"set-cookie"]
                message["headers"] = [*message["headers"], *cookie]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _valid(self, token: str | None, secret: str) -> bool:
        if not token:
            return False
        signed_secret = _unsigned(self.secret_key, "csrf", token)
        return isinstance(signed_secret, str) and hmac.compare_digest(signed_secret, secret)


def _is_same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host")
    if host is None:  # HTTP/1.0: the server's own address, as Starlette's URL has it
        return origin == f"{request.url.scheme}://{request.url.netloc}"
    # Straight from the Host header: building the whole request URL for this is a
    # noticeable share of a post's time on the event loop.
    return origin == f"{request.scope.get('scheme', 'http')}://{host}"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, *, more_body: bool = False, then: Receive | None = None) -> Receive:
    """A receive() that hands over the already-read body, then defers to `then`
    (the client's real channel: the rest of the body, if `more_body`, then a
    disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more_body}
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def _form_token(body: bytes) -> str | None:
    values = parse_qs(body.decode("latin-1"), max_num_fields=1000).get("csrf_token")
    return values[0] if values else None


async def _multipart_token(
    receive: Receive, content_type: str, limit: int
) -> tuple[str | None, bytes, bool]:
    """The `csrf_token` field of a multipart body, the bytes read to find it, and
    whether more of the body follows. Reading stops at the end of that field (the
    app's forms put it first) or after `limit` bytes, so an upload behind it is
    neither held in memory nor read before the token is checked."""
    chunks: list[bytes] = []
    size, more_body = 0, True
    in_token, value = False, bytearray()
    try:
        reader = MultipartReader(content_type)
        while more_body and size <= limit:
            message = await receive()
            chunk = message.get("body", b"")
            more_body = message["type"] == "http.request" and message.get("more_body", False)
            chunks.append(chunk)
            size += len(chunk)
            for event in reader.feed(chunk):
                if isinstance(event, Part):
                    in_token = event.name == "csrf_token" and event.filename is None
                elif event is PART_END and in_token:
                    return value.decode("latin-1"), b"".join(chunks), more_body
                elif isinstance(event, bytes) and in_token:
                    value += event
    except MalformedForm:
        pass
    return None, b"".join(chunks), more_body


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    await PlainTextResponse(text, status_code=status)(scope, receive, send)
