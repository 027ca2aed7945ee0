"""Structured logs (JSON lines via structlog) with a request id on every line.

What is logged: method, path (never the query string, which can hold search
terms), status, duration, request, user and room ids. Never bodies, passwords,
cookies or tokens.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("chat")

# A path that is itself a secret (an incoming webhook's URL, an invite or a password-reset
# link) is logged without it.
SECRET_PATHS = ("/hooks/", "/invites/", "/reset/")


def loggable_path(path: str) -> str:
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "{secret}"
    return path


# Request ids name a request in the logs; they are not secrets, so they come from a
# generator seeded once per process (again in a forked child), not from os.urandom, a
# system call per request.
_request_ids = random.Random()
os.register_at_fork(after_in_child=_request_ids.seed)


class _Levels:
    """Whether a request's line is logged at all: at WARNING and above it is not, and
    the structlog call that would drop it still makes a logger (it is looked up per
    call, below)."""

    info = True


def configure_logging(level: str) -> None:
    _Levels.info = logging.getLevelName(level) <= logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # Looked up per call, not cached, so a replaced sys.stderr (tests, daemons) is followed.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


# The scope key under which an event stream's response hands itself over, to be served
# once the app has returned (chat.streams).
OPEN_STREAM = "chat.open_stream"


class RequestLogMiddleware:
    """Gives each request an id (echoed as X-Request-ID) and logs one line when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = f"{_request_ids.getrandbits(64):016x}"
        structlog.contextvars.clear_contextvars()
        # chat.auth.load_session binds the user's id once it knows it.
        structlog.contextvars.bind_contextvars(request_id=request_id, user_id=None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        def log_request() -> None:
            if _Levels.info:
                log.info(
                    "request",
                    method=scope["method"],
                    path=loggable_path(scope["path"]),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            handed_over = scope.get(OPEN_STREAM)
            if handed_over is None:
                log_request()
            else:
                # An event stream is served once the app has returned, outside this
                # middleware (chat.streams.HandoverStarlette): logged as it ends.
                handed_over.when_served = log_request
