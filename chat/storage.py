"""Where attachment files are kept: a small interface, and a local directory behind it.

The database holds what a file is (its name, type, size, message); storage holds only
its bytes under a random key, so another backend (S3-style object storage) needs only
these four operations.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Protocol

import anyio

CHUNK_BYTES = 64 * 1024


class MediaStorage(Protocol):
    def staging_dir(self) -> Path:
        """A local directory for uploads while they arrive and are checked."""
        ...

    async def put(self, source: Path) -> str:
        """Take over the file at `source` (it is gone from there afterwards) and return
        the new, random key it is kept under."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The file's bytes, in chunks; FileNotFoundError when there is none."""
        ...

    async def delete(self, keys: Iterable[str]) -> None:
        """Forget these files; keys that do not exist are ignored."""
        ...


class LocalMediaStorage:
    """Files in one directory, named by their key (never by anything a user chose)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / "incoming"
        # Made at start-up, before any request: not on the event loop later.
        self._staging.mkdir(parents=True, exist_ok=True)

    def staging_dir(self) -> Path:
        return self._staging

    def _path(self, key: str) -> Path:
        if not key.isalnum():  # keys are made by put(); anything else is not one
            raise FileNotFoundError(key)
        return self.root / key

    async def put(self, source: Path) -> str:
        key = secrets.token_hex(16)
        # Staging is inside the root: a rename, atomic and without copying.
        await anyio.to_thread.run_sync(os.replace, source, self._path(key))
        return key

    async def read(self, key: str) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(key), "rb") as file:
            while chunk := await file.read(CHUNK_BYTES):
                yield chunk

    async def delete(self, keys: Iterable[str]) -> None:
        paths = [self._path(key) for key in keys]

        def unlink_all() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        if paths:
            await anyio.to_thread.run_sync(unlink_all)
