"""What htmx tells the server about a request."""

from __future__ import annotations

from starlette.requests import Request


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request: it then swaps in a fragment, where a browser
    without JavaScript gets a whole page or a redirect."""
    return "hx-request" in request.headers


def is_history_restore(request: Request) -> bool:
    """Whether htmx is restoring a page from the server: it wants the whole page."""
    return "hx-history-restore-request" in request.headers
