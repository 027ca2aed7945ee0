"""What an uploaded file really is, and what is kept of it.

A file's type is read from its first bytes, never from the name or the type the
browser claims. PNG, JPEG, GIF and WebP images are decoded and encoded again with
Pillow: that drops their metadata (EXIF locations, comments), turns a polyglot (an
image that is also valid HTML or a script) into plain pixels, and refuses images
whose pixel count would make decoding them a memory bomb. Everything else is kept
as opaque bytes and only ever served as a download.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageOps, ImageSequence

# The default pixel cap (CHAT_MAX_IMAGE_PIXELS), counted over every frame of an
# animation: decoding takes up to 4 bytes a pixel, and re-encoding an animation keeps
# a copy of each frame, so a 25 MP image needs at most ~100 MB (200 MB animated) while
# it is decoded; the process decodes at most CHAT_IMAGE_DECODES (2) at once. A 24 MP
# photo (6000x4000) passes.
MAX_IMAGE_PIXELS = 25_000_000
# Pillow's own bomb check, made at Image.open, matches it: it warns over this and
# refuses over twice this, before anything is decoded (chat checks first anyway).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# An animation of thousands of tiny frames is within the pixel cap, but each frame
# costs an object and a pass of its own.
MAX_FRAMES = 1000

OPAQUE = "application/octet-stream"
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "PNG": {},
    "JPEG": {"quality": 90},
    "GIF": {},
    "WEBP": {"quality": 90},
}
# What a re-encoded frame keeps of the original's info: how to draw it, nothing else.
FRAME_INFO = ("transparency", "duration", "loop", "background")
MAX_FILENAME_CHARS = 200


class InvalidAttachment(ValueError):
    """A file that cannot be attached; the message says why, for the person sending it.
    `fields`: the form's text fields read before the refusal (what they typed)."""

    status = 400
    fields: dict[str, str] | None = None


class AttachmentTooLarge(InvalidAttachment):
    status = 413


@dataclass
class Upload:
    """A file as it arrived, in the request's staging directory."""

    path: Path
    filename: str
    size: int = 0


@dataclass(frozen=True)
class PreparedFile:
    """What is kept of an upload: its bytes at `path`, and what they are."""

    path: Path
    filename: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None


def clean_filename(raw: str) -> str:
    """The last path component of a browser-given name, without control or format
    characters, at most MAX_FILENAME_CHARS long (the extension kept)."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Zl", "Zp"})
    name = name.strip()
    if len(name) > MAX_FILENAME_CHARS:
        suffix = Path(name).suffix[:16]
        name = name[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return name or "file"


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce (Pillow's name for it), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def prepare(upload: Upload, max_pixels: int = MAX_IMAGE_PIXELS) -> PreparedFile:
    """Check an upload and make what is kept of it (blocking: run it in a thread).
    Raises InvalidAttachment."""
    if upload.size == 0:
        raise InvalidAttachment(f"“{upload.filename}” is empty.")
    with upload.path.open("rb") as file:
        image_format = sniff(file.read(16))
    if image_format is None:
        return PreparedFile(upload.path, upload.filename, OPAQUE, upload.size)
    target = upload.path.with_name(upload.path.name + EXTENSIONS[image_format])
    width, height = _reencode(upload, image_format, target, max_pixels)
    return PreparedFile(
        target,
        upload.filename,
        IMAGE_TYPES[image_format],
        target.stat().st_size,
        width,
        height,
    )


def _reencode(upload: Upload, image_format: str, target: Path, max_pixels: int) -> tuple[int, int]:
    unreadable = f"“{upload.filename}” looks like an image but could not be read as one."
    too_large = InvalidAttachment(
        f"“{upload.filename}” has too many pixels (at most {max_pixels // 1_000_000} million)."
    )
    try:
        with Image.open(upload.path, formats=[image_format]) as image:
            # From the header, before anything is decoded.
            if image.width * image.height > max_pixels:
                raise too_large
            if not getattr(image, "is_animated", False):
                return _reencode_still(image, image_format, target)
            frames, pixels = [], 0
            for frame in ImageSequence.Iterator(image):
                pixels += frame.width * frame.height
                if pixels > max_pixels or len(frames) >= MAX_FRAMES:
                    raise too_large
                copy = frame.copy()
                copy.info = {key: frame.info[key] for key in FRAME_INFO if key in frame.info}
                frames.append(copy)
            first, *rest = frames
            options = dict(SAVE_OPTIONS[image_format])
            if rest:
                options.update(save_all=True, append_images=rest)
            first.save(target, image_format, **options)
            return first.width, first.height
    except Image.DecompressionBombError as exc:
        raise too_large from exc
    except InvalidAttachment:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidAttachment(unreadable) from exc


def _reencode_still(image: Image.Image, image_format: str, target: Path) -> tuple[int, int]:
    """One frame, encoded from the decoded image itself rather than a copy (half the
    memory); its metadata is dropped by keeping only FRAME_INFO."""
    image.load()
    if image_format == "JPEG":
        ImageOps.exif_transpose(image, in_place=True)  # the EXIF orientation goes
    image.info = {key: image.info[key] for key in FRAME_INFO if key in image.info}
    image.save(target, image_format, **SAVE_OPTIONS[image_format])
    return image.width, image.height


def content_disposition(disposition: str, filename: str) -> str:
    """An RFC 6266 header: an ASCII-only fallback name for old clients, and the real
    name in RFC 8187 encoding for every other."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = re.sub(r"[^A-Za-z0-9._ ()-]", "_", fallback).strip() or "file"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
