"""chat/router.py: the first route of a path's own first segment that matches is the
one Starlette's router would have taken, for every route of the table."""

import re

from starlette.routing import Match, Router

from chat.router import SegmentRouter
from chat.routes import routes


def starlettes_choice(table, scope):
    for route in table:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def segment_routers_choice(router, scope):
    for route in router.candidates(scope["path"]):
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def paths():
    """Every route's path with sample values, and some that match nothing."""
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "7", getattr(route, "path", "/"))
        yield path or "/"
        yield path + "/x"
        yield path + "/"
    yield from ("/", "", "/nothing", "/rooms/abc", "/static/app.css", "/api/v1/rooms/7/messages")
    yield from ("//", "/rooms//messages", "/rooms/7//", "/static/", "/static/a/b/c.css", "/x/7/7")


def test_every_path_and_method_goes_to_the_route_starlette_would_choose():
    fast = SegmentRouter(routes)
    checked = 0
    for path in set(paths()):
        for method in ("GET", "POST", "DELETE", "PATCH"):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            assert segment_routers_choice(fast, scope) is starlettes_choice(routes, scope), (
                method,
                path,
            )
            checked += starlettes_choice(routes, scope) is not None
    assert checked > len(routes)


def test_routes_added_later_are_found():
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    table = list(routes)
    fast = SegmentRouter(table)
    assert segment_routers_choice(fast, {"type": "http", "method": "GET", "path": "/late"}) is None
    fast.routes.append(Route("/late", lambda request: PlainTextResponse("late")))
    found = segment_routers_choice(fast, {"type": "http", "method": "GET", "path": "/late"})
    assert found is fast.routes[-1]


async def test_the_app_answers_the_same_through_either_router(people, app):
    alice = await people("alice")
    room_id = await alice.create_room("general")
    assert isinstance(app.router, SegmentRouter)
    answers = {}
    for router in (app.router, Router(app.router.routes)):
        app.router, app.middleware_stack = router, None
        answers[type(router)] = [
            (response.status_code, response.headers.get("location"))
            for response in [
                await alice.client.get(f"/rooms/{room_id}"),
                await alice.client.get(f"/rooms/{room_id}/"),
                await alice.client.delete(f"/rooms/{room_id}"),
                await alice.client.get("/nowhere"),
                await alice.client.get("/static/app.css"),
                await alice.client.get("/search?q=x"),
            ]
        ]
    assert answers[SegmentRouter] == answers[Router]
    assert [status for status, _ in answers[Router]] == [200, 307, 403, 404, 200, 200]
