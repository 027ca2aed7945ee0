"""Configuration: one frozen dataclass read from CHAT_* environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chat.db"
DEFAULT_BROKER_URL = "memory://"
DEFAULT_BROKER_PREFIX = "chat:"
DEFAULT_SECRET_KEY_FILE = ".chat-secret-key"  # noqa: S105 (a path, not a secret)


def load_or_create_secret_key(path: Path) -> str:
    """Return the key kept in `path`, creating it (mode 0600) on first start.

    A key generated per process would log everyone out on every restart and would
    differ between workers, so it is made once and kept.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


def default_media_dir(database_url: str) -> Path:
    """`media/` beside the SQLite file (one deployment, one folder to back up); with
    PostgreSQL, `media/` in the working directory."""
    prefix = "sqlite+aiosqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        return Path(database_url.removeprefix(prefix)).parent / "media"
    return Path("media")


OFF = frozenset({"", "0", "off", "false", "no"})


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list (hosts, addresses)."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = DEFAULT_BROKER_URL
    # Redis pub/sub channels are global to a Redis server (not per database number),
    # so every deployment (and test run) sharing one needs its own prefix.
    broker_prefix: str = DEFAULT_BROKER_PREFIX
    secret_key: str = field(default="", repr=False)
    log_level: str = "INFO"
    # Messages longer than this are refused rather than truncated.
    max_message_chars: int = 4000
    page_size: int = 50
    # A subscriber that falls this many frames behind is disconnected and replays.
    subscriber_queue_size: int = 256
    heartbeat_seconds: float = 15.0
    # A client that cannot take a single frame for this long is disconnected.
    send_timeout_seconds: float = 30.0
    # Form bodies larger than this are refused before they are parsed.
    max_form_bytes: int = 64 * 1024
    # Online lasts this long after someone's last stream closes (a reload does not flicker).
    presence_grace_seconds: float = 10.0
    # With Redis: a stream not refreshed for this long (its worker died) stops counting.
    presence_ttl_seconds: float = 30.0
    # "alice is typing…" ends this long after her last typing ping.
    typing_seconds: float = 5.0
    # Attachments: where they are kept (outside static/), and the limits enforced
    # while an upload streams in.
    media_dir: Path = Path("media")
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files_per_message: int = 5
    # Images: at most this many pixels (all frames together), and this many decoded at
    # once in the process; with the copy re-encoding makes, a 25 MP image is at most
    # ~200 MB while it is decoded (RGBA), so two at once stay under half a gigabyte.
    max_image_pixels: int = 25_000_000
    image_decodes: int = 2
    # Rate limits (chat/rate_limits.py), in the `limits` library's notation; False
    # turns every one of them off (CHAT_RATE_LIMITS=off, for benchmarks and load tests).
    rate_limits: bool = True
    limit_login_account: str = "10 per 15 minutes"
    limit_login_address: str = "30 per 15 minutes"
    limit_signup: str = "10 per hour"
    limit_post: str = "30 per minute"
    limit_change: str = "60 per minute"
    limit_room: str = "10 per hour"
    limit_direct: str = "30 per hour"
    max_streams_per_user: int = 30
    # Sessions end this long after they began, and after this long unused.
    session_days: float = 30.0
    session_idle_days: float = 14.0
    # Hosts and HTTPS (chat/http_guards.py).
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    trusted_proxies: tuple[str, ...] = ()
    https: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        secret_key = env.get("CHAT_SECRET_KEY") or load_or_create_secret_key(
            Path(env.get("CHAT_SECRET_KEY_FILE", DEFAULT_SECRET_KEY_FILE))
        )
        database_url = env.get("CHAT_DATABASE_URL", DEFAULT_DATABASE_URL)
        return cls(
            database_url=database_url,
            broker_url=env.get("CHAT_BROKER_URL", DEFAULT_BROKER_URL),
            broker_prefix=env.get("CHAT_BROKER_PREFIX", DEFAULT_BROKER_PREFIX),
            secret_key=secret_key,
            log_level=env.get("CHAT_LOG_LEVEL", "INFO").upper(),
            subscriber_queue_size=int(env.get("CHAT_SUBSCRIBER_QUEUE_SIZE", "256")),
            presence_grace_seconds=float(env.get("CHAT_PRESENCE_GRACE_SECONDS", "10")),
            presence_ttl_seconds=float(env.get("CHAT_PRESENCE_TTL_SECONDS", "30")),
            typing_seconds=float(env.get("CHAT_TYPING_SECONDS", "5")),
            media_dir=Path(env.get("CHAT_MEDIA_DIR") or default_media_dir(database_url)),
            max_upload_bytes=int(env.get("CHAT_MAX_UPLOAD_BYTES", str(10 * 1024 * 1024))),
            max_files_per_message=int(env.get("CHAT_MAX_FILES_PER_MESSAGE", "5")),
            max_image_pixels=int(env.get("CHAT_MAX_IMAGE_PIXELS", "25000000")),
            image_decodes=int(env.get("CHAT_IMAGE_DECODES", "2")),
            rate_limits=env.get("CHAT_RATE_LIMITS", "on").lower() not in OFF,
            limit_login_account=env.get("CHAT_LIMIT_LOGIN_ACCOUNT", cls.limit_login_account),
            limit_login_address=env.get("CHAT_LIMIT_LOGIN_ADDRESS", cls.limit_login_address),
            limit_signup=env.get("CHAT_LIMIT_SIGNUP", cls.limit_signup),
            limit_post=env.get("CHAT_LIMIT_POST", cls.limit_post),
            limit_change=env.get("CHAT_LIMIT_CHANGE", cls.limit_change),
            limit_room=env.get("CHAT_LIMIT_ROOM", cls.limit_room),
            limit_direct=env.get("CHAT_LIMIT_DIRECT", cls.limit_direct),
            max_streams_per_user=int(env.get("CHAT_MAX_STREAMS_PER_USER", "30")),
            session_days=float(env.get("CHAT_SESSION_DAYS", "30")),
            session_idle_days=float(env.get("CHAT_SESSION_IDLE_DAYS", "14")),
            allowed_hosts=_names(env.get("CHAT_ALLOWED_HOSTS", "localhost,127.0.0.1")),
            trusted_proxies=_names(env.get("CHAT_TRUSTED_PROXIES", "")),
            https=env.get("CHAT_HTTPS", "0").lower() not in OFF,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
