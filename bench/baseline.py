"""The baseline that `chat bench fanout` and `chat bench idle` compare the app with.

The plain way to fan out with sse-starlette: one `asyncio.Queue` per client, and each
event encoded again for every client (a `ServerSentEvent` per client per event).
`POST /publish` sends its body to every client as a `message` event with the next id.

    uvicorn bench.baseline:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

clients: set[asyncio.Queue[tuple[int, str]]] = set()
next_id = itertools.count(1)


async def events(_request: Request) -> Response:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    clients.add(queue)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                event_id, text = await queue.get()
                yield ServerSentEvent(data=text, id=str(event_id), event="message")
        finally:
            clients.discard(queue)

    return EventSourceResponse(stream(), ping=15)


async def publish(request: Request) -> Response:
    text = (await request.body()).decode()
    event_id = next(next_id)
    for queue in clients:
        queue.put_nowait((event_id, text))
    return PlainTextResponse("ok")


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/events", events),
        Route("/publish", publish, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
