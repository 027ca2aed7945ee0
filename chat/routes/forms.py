"""Reading submitted forms strictly: bad encodings are refused, not guessed at."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the last value of each name wins).

    Starlette's parser replaces invalid UTF-8 silently; a chat must not store a
    message that differs from what was sent, so such a request is a 400.
    """
    body = await request.body()
    try:
        return dict(
            parse_qsl(
                body.decode("ascii"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=100,
            )
        )
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "The form data is not valid UTF-8.") from exc
    except ValueError as exc:
        raise HTTPException(400, "The form data is malformed.") from exc
