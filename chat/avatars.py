"""Profile pictures: an uploaded image, checked as attachments are (chat/uploads.py:
sniffed from its bytes, its pixels counted from the header before decoding) and
re-encoded to one small fixed size with nothing of the original's metadata. Without
one, a person is shown by their initials on a colour derived from their username."""

from __future__ import annotations

import zlib
from pathlib import Path

from PIL import Image, ImageOps

from chat.uploads import InvalidAttachment, Upload, sniff

# Drawn at 32 CSS pixels beside messages and 64 on the account page: twice that for
# sharp screens, once.
SIZE = 128
# app.css defines .avatar-c0 … .avatar-c7, each a background with white text at AA contrast.
COLOURS = 8


def initials(username: str, display_name: str = "") -> str:
    """Two letters for a person: of their display name's first two words, else the
    first two characters of their username."""
    words = display_name.split()
    if len(words) >= 2:
        return (words[0][0] + words[1][0]).upper()
    return (words[0][:2] if words else username[:2]).upper()


def colour(username: str) -> int:
    """A stable colour class number for a username (any letter case the same)."""
    return zlib.crc32(username.lower().encode()) % COLOURS


def make_avatar(upload: Upload, target: Path, max_pixels: int) -> None:
    """Write `upload` as a SIZE x SIZE PNG at `target` (blocking: run it in a thread).
    Raises InvalidAttachment for anything but a readable image."""
    with upload.path.open("rb") as file:
        image_format = sniff(file.read(16))
    if image_format is None:
        raise InvalidAttachment("A profile picture must be a PNG, JPEG, GIF or WebP image.")
    try:
        with Image.open(upload.path, formats=[image_format]) as image:
            if image.width * image.height > max_pixels:
                raise InvalidAttachment("That image has too many pixels.")
            image.seek(0)
            still = ImageOps.exif_transpose(image).convert("RGBA")
            square = ImageOps.fit(still, (SIZE, SIZE), Image.Resampling.LANCZOS)
            square.save(target, "PNG", optimize=True)
    except Image.DecompressionBombError as exc:
        raise InvalidAttachment("That image has too many pixels.") from exc
    except InvalidAttachment:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidAttachment("That image could not be read.") from exc
