"""What every request and response passes through before the routes: trusted proxies,
allowed hosts, bounded bodies, the security and caching headers, and a 500 that still
carries those headers.

Starlette's own error handling sits outside every middleware of an app, so an
exception it turned into a 500 would leave without the headers added here; the
`SecurityHeadersMiddleware` below answers it itself instead.
"""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from chat.api.errors import error_response, is_machine_path
from chat.logging import loggable_path
from chat.multipart import is_multipart
from chat.settings import Settings

log = structlog.get_logger("chat.http")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Pages and fragments are private and differ by viewer: no cache may keep them, and
# the back button after logging out shows nothing of them. Static files keep theirs.
PRIVATE_CACHING = [(b"cache-control", b"no-store"), (b"vary", b"Cookie")]
STRICT_TRANSPORT = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
STATIC_PREFIX = "/static/"
INTERNAL_ERROR = "Something went wrong on our side. Try again in a moment."


class SecurityHeadersMiddleware:
    """Adds the security headers (and with HTTPS, HSTS) to every response, and
    `Cache-Control: no-store` to every response but static files that has none of its
    own. An exception that escapes the app is answered here as a 500 with them."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        self.headers = [*SECURITY_HEADERS, *([STRICT_TRANSPORT] if https else [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        static = scope["path"].startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # A response may set its own, stricter policy (attachments do).
                present = {name.lower() for name, _ in message["headers"]}
                defaults = [header for header in self.headers if header[0] not in present]
                if not static and b"cache-control" not in present:
                    defaults += PRIVATE_CACHING
                message["headers"] = [*message["headers"], *defaults]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("request.failed", path=loggable_path(scope["path"]))
            if started:  # the client sees the connection end instead
                raise
            response = PlainTextResponse(INTERNAL_ERROR, status_code=500)
            await response(scope, receive, send_with_headers)


class AllowedHostsMiddleware:
    """Starlette's TrustedHostMiddleware, remembering the Host headers it let through:
    a browser sends the same one with every request, and checking it (parsing it,
    matching each pattern) cost more than the rest of this module's work on a page
    served from the page cache. A Host header not seen before goes through Starlette's
    own check, which decides; only the exact values it accepted are remembered, at most
    `KEPT` of them. With CHAT_FAST_PATHS=0 Starlette's middleware checks every request."""

    KEPT = 256

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self._accepted: set[bytes] = set()
        self._check = TrustedHostMiddleware(
            self._accept, allowed_hosts=allowed_hosts, www_redirect=False
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _host(scope) in self._accepted:
            return await self.app(scope, receive, send)
        await self._check(scope, receive, send)

    async def _accept(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = _host(scope)
        if host is not None and len(self._accepted) < self.KEPT:
            self._accepted.add(host)
        await self.app(scope, receive, send)


def _host(scope: Scope) -> bytes | None:
    """The first Host header, the one Starlette's `Headers.get` finds."""
    for name, value in scope.get("headers", ()):  # none in a lifespan scope
        if name == b"host":
            return value  # type: ignore[no-any-return]
    return None


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "The request is too large.")


class BodyLimitMiddleware:
    """Refuses a body past its cap with 413 while it streams in, whoever reads it (the
    CSRF check, a form, a handler): any body but multipart is capped at
    `max_form_bytes`; multipart at what the largest message may carry (its files are
    also capped one by one as they arrive, chat.routes.forms). A Content-Length past
    the cap is refused before anything is read."""

    def __init__(self, app: ASGIApp, max_form_bytes: int, max_multipart_bytes: int) -> None:
        self.app = app
        self.max_form_bytes = max_form_bytes
        self.max_multipart_bytes = max_multipart_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        cap = self.max_form_bytes
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-type" and is_multipart(value.decode("latin-1")):
                cap = self.max_multipart_bytes
            elif name == b"content-length":
                declared = value
        if declared is not None and (not declared.isdigit() or int(declared[:20]) > cap):
            return await _refuse_large(scope, receive, send)
        size = 0

        async def capped_receive() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > cap:
                raise BodyTooLarge()
            return message

        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except BodyTooLarge:
            # Read outside the routes (the CSRF check): no error page renders it there.
            if started:
                raise
            await _refuse_large(scope, receive, send)


async def _refuse_large(scope: Scope, receive: Receive, send: Send) -> None:
    response: Response = PlainTextResponse("The request is too large.", status_code=413)
    if is_machine_path(scope["path"]):
        response = error_response(BodyTooLarge())
    response.headers["connection"] = "close"  # the rest of the body is never read
    await response(scope, receive, send)


def guard_middleware(settings: Settings) -> list[Middleware]:
    """The middleware of this module, outermost first, for chat.app, which puts the
    CSRF check right after them."""
    guards = []
    if settings.trusted_proxies:
        guards.append(Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies))
    guards.append(Middleware(SecurityHeadersMiddleware, https=settings.https))
    if "*" not in settings.allowed_hosts:
        allowed = list(settings.allowed_hosts)
        if settings.fast_paths:
            guards.append(Middleware(AllowedHostsMiddleware, allowed_hosts=allowed))
        else:
            guards.append(
                Middleware(TrustedHostMiddleware, allowed_hosts=allowed, www_redirect=False)
            )
    multipart_cap = (
        settings.max_files_per_message * settings.max_upload_bytes + 2 * settings.max_form_bytes
    )
    guards.append(
        Middleware(
            BodyLimitMiddleware,
            max_form_bytes=settings.max_form_bytes,
            max_multipart_bytes=multipart_cap,
        )
    )
    return guards


def client_address(request: Request) -> str:
    """The client's IP address: the socket's peer, or, for a request through a proxy
    named in CHAT_TRUSTED_PROXIES, the address that proxy forwarded (the proxy-headers
    middleware above has put it in the scope)."""
    return request.client.host if request.client else ""
