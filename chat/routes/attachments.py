"""Attachment files, served only to people who may read the room they were sent in."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from chat.auth import login_required
from chat.models import Message
from chat.routes.rooms import find_room
from chat.uploads import content_disposition

# The bytes are data, never a page: nothing in them may run or be taken for HTML.
ATTACHMENT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    # Checked on every request, so only the viewer's own browser may keep a copy.
    "Cache-Control": "private, max-age=3600",
}


@login_required
async def show(request: Request) -> Response:
    """Images inline (they were re-encoded, so they are what their type says), every
    other file as a download. 404 for a room the viewer may not read, exactly as for
    a file that does not exist."""
    room, _ = await find_room(request)
    async with request.app.state.db() as db:
        attachment = await Message.attachment(db, room.id, request.path_params["key"])
    if attachment is None:
        raise HTTPException(404, "There is no such file, or it was deleted.")
    disposition = "inline" if attachment.is_image else "attachment"
    return StreamingResponse(
        request.app.state.messages.storage.read(attachment.key),
        media_type=attachment.content_type,
        headers={
            **ATTACHMENT_HEADERS,
            "Content-Disposition": content_disposition(disposition, attachment.download_name),
            "Content-Length": str(attachment.size),
        },
    )
