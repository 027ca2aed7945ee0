"""Server-Sent Events frames, encoded once and shared as bytes by every subscriber."""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Sent first on every stream: the browser's own reconnect comes back after 1 s.
RETRY_FRAME = b"retry: 1000\n\n"


def encode(event: str, data: str, *, id: int | None = None) -> bytes:
    lines = [] if id is None else [f"id: {id}"]
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def seq_of(frame: bytes) -> int | None:
    """The `id:` of a frame made by `encode`, or None for frames without one."""
    if not frame.startswith(b"id: "):
        return None
    return int(frame[4 : frame.index(b"\n")])
