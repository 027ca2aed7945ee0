"""Reading submitted forms strictly: bad encodings are refused, not guessed at, and
uploads are streamed to disk under their limits."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import anyio
from anyio import AsyncFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from chat.models import size_text
from chat.multipart import PART_END, MalformedForm, MultipartReader, Part, is_multipart
from chat.settings import Settings
from chat.uploads import (
    AttachmentTooLarge,
    InvalidAttachment,
    Upload,
    clean_filename,
)

MAX_FIELDS = 100


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
                max_num_fields=MAX_FIELDS,
            )
        )
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "The form data is not valid UTF-8.") from exc
    except ValueError as exc:
        raise HTTPException(400, "The form data is malformed.") from exc


def typed_body(refused: Exception, body: str) -> str:
    """The message text to give back with a refusal: `body` once the form was read,
    or, for a file refused while it was being read, the text that came before it."""
    if isinstance(refused, InvalidAttachment) and refused.fields is not None:
        return refused.fields.get("body", "")
    return body


def refusal(refused: Exception) -> str:
    """What to tell the person whose message was refused (a bad message or file, or
    a rate limit)."""
    return refused.detail if isinstance(refused, HTTPException) else str(refused)


def refusal_status(refused: Exception) -> int:
    if isinstance(refused, HTTPException):
        return refused.status_code
    return refused.status  # type: ignore[attr-defined]


@dataclass
class MessageForm:
    fields: dict[str, str]
    uploads: list[Upload]


@asynccontextmanager
async def message_form(request: Request) -> AsyncIterator[MessageForm]:
    """A message's form: URL-encoded, or multipart with files (the composer's).

    Files go to a staging directory of this request's own as they arrive, and
    reading stops the moment one passes a limit (InvalidAttachment, 413 for size),
    so no upload is ever held in memory or read past its limit. Whatever storage
    has not taken from staging when the block ends is deleted: a refused request
    leaves nothing behind."""
    content_type = request.headers.get("content-type", "")
    if not is_multipart(content_type):
        yield MessageForm(await read_form(request), [])
        return
    directory = _StagingDirectory(request.app.state.messages.storage.staging_dir())
    try:
        yield await _read_multipart(request, content_type, directory)
    finally:
        await directory.remove()


class _StagingDirectory:
    """A request's own directory under staging, made when its first file arrives: the
    composer always sends multipart, most messages carry no file, and making and
    removing the directory were two trips to a worker thread, a third of a post."""

    def __init__(self, staging: Path) -> None:
        self._staging = staging
        self._path: Path | None = None

    async def path(self) -> Path:
        if self._path is None:
            made = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(dir=self._staging))
            self._path = Path(made)
        return self._path

    async def remove(self) -> None:
        if self._path is not None:
            path = self._path
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))


async def _read_multipart(
    request: Request, content_type: str, directory: _StagingDirectory
) -> MessageForm:
    settings = request.app.state.settings
    try:
        reader = MultipartReader(content_type)
    except MalformedForm as exc:
        raise HTTPException(400, str(exc)) from exc
    form = MessageForm({}, [])
    part: Part | None = None
    value = bytearray()
    field_bytes = 0
    file: AsyncFile[bytes] | None = None
    try:
        async for chunk in request.stream():
            for event in reader.feed(chunk):
                if isinstance(event, Part):
                    part, value = event, bytearray()
                    if part.filename is None:
                        if len(form.fields) >= MAX_FIELDS:
                            raise HTTPException(400, "The form has too many fields.")
                    elif part.name == "files" and part.filename:
                        staged_in = await directory.path()
                        upload = _next_upload(form, part.filename, staged_in, settings)
                        file = await anyio.open_file(upload.path, "wb")
                elif event is PART_END:
                    if file is not None:
                        await file.aclose()
                        file = None
                    elif part is not None and part.filename is None:
                        form.fields[part.name] = _decode(value)
                    part = None
                elif file is not None:
                    upload = form.uploads[-1]
                    upload.size += len(event)
                    if upload.size > settings.max_upload_bytes:
                        raise AttachmentTooLarge(
                            f"Files can be at most {size_text(settings.max_upload_bytes)};"
                            f" “{upload.filename}” is larger."
                        )
                    await file.write(event)
                elif part is not None and part.filename is None:
                    field_bytes += len(event)
                    if field_bytes > settings.max_form_bytes:
                        raise HTTPException(413, "The form's text is too large.")
                    value += event
        if not reader.complete:
            raise HTTPException(400, "The form data was cut short.")
    except MalformedForm as exc:
        raise HTTPException(400, str(exc)) from exc
    except InvalidAttachment as exc:
        exc.fields = form.fields
        raise
    except ClientDisconnect as exc:
        raise HTTPException(400, "The form data was cut short.") from exc
    finally:
        if file is not None:
            await file.aclose()
    return form


def _next_upload(form: MessageForm, filename: str, directory: Path, settings: Settings) -> Upload:
    if len(form.uploads) >= settings.max_files_per_message:
        raise InvalidAttachment(
            f"A message can have at most {settings.max_files_per_message} files."
        )
    upload = Upload(directory / str(len(form.uploads)), clean_filename(filename))
    form.uploads.append(upload)
    return upload


def _decode(value: bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "The form data is not valid UTF-8.") from exc
