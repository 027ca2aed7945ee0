"""Outgoing webhooks: a bot with a URL is told, by a signed POST, when it is @mentioned or
when anything is said in a room it watches; a `{"text": ...}` answer is posted as its reply.

Posting never waits for any of it. `MessagePath.post` calls `message_posted`, which only
looks the message up in two in-memory sets (the bots with a URL, the rooms watched) and, on
a match, starts a task that stores a `WebhookDelivery` per bot. The sender (one task per
process) sends what is due: each delivery is claimed first (so one worker of several sends
it), sent with a timeout, and on failure tried again later with growing waits, up to
CHAT_WEBHOOK_ATTEMPTS times. Deliveries are rows, so a restart sends what was pending; one
claimed by a worker that died is sent again once its claim expires (at least once: the
receiver may see a delivery twice, and tells by its `delivery` id).

A message posted by a bot never triggers an outgoing webhook, so two bots cannot answer
each other for ever. Only http(s) URLs are taken, and (unless CHAT_WEBHOOK_ALLOW_PRIVATE)
none whose host resolves to a private, loopback, link-local or otherwise special address,
checked when the URL is saved and again before every attempt, whose request then goes to
the address checked (`pinned`). Redirects are not followed,
and at most MAX_ANSWER_BYTES of an answer are read.

The signature: `X-Chat-Signature: t=<unix time>,v1=<hex>`, the HMAC-SHA256 with the bot's
signing secret of "<unix time>.<body>". Receivers check it with `verify_signature`, which
also refuses one older than its tolerance (a replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.api.messages import message_data
from chat.broker import cancel_tasks
from chat.models import Bot, DeliveryState, Membership, Message, Room, User, WebhookDelivery
from chat.models.base import utcnow
from chat.settings import Settings

log = structlog.get_logger("chat.webhooks")

MAX_ANSWER_BYTES = 64 * 1024
SIGNATURE_TOLERANCE_SECONDS = 300
# A claimed delivery not finished in this long (its worker died) is sent again.
CLAIM_SECONDS = 60
REFRESH_SECONDS = 10
# Finished deliveries are forgotten after this long (checked every PRUNE_EVERY refreshes).
KEEP_DELIVERIES = timedelta(days=7)
PRUNE_EVERY = 360
SEND_BATCH = 20
SENDING = "sending"


class UnsafeTarget(ValueError):
    """A URL outgoing webhooks may not call; the message says why."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `header` (X-Chat-Signature) signs `body` with `secret`, made no longer than
    `tolerance` seconds ago: an old one, replayed, is refused like a forged one."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, int(timestamp)), header)


def _special(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_target(url: str, allow_private: bool) -> str | None:
    """Raise UnsafeTarget unless `url` is http(s) to a host whose every address is public
    (or `allow_private`). The address checked, to connect to (`pinned`); None when
    private ones are allowed and nothing was resolved."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTarget("That is not a URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("Only http:// and https:// URLs are allowed.")
    if parts.username or parts.password:
        raise UnsafeTarget("A URL with a user name or password is not allowed.")
    if allow_private:
        return None
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"The host {parts.hostname} cannot be found.") from exc
    if not found or any(_special(str(info[4][0])) for info in found):
        raise UnsafeTarget("Addresses in private, loopback and link-local ranges are not allowed.")
    return str(found[0][4][0])


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """`url` sent to `address`, the one `check_target` checked, rather than to whatever
    the name resolves to a moment later (DNS rebinding): the URL with the address for
    its host, the Host header, and for https the name TLS verifies (httpx's SNI)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    extensions = {"sni_hostname": parts.hostname or ""} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions


def payload(delivery_id: int, bot: User, event: str, room: Room, message: Message, base: str):
    """The JSON body of a delivery (its id is added once the row exists)."""
    room_url = f"{base}/rooms/{room.id}"
    return {
        "delivery": delivery_id,
        "event": event,
        "bot": bot.username,
        "room": {"id": room.id, "name": room.name, "url": room_url},
        "message": message_data(room_url, message),
    }


class OutgoingWebhooks:
    """The process's outgoing webhooks (app.state.webhooks), started in the app's lifespan."""

    def __init__(self, settings: Settings, db: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.db = db
        self.messages: Any = None  # chat.message_path.MessagePath, set once it exists
        # Bot id → the rooms it watches, for every bot with a URL.
        self._bots: dict[int, frozenset[int]] = {}
        self._watched: frozenset[int] = frozenset()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    # --- noticing ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read which bots have a URL and what they watch (each worker, every few s)."""
        async with self.db() as db:
            rows = await db.execute(
                select(Bot.user_id, Bot.watched_room_ids).where(Bot.outgoing_url != "")
            )
            bots = {
                user_id: frozenset(int(each) for each in watched.split(",") if each)
                for user_id, watched in rows
            }
        self._bots = bots
        self._watched = frozenset(room for rooms in bots.values() for room in rooms)

    def message_posted(self, message: Message, mentioned: Iterable[User]) -> None:
        """Called by the message path once a message is stored: never waits."""
        if not self._bots or (message.author is not None and message.author.is_bot):
            return
        mentions = {user.id for user in mentioned if user.id in self._bots}
        if not mentions and message.room_id not in self._watched:
            return
        task = asyncio.get_running_loop().create_task(self._store(message, mentions))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store(self, message: Message, mentions: set[int]) -> None:
        watchers = {bot for bot, rooms in self._bots.items() if message.room_id in rooms}
        try:
            async with self.db() as db:
                room = await db.get(Room, message.room_id)
                # Still members: a watch outlives a bot's removal from the room.
                members = set(
                    await db.scalars(
                        select(Membership.user_id).where(
                            Membership.room_id == message.room_id,
                            Membership.user_id.in_(mentions | watchers),
                        )
                    )
                )
                bots = {
                    user.id: user
                    for user in await db.scalars(select(User).where(User.id.in_(members)))
                }
                for bot_id, bot in bots.items():
                    event = "mention" if bot_id in mentions else "message"
                    delivery = WebhookDelivery(
                        bot_id=bot_id, room_id=room.id, seq=message.seq, payload=""
                    )
                    db.add(delivery)
                    await db.flush()
                    delivery.payload = json.dumps(
                        payload(delivery.id, bot, event, room, message, self.base_url),
                        ensure_ascii=False,
                    )
                await db.commit()
        except Exception:
            log.exception("webhook.store_failed", room_id=message.room_id, seq=message.seq)
            return
        self._wake.set()

    @property
    def base_url(self) -> str:
        return self.settings.public_url.rstrip("/")

    # --- sending ----------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_forever(), name="webhooks-send"),
            loop.create_task(self._refresh_forever(), name="webhooks-refresh"),
        ]

    async def close(self) -> None:
        await cancel_tasks([*self._tasks, *self._background])
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client, made at the first delivery: its TLS context costs some 20 ms
        of CPU, which an instance without outgoing webhooks (and each test app) need
        not pay."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                headers={"User-Agent": "chat-webhooks/1"},
            )
        return self._client

    async def _refresh_forever(self) -> None:
        rounds = 0
        while True:
            try:
                await self.refresh()
                if rounds % PRUNE_EVERY == 0:
                    async with self.db() as db:
                        await WebhookDelivery.prune(db, utcnow() - KEEP_DELIVERIES)
            except Exception:
                log.exception("webhook.refresh_failed")
            rounds += 1
            await asyncio.sleep(REFRESH_SECONDS)

    async def _send_forever(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("webhook.send_failed")
                sent = 0
            if sent:
                continue
            self._wake.clear()
            async with self.db() as db:
                next_due = await WebhookDelivery.next_due_at(db)
            wait = 5.0
            if next_due is not None:
                wait = min(wait, max(0.05, (next_due - utcnow()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def send_due(self) -> int:
        """Send the deliveries due now (at most SEND_BATCH, at once); how many."""
        async with self.db() as db:
            due = await _due(db)
            claimed = [delivery for delivery in due if await _claim(db, delivery)]
        await asyncio.gather(*(self._attempt(delivery) for delivery in claimed))
        return len(claimed)

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        async with self.db() as db:
            bot = await Bot.get(db, delivery.bot_id)
        if bot is None or not bot.outgoing_url:
            await self._finish(delivery, DeliveryState.FAILED, None, "the bot has no URL")
            return
        body = delivery.payload.encode()
        status, error, answer = None, "", b""
        try:
            url, host, extensions = bot.outgoing_url, {}, {}
            address = await check_target(url, self.settings.webhook_allow_private)
            if address is not None:
                url, host, extensions = pinned(url, address)
            signature = sign(bot.signing_secret, body, int(time.time()))
            client = self._http()
            request = client.build_request(
                "POST",
                url,
                content=body,
                headers={
                    **host,
                    "Content-Type": "application/json",
                    "X-Chat-Signature": signature,
                },
                extensions=extensions,
            )
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    answer = await _read_capped(response)
                else:
                    error = f"answered {status}"
            finally:
                await response.aclose()
        except UnsafeTarget as exc:
            error = str(exc)
        except httpx.TimeoutException:
            error = f"no answer in {self.settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}"
        if status is not None and 200 <= status < 300:
            await self._finish(delivery, DeliveryState.DELIVERED, status, "")
            await self._reply(bot, delivery, answer)
        elif delivery.attempts + 1 >= self.settings.webhook_attempts:
            await self._finish(delivery, DeliveryState.FAILED, status, error)
        else:
            wait = self.settings.webhook_backoff_seconds * 2**delivery.attempts
            async with self.db() as db:
                await delivery.record(
                    db,
                    state=DeliveryState.PENDING,
                    status=status,
                    error=error,
                    retry_in=timedelta(seconds=wait),
                )
        log.info(
            "webhook.attempt",
            delivery_id=delivery.id,
            bot_id=delivery.bot_id,
            status=status,
            error=error,
        )

    async def _finish(
        self, delivery: WebhookDelivery, state: str, status: int | None, error: str
    ) -> None:
        async with self.db() as db:
            await delivery.record(db, state=state, status=status, error=error)

    async def _reply(self, bot: Bot, delivery: WebhookDelivery, answer: bytes) -> None:
        """An answer `{"text": "..."}` is posted by the bot, as a reply to the message."""
        try:
            text = json.loads(answer.decode("utf-8")).get("text") if answer.strip() else None
        except (UnicodeDecodeError, ValueError, AttributeError):
            return
        if not isinstance(text, str) or not text.strip():
            return
        try:
            await self.messages.post(delivery.room_id, bot.user, text, delivery.seq)
        except Exception as exc:  # a refused text, the room gone: the delivery stands
            log.info("webhook.reply_refused", delivery_id=delivery.id, error=type(exc).__name__)


async def _due(db: AsyncSession) -> list[WebhookDelivery]:
    """Pending deliveries that are due, and claimed ones whose claim has expired."""
    rows = await db.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.state.in_([DeliveryState.PENDING, SENDING]),
            WebhookDelivery.due_at <= utcnow(),
        )
        .order_by(WebhookDelivery.due_at, WebhookDelivery.id)
        .limit(SEND_BATCH)
    )
    return list(rows)


async def _claim(db: AsyncSession, delivery: WebhookDelivery) -> bool:
    """Take the delivery for this worker for CLAIM_SECONDS; False if another took it."""
    result = await db.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.state.in_([DeliveryState.PENDING, SENDING]),
            WebhookDelivery.due_at <= utcnow(),
        )
        .values(state=SENDING, due_at=utcnow() + timedelta(seconds=CLAIM_SECONDS))
    )
    await db.commit()
    return result.rowcount == 1


async def _read_capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return b""  # too long to be a reply: delivered, but nothing is posted
        chunks.append(chunk)
    return b"".join(chunks)
