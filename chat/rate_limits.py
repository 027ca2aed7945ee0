"""Rate limits: one API for every limit of the app, on the `limits` library.

    await rate_limits.hit(request, "post", f"user:{user.id}")

counts one use of the limit named "post" (its rate is the setting `limit_post`,
CHAT_LIMIT_POST) for that key, and raises RateLimited (429 with Retry-After) when the
key has used it up. The key is explicit so that other callers (API tokens) count
their own. `check` only asks, without counting: a login during a lockout is refused
even with the right password, and only failures count.

Counts live in the process (memory) with the embedded broker, and in Redis when
CHAT_BROKER_URL is Redis, so that every worker shares them. The strategy is the
sliding window counter: two counters per key (this period and the last, weighted by
how much of it the window still covers), so a burst up to the limit passes and a
flood is refused until enough of it has slid out. (The library's moving window keeps
every use, and in memory sweeps them with a worker-thread hop per key.) With
CHAT_RATE_LIMITS=off nothing is counted or refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from chat.settings import Settings

log = structlog.get_logger("chat.rate_limits")

# A limit's name → the Settings field holding its rate.
LIMITS = {
    "login-account": "limit_login_account",
    "login-address": "limit_login_address",
    "signup": "limit_signup",
    "post": "limit_post",
    "change": "limit_change",
    "room": "limit_room",
    "direct": "limit_direct",
    "api": "limit_api",
    "hook": "limit_hook",
}


# What a refusal says, before "Try again in …".
REFUSALS = {
    "login-account": "Too many failed logins for this account.",
    "login-address": "Too many failed logins from your network.",
    "signup": "Too many sign-ups from your network.",
    "post": "You are sending messages faster than the chat allows.",
    "change": "You are changing messages faster than the chat allows.",
    "room": "You have made as many rooms as the chat allows for now.",
    "direct": "You have started as many conversations as the chat allows for now.",
    "api": "This token is making requests faster than the chat allows.",
    "hook": "This webhook is posting faster than the chat allows.",
}
# Streams are not counted over time: one closing is what frees a place.
STREAM_RETRY_SECONDS = 10


class RateLimited(HTTPException):
    """429, with how many seconds to wait in Retry-After."""

    def __init__(self, retry_after: int, detail: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(
            429,
            f"{detail or 'Too many attempts.'} Try again in {_duration(retry_after)}.",
            {"Retry-After": str(retry_after)},
        )


class RateLimits:
    """The app's limits (app.state.rate_limits), made in its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits
        self._rates: dict[str, list[RateLimitItem]] = {
            name: parse_many(getattr(settings, field)) for name, field in LIMITS.items()
        }
        self._storage: Storage
        if settings.broker_url.startswith(("redis://", "rediss://")):
            self._storage = RedisStorage(
                "async+" + settings.broker_url,
                implementation="redispy",
                key_prefix=f"{settings.broker_prefix}limits",
                wrap_exceptions=True,
                socket_timeout=2.0,
                socket_connect_timeout=2.0,
            )
        else:
            self._storage = MemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)

    async def hit(self, name: str, key: str) -> None:
        """Count one use; RateLimited when the key has none left (nothing is counted then)."""
        await self._apply(self._limiter.hit, name, key)

    async def check(self, name: str, key: str) -> None:
        """RateLimited when the key has no use left, without counting one."""
        await self._apply(self._limiter.test, name, key)

    async def _apply(self, ask: Callable[..., Awaitable[bool]], name: str, key: str) -> None:
        if not self.enabled:
            return
        for rate in self._rates[name]:
            try:
                allowed = await ask(rate, name, key)
            except StorageError as exc:  # Redis is down: the app goes on, unlimited
                log.warning("rate_limits.storage_failed", error=type(exc.storage_error).__name__)
                return
            if not allowed:
                await self._refuse(name, rate, key)

    async def _refuse(self, name: str, rate: RateLimitItem, key: str) -> None:
        try:
            reset_at, _ = await self._limiter.get_window_stats(rate, name, key)
        except StorageError:
            reset_at = time.time() + rate.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        log.info("rate_limited", limit=name, retry_after=retry_after)
        raise RateLimited(retry_after, REFUSALS[name])

    async def close(self) -> None:
        if isinstance(self._storage, RedisStorage):
            # The library's Redis client, which it never closes itself: its name is
            # private, so pyproject.toml pins `limits` to its minor version.
            await self._storage.bridge.storage.aclose()  # type: ignore[attr-defined]


async def check_streams(request: Request, user_id: int) -> None:
    """429 when the user already has as many event streams open as one may."""
    state = request.app.state
    if not state.rate_limits.enabled:
        return
    if await state.presence.open_streams(user_id) >= state.settings.max_streams_per_user:
        raise RateLimited(
            STREAM_RETRY_SECONDS,
            "Too many open tabs of this chat. Close some of them, then reload this one.",
        )


async def hit(request: Request, name: str, key: str) -> None:
    await request.app.state.rate_limits.hit(name, key)


async def check(request: Request, name: str, key: str) -> None:
    await request.app.state.rate_limits.check(name, key)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"
