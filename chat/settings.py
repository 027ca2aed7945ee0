"""Configuration: one frozen dataclass read from CHAT_* environment variables."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

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


T = TypeVar("T")

OFF = frozenset({"", "0", "off", "false", "no"})


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list (hosts, addresses)."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


BOT_CREATORS = ("admins", "everyone")


def _bot_creators(value: str) -> str:
    if value not in BOT_CREATORS:
        raise ValueError(f"CHAT_BOT_CREATORS must be one of {', '.join(BOT_CREATORS)}")
    return value


SIGNUP_POLICIES = ("open", "invite", "closed")


def _signup_policy(value: str) -> str:
    policy = value.strip().lower()
    if policy and policy not in SIGNUP_POLICIES:
        raise ValueError(f"CHAT_SIGNUP must be one of {', '.join(SIGNUP_POLICIES)}, not {value!r}")
    return policy


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
    # Bots and the API (chat/api/, chat/webhooks.py). Who may make bots: "admins" or
    # "everyone".
    bot_creators: str = "admins"
    limit_api: str = "600 per minute"
    limit_hook: str = "60 per minute"
    max_api_body_bytes: int = 32 * 1024
    # Outgoing webhooks: addresses in private, loopback and link-local ranges are
    # refused unless this is on (the tests reach their own loopback receiver).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = 5
    # The first retry waits this long, each next one twice as long (fixed in code).
    webhook_backoff_seconds: float = 2.0
    # The site's address as people reach it (e.g. https://chat.example.com): the
    # permalinks outgoing webhooks send start with it; empty, they are paths.
    public_url: str = ""
    # The sign-up policy, when the environment fixes it (open, invite or closed); empty
    # leaves it to the administrators' choice on /admin (open until they choose).
    signup: str = ""
    # How long an administrator's password-reset link works.
    password_reset_hours: float = 24.0
    # A deleted account's username cannot be signed up with for this long.
    username_reserved_days: float = 30.0
    # False serves the plain paths instead of the measured fast ones (chat.hot_statements,
    # chat.html_cache, chat.streams): the same answers, for comparing the two.
    fast_paths: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of the CHAT_* variables of `environ` (the process's by default);
        an unset variable leaves the default stated in the class above."""
        env = os.environ if environ is None else environ

        def get(name: str, default: T, convert: Callable[[str], T]) -> T:
            value = env.get(name)
            return default if value is None else convert(value)

        def flag(name: str, default: bool) -> bool:
            return get(name, default, lambda value: value.lower() not in OFF)

        secret_key = env.get("CHAT_SECRET_KEY") or load_or_create_secret_key(
            Path(env.get("CHAT_SECRET_KEY_FILE", DEFAULT_SECRET_KEY_FILE))
        )
        database_url = env.get("CHAT_DATABASE_URL", cls.database_url)
        return cls(
            database_url=database_url,
            broker_url=env.get("CHAT_BROKER_URL", cls.broker_url),
            broker_prefix=env.get("CHAT_BROKER_PREFIX", cls.broker_prefix),
            secret_key=secret_key,
            log_level=env.get("CHAT_LOG_LEVEL", cls.log_level).upper(),
            subscriber_queue_size=get("CHAT_SUBSCRIBER_QUEUE_SIZE", cls.subscriber_queue_size, int),
            presence_grace_seconds=get(
                "CHAT_PRESENCE_GRACE_SECONDS", cls.presence_grace_seconds, float
            ),
            presence_ttl_seconds=get("CHAT_PRESENCE_TTL_SECONDS", cls.presence_ttl_seconds, float),
            typing_seconds=get("CHAT_TYPING_SECONDS", cls.typing_seconds, float),
            media_dir=Path(env.get("CHAT_MEDIA_DIR") or default_media_dir(database_url)),
            max_upload_bytes=get("CHAT_MAX_UPLOAD_BYTES", cls.max_upload_bytes, int),
            max_files_per_message=get("CHAT_MAX_FILES_PER_MESSAGE", cls.max_files_per_message, int),
            max_image_pixels=get("CHAT_MAX_IMAGE_PIXELS", cls.max_image_pixels, int),
            image_decodes=get("CHAT_IMAGE_DECODES", cls.image_decodes, int),
            rate_limits=flag("CHAT_RATE_LIMITS", cls.rate_limits),
            limit_login_account=env.get("CHAT_LIMIT_LOGIN_ACCOUNT", cls.limit_login_account),
            limit_login_address=env.get("CHAT_LIMIT_LOGIN_ADDRESS", cls.limit_login_address),
            limit_signup=env.get("CHAT_LIMIT_SIGNUP", cls.limit_signup),
            limit_post=env.get("CHAT_LIMIT_POST", cls.limit_post),
            limit_change=env.get("CHAT_LIMIT_CHANGE", cls.limit_change),
            limit_room=env.get("CHAT_LIMIT_ROOM", cls.limit_room),
            limit_direct=env.get("CHAT_LIMIT_DIRECT", cls.limit_direct),
            max_streams_per_user=get("CHAT_MAX_STREAMS_PER_USER", cls.max_streams_per_user, int),
            session_days=get("CHAT_SESSION_DAYS", cls.session_days, float),
            session_idle_days=get("CHAT_SESSION_IDLE_DAYS", cls.session_idle_days, float),
            allowed_hosts=get("CHAT_ALLOWED_HOSTS", cls.allowed_hosts, _names),
            trusted_proxies=get("CHAT_TRUSTED_PROXIES", cls.trusted_proxies, _names),
            https=flag("CHAT_HTTPS", cls.https),
            bot_creators=get("CHAT_BOT_CREATORS", cls.bot_creators, _bot_creators),
            limit_api=env.get("CHAT_LIMIT_API", cls.limit_api),
            limit_hook=env.get("CHAT_LIMIT_HOOK", cls.limit_hook),
            max_api_body_bytes=get("CHAT_MAX_API_BODY_BYTES", cls.max_api_body_bytes, int),
            webhook_allow_private=flag("CHAT_WEBHOOK_ALLOW_PRIVATE", cls.webhook_allow_private),
            webhook_timeout_seconds=get(
                "CHAT_WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout_seconds, float
            ),
            webhook_attempts=get("CHAT_WEBHOOK_ATTEMPTS", cls.webhook_attempts, int),
            public_url=env.get("CHAT_PUBLIC_URL", cls.public_url),
            signup=get("CHAT_SIGNUP", cls.signup, _signup_policy),
            password_reset_hours=get("CHAT_PASSWORD_RESET_HOURS", cls.password_reset_hours, float),
            username_reserved_days=get(
                "CHAT_USERNAME_RESERVED_DAYS", cls.username_reserved_days, float
            ),
            fast_paths=flag("CHAT_FAST_PATHS", cls.fast_paths),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
