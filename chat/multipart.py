"""multipart/form-data read as it arrives, for the CSRF check and for uploads.

Both need to act on a part before the body has all arrived: the CSRF middleware stops
reading once it has the token, and an upload stops the moment a file passes its size
limit. So this is python-multipart's streaming parser turned into a list of events per
chunk: a Part when one begins, bytes of its content, and PART_END.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

PART_END = None


class MalformedForm(ValueError):
    """The body is not the multipart/form-data its Content-Type says."""


@dataclass(frozen=True)
class Part:
    name: str
    # The name the browser gave a file; None for a plain field.
    filename: str | None


def is_multipart(content_type: str) -> bool:
    return content_type.lower().startswith("multipart/form-data")


class MultipartReader:
    """Feed it the body chunk by chunk; each chunk gives back the events it completed."""

    def __init__(self, content_type: str) -> None:
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise MalformedForm("The form has no multipart boundary.")
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError as exc:
            raise MalformedForm("The form's multipart boundary is invalid.") from exc
        self._events: list[Part | bytes | None] = []
        self._header_name = self._header_value = b""
        self._disposition = b""
        self.complete = False

    def feed(self, chunk: bytes) -> list[Part | bytes | None]:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise MalformedForm("The form data is malformed.") from exc
        events, self._events = self._events, []
        return events

    def _on_part_begin(self) -> None:
        self._disposition = b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise MalformedForm("A form part has no name.")
        try:
            name = options[b"name"].decode("utf-8")
            filename = options[b"filename"].decode("utf-8") if b"filename" in options else None
        except UnicodeDecodeError as exc:
            raise MalformedForm("The form data is not valid UTF-8.") from exc
        self._events.append(Part(name, filename))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(data[start:end])

    def _on_part_end(self) -> None:
        self._events.append(PART_END)

    def _on_end(self) -> None:
        self.complete = True
