"""Starlette's router, trying only the routes that can match a path's first segment.

What it saves: Starlette tries every route of the table in turn, each a regular
expression, until one matches. With some eighty routes a room page was the 36th
tried and a search the 69th: 40-70 µs a request, a sixth of a page served from the
page cache (chat/page_cache.py). Here the routes are grouped once by the first
segment of their path ("rooms", "search", "api", ...); a request tries the routes of
its own first segment and those whose first segment is a parameter, in the table's
order. A route of another first segment can never match the path, so the first full
match is the one Starlette would have found; when there is none (a 405, a missing
trailing slash, a 404) Starlette's own routing runs as always. CHAT_FAST_PATHS=0
keeps Starlette's router.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Router, get_route_path
from starlette.types import Receive, Scope, Send

ANY = None  # the group of routes whose first segment is not a fixed word


def first_segment(path: str) -> str | None:
    """ "rooms" for "/rooms/{room_id}"; "" for "/"; ANY for "/{name}" or no path."""
    segment = path.lstrip("/").split("/", 1)[0]
    return ANY if "{" in segment else segment


class SegmentRouter(Router):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._groups: dict[str | None, list[BaseRoute]] = {}
        self._grouped: tuple[int, int] = (0, 0)

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that can match `path`, in the table's order."""
        if (id(self.routes), len(self.routes)) != self._grouped:  # routes added: group again
            self._group()
        segment = path[1:].split("/", 1)[0] if path.startswith("/") else ANY
        return self._groups.get(segment) or self._groups.get(ANY, [])

    def _group(self) -> None:
        keys = [first_segment(getattr(route, "path", "{any}")) for route in self.routes]
        groups: dict[str | None, list[BaseRoute]] = {ANY: []}
        for key in set(keys):
            groups[key] = [
                route for route, other in zip(self.routes, keys, strict=True) if other in (key, ANY)
            ]
        self._groups, self._grouped = groups, (id(self.routes), len(self.routes))

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
