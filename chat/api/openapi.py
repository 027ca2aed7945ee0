"""The API's OpenAPI 3.1 description, served at /api/v1/openapi.json (no token needed).

tests/test_api_openapi.py runs schemathesis against a live server with it: every answer
the routes give must match what is written here, and no input may make one a 500.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chat.models.base import MAX_ID

ID = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": {"type": "string", "description": "a short code a program can test"},
            "detail": {"type": "string", "description": "what went wrong, for a person"},
        }
    ),
    "Room": _object(
        {
            "id": ID,
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["room", "direct"]},
            "private": {"type": "boolean"},
            "member": {"type": "boolean"},
            "last_seq": ID,
            "url": {"type": "string", "format": "uri"},
        }
    ),
    "Message": _object(
        {
            "room_id": ID,
            "seq": ID,
            "author": {"type": ["string", "null"]},
            "author_is_bot": {"type": "boolean"},
            "body": {"type": "string", "description": "the text as typed (Markdown subset)"},
            "html": {"type": "string", "description": "the sanitized HTML the pages show"},
            "created_at": {"type": "string", "format": "date-time"},
            "edited_at": NULLABLE_TIME,
            "deleted": {"type": "boolean"},
            "reply_to": {"type": ["integer", "null"]},
            "reactions": {
                "type": "array",
                "items": _object(
                    {
                        "emoji": {"type": "string"},
                        "users": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
            "attachments": {
                "type": "array",
                "items": _object(
                    {
                        "filename": {"type": "string"},
                        "content_type": {"type": "string"},
                        "size": {"type": "integer"},
                        "url": {"type": "string", "format": "uri"},
                    }
                ),
            },
            "permalink": {"type": "string", "format": "uri"},
        }
    ),
    "RoomAnswer": _object({"room": _ref("Room")}),
    "MessageAnswer": _object({"message": _ref("Message")}),
    "Reacted": _object({"message": _ref("Message"), "reacted": {"type": "boolean"}}),
    "Rooms": _object({"rooms": {"type": "array", "items": _ref("Room")}}),
    "MessagePage": _object(
        {"messages": {"type": "array", "items": _ref("Message")}, "has_more": {"type": "boolean"}}
    ),
    "SearchResults": _object(
        {
            "results": {
                "type": "array",
                "items": _object(
                    {
                        "id": ID,
                        "room_id": ID,
                        "room": {"type": "string"},
                        "seq": ID,
                        "author": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "snippet": {"type": "string", "description": "escaped, with <mark>"},
                        "permalink": {"type": "string", "format": "uri"},
                    }
                ),
            },
            "before": {"type": ["integer", "null"], "description": "the next page's before"},
        }
    ),
    "NewMessage": {
        **_object(
            {
                "body": {"type": "string", "minLength": 1, "maxLength": 4000},
                "reply_to": {**ID, "type": ["integer", "null"]},
            },
            optional=("reply_to",),
        ),
    },
    "Edit": _object({"body": {"type": "string", "maxLength": 4000}}),
    "Reaction": _object({"emoji": {"type": "string", "minLength": 1, "maxLength": 16}}),
}

_ERRORS = {
    "400": "Malformed request, or cookies sent",
    "401": "No token, a malformed one, or one unknown or revoked",
    "404": "No such room or message, or one the token may not see",
    "429": "Rate limited (Retry-After says when)",
}
_WRITE_ERRORS = {
    **_ERRORS,
    "403": "A read-only token, not a member, or not the author",
    "413": "The body is too large",
    "415": "The body is not application/json",
    "422": "A field of the wrong type, or a message the chat refuses",
    "503": "The database or live delivery is down for a moment; nothing was stored",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(
    summary: str,
    answers: dict[str, tuple[str, str]],
    *,
    write: bool = False,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`answers`: status → (description, schema name) of the successful answers."""
    responses: dict[str, Any] = {
        status: {"description": text, "content": _json(_ref(name))}
        for status, (text, name) in answers.items()
    }
    for status, text in (_WRITE_ERRORS if write else _ERRORS).items():
        responses[status] = {"description": text, "content": _json(_ref("Error"))}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return operation


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


ROOM = [_path("room_id")]
MESSAGE = [_path("room_id"), _path("seq")]
CURSOR = {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,10})?$"}

PATHS: dict[str, Any] = {
    "/api/v1/rooms": {
        "get": _operation("The rooms the token's user is in", {"200": ("Rooms", "Rooms")})
    },
    "/api/v1/rooms/{room_id}": {
        "get": _operation("A room", {"200": ("The room", "RoomAnswer")}, parameters=ROOM)
    },
    "/api/v1/rooms/{room_id}/join": {
        "post": _operation(
            "Join a public room",
            {"200": ("Already a member", "RoomAnswer"), "201": ("Joined", "RoomAnswer")},
            write=True,
            parameters=ROOM,
        )
    },
    "/api/v1/rooms/{room_id}/messages": {
        "get": _operation(
            "A page of messages, oldest first (keyset by seq)",
            {"200": ("The page", "MessagePage")},
            parameters=[
                *ROOM,
                _query("before", ID, "the messages before this seq"),
                _query("after", ID, "the messages after this seq"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "1 to 100"),
            ],
        ),
        "post": _operation(
            "Post a message",
            {"201": ("Posted; Location is its permalink", "MessageAnswer")},
            write=True,
            body="NewMessage",
            parameters=ROOM,
        ),
    },
    "/api/v1/rooms/{room_id}/messages/{seq}": {
        "get": _operation(
            "A message as it stands", {"200": ("The message", "MessageAnswer")}, parameters=MESSAGE
        ),
        "patch": _operation(
            "Edit your message",
            {"200": ("Edited", "MessageAnswer")},
            write=True,
            body="Edit",
            parameters=MESSAGE,
        ),
        "delete": _operation(
            "Delete your message (any, as a room owner)",
            {"200": ("Deleted", "MessageAnswer")},
            write=True,
            parameters=MESSAGE,
        ),
    },
    "/api/v1/rooms/{room_id}/messages/{seq}/reactions": {
        "post": _operation(
            "Toggle your reaction",
            {"200": ("Toggled", "Reacted")},
            write=True,
            body="Reaction",
            parameters=MESSAGE,
        )
    },
    "/api/v1/rooms/{room_id}/events": {
        "get": {
            "summary": "The room's live stream: SSE, JSON data, cursors as ids",
            "parameters": [
                *ROOM,
                _query("after", CURSOR, "resume after this cursor (or Last-Event-ID)"),
            ],
            "responses": {
                "200": {
                    "description": "event: message | edit | delete; data: a Message",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **{
                    status: {"description": text, "content": _json(_ref("Error"))}
                    for status, text in _ERRORS.items()
                },
            },
        }
    },
    "/api/v1/search": {
        "get": _operation(
            "Search messages (the search page's query language)",
            {"200": ("Newest matches first", "SearchResults")},
            parameters=[
                _query("q", {"type": "string", "maxLength": 500}, "the query"),
                _query("before", ID, "the next page: the `before` of the last answer"),
            ],
        )
    },
}


def document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chat",
            "version": "1",
            "description": "Bots and scripts: bearer tokens from /account/tokens or a bot's "
            "page. A request with cookies is refused.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": PATHS,
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document(str(request.base_url).rstrip("/")))
