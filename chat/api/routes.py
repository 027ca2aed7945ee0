"""The API's routes, part of the app's route table (chat/routes/__init__.py)."""

from __future__ import annotations

from starlette.routing import Route

from chat import path_numbers  # noqa: F401  (registers {name:int} before the routes below)
from chat.api import hooks, messages, openapi, search, stream

PREFIX = "/api/v1"
ROOM = PREFIX + "/rooms/{room_id:int}"
MESSAGE = ROOM + "/messages/{seq:int}"

routes = [
    Route(PREFIX + "/openapi.json", openapi.openapi, methods=["GET"], name="api_openapi"),
    Route(PREFIX + "/rooms", messages.list_rooms, methods=["GET"], name="api_rooms"),
    Route(ROOM, messages.show_room, methods=["GET"], name="api_room"),
    Route(ROOM + "/join", messages.join_room, methods=["POST"], name="api_join_room"),
    Route(ROOM + "/messages", messages.list_messages, methods=["GET"], name="api_messages"),
    Route(ROOM + "/messages", messages.post_message, methods=["POST"], name="api_post_message"),
    Route(MESSAGE, messages.show_message, methods=["GET"], name="api_message"),
    Route(MESSAGE, messages.edit_message, methods=["PATCH"], name="api_edit_message"),
    Route(MESSAGE, messages.delete_message, methods=["DELETE"], name="api_delete_message"),
    Route(MESSAGE + "/reactions", messages.react, methods=["POST"], name="api_react"),
    Route(ROOM + "/events", stream.stream, methods=["GET"], name="api_room_events"),
    Route("/hooks/{secret}", hooks.incoming, methods=["POST"], name="incoming_webhook"),
    Route(PREFIX + "/search", search.search_messages, methods=["GET"], name="api_search"),
]
