"""Files sent with messages (their bytes are in media storage)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    String,
)
from sqlalchemy.orm import (
    Mapped,
    mapped_column,
)

from chat.models.base import Base, UTCDateTime, utcnow

# The largest an attached image is shown in a message, in CSS pixels.
THUMBNAIL_BOX = (320, 240)


def size_text(size: int) -> str:
    """A byte count as people read it: "512 bytes", "40 KB", "1.5 MB", "10 MB"."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


class Attachment(Base):
    """A file sent with a message. Its bytes are in media storage under `key` (random,
    never the file's name); what they are was read from the bytes (chat/uploads.py)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # As the sender's browser named it (cleaned); shown escaped, and the image's alt text.
    filename: Mapped[str] = mapped_column(String(255))
    # An image type for re-encoded images, else application/octet-stream.
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    width: Mapped[int | None]
    height: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def thumbnail_size(self) -> tuple[int, int]:
        """The image's size shown in a message: scaled down to fit THUMBNAIL_BOX."""
        width, height = self.width or 1, self.height or 1
        scale = min(1.0, THUMBNAIL_BOX[0] / width, THUMBNAIL_BOX[1] / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    @property
    def download_name(self) -> str:
        """The name it is saved under: an image's extension says what it is now."""
        if not self.is_image:
            return self.filename
        extension = "jpg" if self.content_type == "image/jpeg" else self.content_type[6:]
        return f"{self.filename.rsplit('.', 1)[0] or 'image'}.{extension}"

    @property
    def size_text(self) -> str:
        return size_text(self.size)
