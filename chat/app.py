"""The application factory: middleware, lifespan state (engine, broker), routes, templates."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from jinja2 import BytecodeCache, pass_context
from jinja2.bccache import Bucket
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from chat.api.errors import error_response, is_machine_path
from chat.auth import CSRFMiddleware
from chat.avatars import colour, initials
from chat.broker import BrokerUnavailable, create_broker
from chat.collector import Collector
from chat.db import create_engine, create_sessionmaker, is_disconnect
from chat.html_cache import HtmlCache
from chat.htmx import is_htmx
from chat.http_guards import guard_middleware
from chat.kept_reads import KeptReads
from chat.logging import RequestLogMiddleware, configure_logging
from chat.message_path import MessagePath
from chat.models import size_text
from chat.page_cache import PageCache
from chat.presence import create_presence
from chat.rate_limits import RateLimits
from chat.router import SegmentRouter
from chat.routes import routes
from chat.settings import Settings
from chat.storage import LocalMediaStorage
from chat.streams import HandoverStarlette, OpenStreams
from chat.wal_checkpoints import sqlite_checkpoints
from chat.webhooks import OutgoingWebhooks

PACKAGE = Path(__file__).resolve().parent

# The reactions every message offers, named for people who cannot see them.
REACTION_CHOICES = (
    ("👍", "thumbs up"),
    ("❤️", "heart"),
    ("😂", "laughing"),
    ("🎉", "party"),
    ("😮", "surprised"),
    ("👀", "eyes"),
)
MAX_REMEMBERED_URLS = 10_000


class CompiledTemplates(BytecodeCache):
    """Compiled templates, shared by every app this process makes (a test run makes
    hundreds): each template is compiled to Python once per process."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if (code := self._code.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


def create_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=PACKAGE / "templates")
    templates.env.bytecode_cache = COMPILED_TEMPLATES
    templates.env.globals["reaction_choices"] = REACTION_CHOICES
    templates.env.globals["avatar_initials"] = initials
    templates.env.globals["avatar_colour"] = colour
    urls: dict[tuple[Any, ...], str] = {}

    @pass_context
    def url_for(context: dict[str, Any], name: str, /, **path_params: Any) -> str:
        """Starlette's `url_for`, remembered, and with the route found by its name:
        Starlette tries every route of the table in turn, and a room page links every
        member and every room."""
        request: Request = context["request"]
        base_url = str(request.base_url)
        key = (base_url, name, *sorted(path_params.items()))
        url = urls.get(key)
        if url is None:
            if len(urls) >= MAX_REMEMBERED_URLS:
                urls.clear()
            route = request.app.state.routes_by_name[name]
            path = route.url_path_for(name, **path_params)
            url = urls[key] = str(path.make_absolute_url(base_url))
        return url

    templates.env.globals["url_for"] = url_for
    # Templates do not change while a server runs; otherwise every {% include %} (one
    # per message and per member on a room page) checks its file's modification time.
    templates.env.auto_reload = False
    return templates


async def render_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_machine_path(request.url.path):
        return error_response(exc)
    template = "errors/_error.html" if is_htmx(request) else "errors/error.html"
    return request.app.state.templates.TemplateResponse(
        request,
        template,
        {"status_code": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )


UNAVAILABLE = {
    BrokerUnavailable: "Live delivery is down for a moment; nothing was sent. Try again.",
    DBAPIError: "The database is unavailable for a moment. Try again.",
    # No connection came free within the pool's timeout (on SQLite, its one connection):
    # the server is overloaded, not broken.
    PoolTimeout: "The server is busy for a moment. Try again.",
}


async def render_unavailable(request: Request, exc: Exception) -> Response:
    """503 for a backing service that is down (the request may be retried); any other
    database error is a bug and stays a 500."""
    if isinstance(exc, DBAPIError) and not is_disconnect(exc):
        raise exc
    detail = next(text for kind, text in UNAVAILABLE.items() if isinstance(exc, kind))
    return await render_error(request, HTTPException(503, detail, {"Retry-After": "1"}))


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, checkpoints_apart=True)
        checkpoints = app.state.wal_checkpoints = sqlite_checkpoints(engine)
        broker = create_broker(
            settings.broker_url, settings.subscriber_queue_size, settings.broker_prefix
        )
        app.state.db = create_sessionmaker(engine, fast_paths=settings.fast_paths)
        app.state.kept_reads = KeptReads(engine, enabled=settings.fast_paths)
        app.state.broker = broker
        app.state.webhooks = webhooks = OutgoingWebhooks(settings, app.state.db)
        app.state.messages = webhooks.messages = MessagePath(
            db=app.state.db,
            broker=broker,
            templates=app.state.templates.env,
            html_cache=app.state.html_cache,
            max_chars=settings.max_message_chars,
            storage=LocalMediaStorage(settings.media_dir),
            image_decodes=anyio.Semaphore(settings.image_decodes),
            max_image_pixels=settings.max_image_pixels,
            after_post=webhooks.message_posted,
        )
        app.state.presence = create_presence(settings, app.state.db, broker)
        app.state.rate_limits = RateLimits(settings)
        app.state.streams = OpenStreams(
            app.state.presence,
            settings.heartbeat_seconds,
            settings.send_timeout_seconds,
            fast=settings.fast_paths,
        )
        app.state.streams.start()
        webhooks.start()
        if checkpoints is not None:
            checkpoints.start()
        # Loaded now rather than by the first request for each (one room page loads
        # nine), which would otherwise wait for their compiling after every start.
        for name in app.state.templates.env.list_templates():
            app.state.templates.env.get_template(name)
        # Everything loaded so far (modules, mappers, compiled templates) lives as long
        # as the process: out of the collector's sight, a full collection no longer
        # walks it, which pauses whichever request is running (seen in history's p99).
        collector = app.state.collector = Collector(fast=settings.fast_paths)
        collector.start()
        try:
            yield
        finally:
            await app.state.streams.close()
            await webhooks.close()
            await app.state.presence.close()
            await app.state.rate_limits.close()
            await broker.close()
            if checkpoints is not None:  # its last round may use the app's connection
                await checkpoints.close()
            await engine.dispose()
            app.state.kept_reads.close()
            await collector.close()

    app = HandoverStarlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestLogMiddleware),
            *guard_middleware(settings),
            Middleware(
                CSRFMiddleware,
                secret_key=settings.secret_key,
                max_body_bytes=settings.max_form_bytes,
                https=settings.https,
            ),
        ],
        exception_handlers={
            HTTPException: render_error,
            BrokerUnavailable: render_unavailable,
            DBAPIError: render_unavailable,
            PoolTimeout: render_unavailable,
        },
    )
    if settings.fast_paths:
        app.router = SegmentRouter(app.router.routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.routes_by_name = {route.name: route for route in reversed(app.routes)}
    app.state.templates = create_templates()
    app.state.html_cache = HtmlCache(
        app.state.templates.env, app.state.routes_by_name, fast=settings.fast_paths
    )
    app.state.page_cache = PageCache(enabled=settings.fast_paths)
    app.state.templates.env.globals["upload_limits"] = {
        "files": settings.max_files_per_message,
        "size": size_text(settings.max_upload_bytes),
    }
    return app
