"""Starlette's router, trying only the routes that can match a path's first segment.

What it saves: Starlette tries every route of the table in turn, each a regular
expression, until one matches. With some eighty routes a room page was the 36th
tried and a search the 69th: 40-70 µs a request, a sixth of a page served from the
page cache (chat/page_cache.py). Here the routes are grouped once by the first
segment of their path ("rooms", "search", "api", ...), its number of segments and
its last segment; a request tries the routes of its own shape and those that match
any (parameters there, a Mount), in the table's order. A route of another shape can never match the
path (no parameter spans a "/" but `:path`, whose routes match any), so the first
full match is the one Starlette would have found; when there is none (a 405, a missing
trailing slash, a 404) Starlette's own routing runs as always. CHAT_FAST_PATHS=0
keeps Starlette's router.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Route, Router, get_route_path
from starlette.types import Receive, Scope, Send

ANY = None  # a segment that is a parameter; or any number of segments
OTHER = "{other}"  # a request's last segment that no route has as a fixed word
MAX_KEPT_SEGMENTS = 16  # request shapes kept; longer paths are looked at each time

Shape = tuple[str | None, int | None, str | None]


def shape(route: BaseRoute) -> Shape:
    """The first segment of the paths `route` can match ("rooms", "" for "/", ANY for
    a parameter), how many segments they have (ANY for a Mount: any number) and their
    last segment (ANY for a parameter, or for a Mount)."""
    path = getattr(route, "path", None)
    if not isinstance(path, str) or ":path}" in path:
        return ANY, ANY, ANY
    segments = path.lstrip("/").split("/")
    first, last = (ANY if "{" in segment else segment for segment in (segments[0], segments[-1]))
    if not isinstance(route, Route):
        return first, ANY, ANY
    return first, len(segments), last


class SegmentRouter(Router):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._shapes: list[tuple[BaseRoute, Shape]] = []
        self._firsts: set[str | None] = set()
        self._lasts: set[str | None] = set()
        self._kept: dict[tuple[str, int, str], list[BaseRoute]] = {}
        self._shaped: tuple[int, int] = (0, 0)

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that can match `path`, in the table's order."""
        if (id(self.routes), len(self.routes)) != self._shaped:  # routes added: again
            self._shapes = [(route, shape(route)) for route in self.routes]
            self._firsts = {first for _, (first, _, _) in self._shapes}
            self._lasts = {last for _, (_, _, last) in self._shapes}
            self._kept = {}
            self._shaped = (id(self.routes), len(self.routes))
        if not path.startswith("/"):
            return list(self.routes)
        segments = path[1:].split("/")
        last = segments[-1] if segments[-1] in self._lasts else OTHER
        key = (segments[0], len(segments), last)
        found = self._kept.get(key)
        if found is None:
            found = [
                route
                for route, (first, count, route_last) in self._shapes
                if first in (ANY, key[0]) and count in (ANY, key[1]) and route_last in (ANY, last)
            ]
            if key[0] in self._firsts and key[1] <= MAX_KEPT_SEGMENTS:
                self._kept[key] = found
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.candidates(get_route_path(scope)):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
