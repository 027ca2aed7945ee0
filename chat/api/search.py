"""The API's search: the same query language and rooms as the search page (chat/search.py)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat.api.auth import api_route, query_number, viewer
from chat.api.errors import ApiError
from chat.api.messages import permalink
from chat.search import MAX_QUERY_CHARS, parse, search

# As on the search page: control characters are never part of a word.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@api_route()
async def search_messages(request: Request) -> Response:
    """`?q=…` (and `&before=ID` for the next page): the newest matches first, in the
    rooms the user may read and the token may reach. `snippet` is HTML: escaped text
    with the matched words in <mark>."""
    text = _CONTROL_CHARACTERS.sub(" ", request.query_params.get("q", "")).strip()
    if len(text) > MAX_QUERY_CHARS:
        raise ApiError(400, "bad_request", f"q is at most {MAX_QUERY_CHARS} characters.")
    before = query_number(request, "before")
    token = request.state.token
    async with request.app.state.db() as db:
        results = await search(
            db, viewer(request), parse(text), before_id=before, rooms=token.rooms
        )
    return JSONResponse(
        {
            "results": [
                {
                    "id": hit.id,
                    "room_id": hit.room_id,
                    "room": hit.room_name,
                    "seq": hit.seq,
                    "author": hit.author,
                    "created_at": hit.created_at.isoformat(),
                    "snippet": str(hit.snippet),
                    "permalink": permalink(request, hit.room_id, hit.seq),
                }
                for hit in results.hits
                if token.may_see(hit.room_id)
            ],
            "before": results.older_than,
        }
    )
