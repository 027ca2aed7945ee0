"""The search page: one shareable URL, a plain GET form; htmx swaps in only the results."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from chat import page_cache
from chat.auth import login_required
from chat.htmx import is_history_restore, is_htmx
from chat.routes.rooms import int_param
from chat.search import MAX_QUERY_CHARS, parse, search

# Control characters are never part of a word; PostgreSQL refuses NUL outright.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@login_required
async def page(request: Request) -> Response:
    text = _CONTROL_CHARACTERS.sub(" ", request.query_params.get("q", "")).strip()
    if len(text) > MAX_QUERY_CHARS:
        raise HTTPException(400, f"Searches can be at most {MAX_QUERY_CHARS} characters.")
    before = int_param(request.query_params.get("before"), "before")
    return await request.app.state.page_cache.respond(
        request, page_cache.SEARCH, lambda: _results_page(request, text, before)
    )


async def _results_page(request: Request, text: str, before: int | None) -> Response:
    query = parse(text)
    async with request.app.state.db() as db:
        results = await search(db, request.state.user, query, before_id=before)
    # htmx restoring history from the server wants the whole page, not the fragment.
    partial = is_htmx(request) and not is_history_restore(request)
    return request.app.state.templates.TemplateResponse(
        request,
        "search/_results.html" if partial else "search/page.html",
        {
            "search_text": text,
            "search_results": results,
            "query": query,
            "before": before,
        },
    )
