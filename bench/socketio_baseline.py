"""The socket.io baseline of `chat bench fanout` and `chat bench idle`, when
python-socketio is installed (the `bench` extra installs it).

The same job done the socket.io way: every client connected over a WebSocket to the
default namespace, and `POST /publish` emitting its body to all of them as a `message`
event (python-socketio encodes the packet once and sends it to each client in a task of
its own).

    uvicorn bench.socketio_baseline:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import socketio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

server = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])


async def publish(request: Request) -> Response:
    await server.emit("message", (await request.body()).decode())
    return PlainTextResponse("ok")


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


app = socketio.ASGIApp(
    server,
    Starlette(routes=[Route("/publish", publish, methods=["POST"]), Route("/healthz", healthz)]),
)
