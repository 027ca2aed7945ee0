"""The brokers on their own: local fan-out, and Redis pub/sub between workers."""

import asyncio
import inspect
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from chat.broker import BrokerUnavailable, MemoryBroker, RedisBroker, create_broker
from chat.subscriptions import SubscriptionOverflow


async def next_payload(subscription, timeout: float = 5.0) -> tuple[str, bytes]:
    return await asyncio.wait_for(subscription.get(), timeout)


async def eventually(condition, timeout: float = 5.0) -> None:
    """Wait until condition() (plain or async) is true; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        assert asyncio.get_running_loop().time() < deadline, "it never happened"
        await asyncio.sleep(0.02)


@pytest.fixture
def prefix() -> str:
    return f"chat-test-{secrets.token_hex(6)}:"


@pytest.fixture
async def workers(redis_url, prefix) -> AsyncIterator:
    """workers(n) → n RedisBrokers sharing one Redis, as n worker processes would."""
    brokers: list[RedisBroker] = []

    def make(count: int) -> list[RedisBroker]:
        brokers.extend(RedisBroker(redis_url, 8, prefix) for _ in range(count))
        return brokers[-count:]

    yield make
    for broker in brokers:
        await broker.close()


@pytest.fixture
async def admin(redis_url) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def redis_subscribers(admin, channel: str) -> int:
    [(_, count)] = await admin.pubsub_numsub(channel)
    return count


async def test_memory_broker_delivers_to_every_subscriber_of_the_channel_only():
    broker = MemoryBroker(8)
    async with (
        broker.subscribe("room:1") as first,
        broker.subscribe("room:1", "user:1") as second,
        broker.subscribe("room:2") as other,
    ):
        await broker.publish("room:1", b"hello")
        await broker.publish("room:2", b"elsewhere")
        assert await next_payload(first) == ("room:1", b"hello")
        assert await next_payload(second) == ("room:1", b"hello")
        assert await next_payload(other) == ("room:2", b"elsewhere")


async def test_a_subscriber_that_falls_behind_is_cut_off_and_told_at_once():
    broker = MemoryBroker(2)
    told = asyncio.Event()
    async with broker.subscribe("room:1", on_overflow=told.set) as subscription:
        for n in range(3):
            await broker.publish("room:1", b"%d" % n)
        assert told.is_set()
        with pytest.raises(SubscriptionOverflow):
            await subscription.get()


def test_unknown_broker_schemes_are_refused():
    with pytest.raises(ValueError, match="unsupported CHAT_BROKER_URL"):
        create_broker("kafka://localhost", 8)


async def test_a_message_published_by_one_worker_reaches_the_subscribers_of_every_worker(
    workers,
):
    first, second = workers(2)
    async with first.subscribe("room:1") as on_first, second.subscribe("room:1") as on_second:
        await second.publish("room:1", b"frame")
        assert await next_payload(on_first) == ("room:1", b"frame")
        assert await next_payload(on_second) == ("room:1", b"frame")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_payloads_published_together_reach_each_channels_subscribers_in_order(kind, workers):
    broker = MemoryBroker(8) if kind == "memory" else workers(1)[0]
    async with (
        broker.subscribe("room:1", "activity:1") as both,
        broker.subscribe("activity:1") as activity_only,
    ):
        await broker.publish("room:1", b"frame", also=[("activity:1", b"notice")])
        assert await next_payload(both) == ("room:1", b"frame")
        assert await next_payload(both) == ("activity:1", b"notice")
        assert await next_payload(activity_only) == ("activity:1", b"notice")


async def test_a_failed_publish_keeps_the_frame_for_later_and_drops_what_went_with_it(
    private_redis, prefix
):
    broker = RedisBroker(private_redis.url, 8, prefix)
    try:
        await broker.ping()
        private_redis.stop()
        with pytest.raises(BrokerUnavailable):
            await broker.publish("room:1", b"frame", also=[("activity:1", b"notice")])
        assert list(broker._unpublished) == [("room:1", b"frame")]
    finally:
        await broker.close()


async def test_a_burst_of_more_publishes_than_the_pool_has_connections_all_go_through(workers):
    from chat.broker import REDIS_POOL_SIZE

    [broker] = workers(1)
    # Any failure would raise BrokerUnavailable (and cut off the worker's streams).
    await asyncio.gather(*(broker.publish("room:1", b"frame") for _ in range(3 * REDIS_POOL_SIZE)))
    assert broker.is_up


async def test_each_worker_holds_one_redis_subscription_per_channel_whatever_its_streams(
    workers, admin, prefix
):
    first, second = workers(2)
    channel = f"{prefix}room:7"
    async with (
        first.subscribe("room:7"),
        first.subscribe("room:7", "user:1"),
        first.subscribe("room:7", "user:2"),
        second.subscribe("room:7"),
    ):
        # subscribe() returns once Redis confirmed: no waiting needed here.
        assert await redis_subscribers(admin, channel) == 2
        assert await redis_subscribers(admin, f"{prefix}user:1") == 1

    async def all_unsubscribed() -> bool:
        return await redis_subscribers(admin, channel) == 0

    await eventually(all_unsubscribed)


async def test_brokers_with_other_prefixes_do_not_hear_each_other(redis_url, workers):
    [ours] = workers(1)
    theirs = RedisBroker(redis_url, 8, f"chat-test-{secrets.token_hex(6)}:")
    try:
        async with ours.subscribe("room:1") as subscription, theirs.subscribe("room:1"):
            await theirs.publish("room:1", b"not for us")
            await ours.publish("room:1", b"ours")
            assert await next_payload(subscription) == ("room:1", b"ours")
    finally:
        await theirs.close()


async def test_losing_the_redis_connection_cuts_off_local_streams_then_it_comes_back(
    workers, admin, prefix
):
    listening, publishing = workers(2)
    told = asyncio.Event()
    async with listening.subscribe("room:1", on_overflow=told.set) as stream:
        killed = 0
        for client in await admin.client_list(_type="pubsub"):
            if client["name"].startswith(prefix):
                killed += await admin.client_kill_filter(_id=client["id"])
        assert killed == 2  # one pub/sub connection per worker, whatever its streams
        await asyncio.wait_for(told.wait(), 5)
        with pytest.raises(SubscriptionOverflow):
            await stream.get()

    # The worker reconnects on its own; new streams hear messages again.
    async with listening.subscribe("room:1") as stream:
        await publishing.publish("room:1", b"after")
        assert await next_payload(stream) == ("room:1", b"after")
    assert listening.is_up


async def test_a_subscribe_that_fails_in_an_unexpected_way_still_lets_new_streams_subscribe(
    workers, monkeypatch
):
    """When the shared pub/sub connection breaks, redis-py can fail a SUBSCRIBE with a
    bare AttributeError; the worker must start over, not stop subscribing for good."""
    listening, publishing = workers(2)
    async with listening.subscribe("room:1"):
        pass
    subscribe = redis.asyncio.client.PubSub.subscribe
    failures = []

    async def fails_once(pubsub, *args, **kwargs):
        if not failures:
            failures.append(args)
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await subscribe(pubsub, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.client.PubSub, "subscribe", fails_once)

    async def heard_on_a_new_channel() -> bool:
        # A stream waiting while the worker starts over is cut off; its client retries.
        async with asyncio.timeout(5), listening.subscribe("room:2") as stream:
            await publishing.publish("room:2", b"heard")
            try:
                return await next_payload(stream) == ("room:2", b"heard")
            except SubscriptionOverflow:
                return False

    await eventually(heard_on_a_new_channel, timeout=15)
    assert failures


async def test_while_redis_is_down_the_broker_says_so_and_recovers_when_it_is_back(
    private_redis, prefix
):
    broker = RedisBroker(private_redis.url, 8, prefix)
    try:
        async with broker.subscribe("room:1"):
            await broker.ping()
        private_redis.stop()

        await eventually(lambda: not broker.is_up)
        with pytest.raises(BrokerUnavailable):
            await broker.ping()
        with pytest.raises(BrokerUnavailable):
            await broker.publish("room:1", b"lost?")

        private_redis.start()
        await eventually(lambda: broker.is_up, timeout=15)
        async with broker.subscribe("room:1") as stream:
            await broker.publish("room:1", b"back")
            assert await next_payload(stream) == ("room:1", b"back")
        await broker.ping()
    finally:
        await broker.close()
