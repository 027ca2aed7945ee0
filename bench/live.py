"""Live-server benchmarks of streams and posts: `chat bench fanout | small-rooms | posts | idle`.

Each run starts the app as production does (`chat serve`: uvicorn, uvloop, httptools, one
worker unless --workers says more) on a free port and a fresh database (bench/servers.py)
and drives it from this process (bench/driver.py). Every message is timestamped at its
*intended* send time (start + n / rate), so a stalled server shows up as latency.

`fanout` and `idle` also run bench/baseline.py (plain sse-starlette, one queue per
client) and, where python-socketio is installed, bench/socketio_baseline.py in the same
invocation, taking turns with the app, and print the ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import report
from bench.driver import (
    Connection,
    Posters,
    Subscriber,
    log,
    measuring,
    send_at_rate,
    subscribe,
    subscribe_all,
)
from bench.protocol import Event, EventStream, http_request
from bench.report import Scenario
from bench.servers import (
    SOCKETIO_MISSING,
    App,
    Server,
    running_app,
    running_baselines,
)
from bench.shared_cpu import SharedCpu
from bench.stats import latency_summary, read_summary

MARKER = re.compile(r"bench (\d+) (\d+) end")


class Deliveries:
    """Post→receive latencies of the messages a run sends, by their body's marker: to
    their arrival at the subscriber's socket, and to this process reading them."""

    def __init__(self) -> None:
        self.run = 0
        self.intended: dict[tuple[int, int], float] = {}
        self.latencies: list[float] = []
        self.read_latencies: list[float] = []
        self.received = 0
        self.events = 0
        self.frames: dict[str, str] = {}  # one data field per event type, as a sample

    def body(self, index: int) -> str:
        return f"bench {self.run} {index} end"

    def on_event(self, event: Event, arrived: float, read: float) -> None:
        self.events += 1
        self.frames.setdefault(event.event, event.data)
        if event.event != "message" or (marker := MARKER.search(event.data)) is None:
            return
        key = (int(marker[1]), int(marker[2]))
        if key[0] == self.run and (intended := self.intended.get(key)) is not None:
            self.latencies.append((arrived - intended) * 1000)
            self.read_latencies.append((read - intended) * 1000)
            self.received += 1

    def start_run(self) -> None:
        self.run += 1
        self.intended.clear()
        self.latencies = []
        self.read_latencies = []
        self.received = 0

    async def drained(self, expected: int, within: float) -> bool:
        deadline = time.perf_counter() + within
        # Polled: deliveries are counted in protocol callbacks, at thousands a second.
        while self.received < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return self.received >= expected


async def quiet(deliveries: Deliveries, label: str, settle: float = 1.0) -> None:
    """Waits until no event has arrived for `settle` seconds (presence notices of
    subscribers that just connected, warm-up messages)."""
    log(f"{label}: waiting for the streams to settle")
    while True:
        seen = deliveries.events
        await asyncio.sleep(settle)
        if deliveries.events == seen:
            return


@dataclass
class Target:
    """A server under test with its subscribers connected: the app or the baseline."""

    name: str
    server: Server
    subscribers: list[Subscriber]
    deliveries: Deliveries
    publish: Callable[[str], bytes]  # body -> raw POST request
    payload: Callable[[str], str] = str  # the body to post for a marker
    latencies: list[float] = field(default_factory=list)
    read_latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    expected: int = 0
    cpu_seconds: float = 0.0
    driver_cpu_seconds: float = 0.0
    shared_cpu_seconds: float = 0.0  # the app's PostgreSQL backends and Redis
    shared: SharedCpu = field(default_factory=lambda: SharedCpu(None, None))
    rounds: list[dict[str, float]] = field(default_factory=list)


async def fanout_round(target: Target, rate: float, seconds: float) -> None:
    deliveries = target.deliveries
    deliveries.start_run()
    count = max(1, round(rate * seconds))
    posters = Posters(target.server.port, 4)
    statuses: list[int] = []

    def send(index: object, intended: float) -> None:
        deliveries.intended[(deliveries.run, index)] = intended
        raw = target.publish(target.payload(deliveries.body(index)))
        posters.send(raw, intended, lambda status, _elapsed: statuses.append(status))

    expected = count * len(target.subscribers)
    with measuring():
        cpu_before, driver_before = target.server.cpu_seconds(), time.process_time()
        target.shared.start()
        started = time.perf_counter()
        await send_at_rate([(n / rate, n) for n in range(count)], send, f"{target.name} sending")
        await deliveries.drained(expected, within=10)
        cpu = target.server.cpu_seconds() - cpu_before
        shared = sum((await target.shared.stop()).values())
        driver_cpu = time.process_time() - driver_before - target.shared.own_cpu
        driver_share = driver_cpu / (time.perf_counter() - started)
    await posters.close()
    if any(status != 200 for status in statuses):
        raise RuntimeError(f"{target.name}: posts answered {sorted(set(statuses))}")
    if closed := sum(subscriber.closed for subscriber in target.subscribers):
        raise RuntimeError(f"{target.name}: {closed} streams were closed by the server")
    target.latencies += deliveries.latencies
    target.read_latencies += deliveries.read_latencies
    target.delivered += deliveries.received
    target.expected += expected
    target.cpu_seconds += cpu
    target.driver_cpu_seconds += driver_cpu
    target.shared_cpu_seconds += shared
    target.rounds.append(
        {
            **latency_summary(deliveries.latencies),
            **read_summary(deliveries.read_latencies),
            "delivered": deliveries.received,
            "expected": expected,
            "server_cpu_s": cpu,
            "driver_cpu_s": driver_cpu,
            "postgres_redis_cpu_s": shared,
            # Near 1.0 would mean the driver, not the server, set the pace.
            "driver_cpu_share": driver_share,
        }
    )


def target_summary(target: Target) -> dict[str, object]:
    return {
        **latency_summary(target.latencies),
        **read_summary(target.read_latencies),
        "delivered": target.delivered,
        "expected": target.expected,
        "server_cpu_s": target.cpu_seconds,
        "driver_cpu_s": target.driver_cpu_seconds,
        "postgres_redis_cpu_s": target.shared_cpu_seconds,
        "deliveries_per_cpu_s": target.delivered / target.cpu_seconds
        if target.cpu_seconds
        else math.nan,
        "rounds": target.rounds,
    }


def publish_request(body: str) -> bytes:
    """A baseline's post of a message to every subscriber."""
    return http_request("POST", "/publish", body=body.encode())


async def fanout(options) -> dict[str, object]:
    """One room, S subscribers, R messages/s; the app (with each --workers count) and the
    baselines take turns."""
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for workers in options.workers:
            app = await stack.enter_async_context(
                running_app(options.backend, options.broker, 1, options.subscribers, workers)
            )
            room_id, members = next(iter(app.rooms.items()))
            deliveries = Deliveries()
            subscribers = await subscribe_all(
                f"{report.app_name(workers)} streams",
                app.server.port,
                [app.stream_request(room_id, member) for member in members],
                deliveries.on_event,
            )
            publish = functools.partial(app.post_request, room_id, members[0])
            targets.append(
                Target(
                    report.app_name(workers),
                    app.server,
                    subscribers,
                    deliveries,
                    publish,
                    shared=app.shared,
                )
            )
        apps = list(targets)
        for baseline, server in await stack.enter_async_context(running_baselines()):
            deliveries = Deliveries()
            subscribers = await subscribe_all(
                f"{baseline.name} streams",
                server.port,
                [baseline.stream_request] * options.subscribers,
                deliveries.on_event,
                baseline.body,
            )
            targets.append(Target(baseline.name, server, subscribers, deliveries, publish_request))
        # A warm-up message each; the baselines then carry the app's rendered partial,
        # so all deliver messages of the same size.
        for target in targets:
            await fanout_round(target, 1, 1)
            target.latencies, target.read_latencies, target.rounds = [], [], []
            target.delivered = target.expected = 0
            target.cpu_seconds = target.driver_cpu_seconds = target.shared_cpu_seconds = 0.0
        template = apps[0].deliveries.frames["message"]
        for target in targets[len(apps) :]:
            target.payload = lambda marker: MARKER.sub(marker, template)
        for target in apps:
            await quiet(target.deliveries, target.name)
        for round_number in range(1, options.rounds + 1):
            for target in targets:
                log(f"round {round_number}/{options.rounds}: {target.name}")
                await fanout_round(target, options.rate, options.seconds)
        for target in targets:
            for subscriber in target.subscribers:
                subscriber.close()
    return {
        "socketio": SOCKETIO_MISSING,
        **{target.name: target_summary(target) for target in targets},
        "frame_bytes": len(template.encode()),
        "latencies_ms": {target.name: target.latencies for target in targets},
    }


async def small_rooms(options) -> dict[str, object]:
    """Many rooms of a few members, every room busy at once."""
    async with running_app(options.backend, options.broker, options.rooms, options.members) as app:
        deliveries = Deliveries()
        requests = [
            app.stream_request(room_id, member)
            for room_id, members in app.rooms.items()
            for member in members
        ]
        subscribers = await subscribe_all(
            "app streams", app.server.port, requests, deliveries.on_event
        )
        await warm_up(app)
        await quiet(deliveries, "app")
        deliveries.start_run()
        rng = random.Random(0)
        per_room = max(1, round(options.rate * options.seconds))
        schedule = sorted(
            (phase + n / options.rate, (room_id, n * len(app.rooms) + r))
            for r, room_id in enumerate(app.rooms)
            for phase in [rng.random() / options.rate]
            for n in range(per_room)
        )
        posters = Posters(app.server.port, options.connections)
        statuses: list[int] = []

        def send(item: object, intended: float) -> None:
            room_id, index = item
            deliveries.intended[(deliveries.run, index)] = intended
            raw = app.post_request(room_id, app.rooms[room_id][0], deliveries.body(index))
            posters.send(raw, intended, lambda status, _elapsed: statuses.append(status))

        expected = len(schedule) * options.members
        with measuring():
            cpu_before = app.server.cpu_seconds()
            await send_at_rate(schedule, send, "posting")
            await deliveries.drained(expected, within=10)
            cpu = app.server.cpu_seconds() - cpu_before
        await posters.close()
        for subscriber in subscribers:
            subscriber.close()
    return {
        "app": {
            **latency_summary(deliveries.latencies),
            **read_summary(deliveries.read_latencies),
            "delivered": deliveries.received,
            "expected": expected,
            "posts_failed": sum(status != 200 for status in statuses),
            "server_cpu_s": cpu,
        },
        "latencies_ms": {"app": deliveries.latencies},
    }


async def warm_up(app: App) -> None:
    """A post to each room first: templates compiled, connections pooled, caches filled."""
    connection = Connection(app.server.port)
    try:
        for room_id, members in app.rooms.items():
            await connection.request(app.post_request(room_id, members[0], "warming up"))
    finally:
        connection.close()


@dataclass
class PostSteps:
    """One app's search for its highest sustained post rate."""

    app: App
    posters: Posters
    rate: float
    max_steps: int  # to find the boundary
    bisections: int  # steps that halve the gap once it is found
    steps: list[dict[str, object]] = field(default_factory=list)
    done: bool = False

    def next_rate(self, step_factor: float) -> None:
        """Up while the rate holds, down while it does not; at the boundary, the
        geometric middle of the highest rate that held and the lowest above it that did
        not, `bisections` times: the factor between steps alone would hide a difference
        smaller than itself (two servers that both hold 225/s and fail at 338/s)."""
        if len({step["sustained"] for step in self.steps}) < 2:
            self.rate *= step_factor if self.steps[-1]["sustained"] else 1 / step_factor
            self.done = len(self.steps) >= self.max_steps
            return
        held = max(step["offered_per_s"] for step in self.steps if step["sustained"])
        above = [
            step["offered_per_s"]
            for step in self.steps
            if not step["sustained"] and step["offered_per_s"] > held
        ]
        if self.bisections <= 0 or not above:
            self.done = True
            return
        self.bisections -= 1
        self.rate = math.sqrt(held * min(above))


async def post_step(search: PostSteps, options, step: int) -> dict[str, object]:
    app, rate = search.app, search.rate
    rooms = list(app.rooms.items())
    latencies: list[float] = []
    failed = 0

    def done(status: int, elapsed: float) -> None:
        nonlocal failed
        if status == 200:
            latencies.append(elapsed * 1000)
        else:
            failed += 1

    def send(index: object, intended: float) -> None:
        room_id, members = rooms[index % len(rooms)]
        body = f"bench {step} {index} end"
        search.posters.send(app.post_request(room_id, members[0], body), intended, done)

    count = max(1, round(rate * options.seconds))
    with measuring():
        cpu_before, driver_before = app.server.cpu_seconds(), time.process_time()
        app.shared.start()
        started = time.perf_counter()
        await send_at_rate(
            [(n / rate, n) for n in range(count)], send, f"{rate:,.0f} posts/s offered"
        )
        deadline = time.perf_counter() + 10
        while len(latencies) + failed < count and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        shared = await app.shared.stop()
    summary = {
        "offered_per_s": rate,
        "achieved_per_s": len(latencies) / elapsed,
        **latency_summary(latencies),
        "failed": count - len(latencies),
        "answered": len(latencies),
        "server_cpu_s": app.server.cpu_seconds() - cpu_before,
        "postgres_cpu_s": shared["postgres"],
        "redis_cpu_s": shared["redis"],
        "driver_cpu_s": time.process_time() - driver_before - app.shared.own_cpu,
    }
    summary["sustained"] = summary["failed"] == 0 and summary["p99_ms"] < options.p99_limit_ms
    log(
        f"  p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
        f"{'' if summary['sustained'] else ' (not sustained)'}"
    )
    return summary


async def posts(options) -> dict[str, object]:
    """Offered post rates stepping up from --start-rate while p99 stays under the limit
    with no failures (or down, while it does not), until the boundary is found, then
    halving the gap --bisect times; with several --workers counts, their steps take
    turns."""
    async with contextlib.AsyncExitStack() as stack:
        searches: dict[str, PostSteps] = {}
        for workers in options.workers:
            app = await stack.enter_async_context(
                running_app(options.backend, options.broker, options.rooms, 1, workers)
            )
            await warm_up(app)
            posters = Posters(app.server.port, options.connections)
            stack.push_async_callback(posters.close)
            searches[report.app_name(workers)] = PostSteps(
                app, posters, options.start_rate, options.steps, options.bisect
            )
        step = 0
        while not all(search.done for search in searches.values()):
            step += 1
            for name, search in searches.items():
                if search.done:
                    continue
                log(f"{name}:")
                summary = await post_step(search, options, step)
                search.steps.append(summary)
                search.next_rate(options.step_factor)
    targets = {}
    for name, search in searches.items():
        sustained = [step["offered_per_s"] for step in search.steps if step["sustained"]]
        targets[name] = {"max_sustained_posts_per_s": max(sustained, default=0.0)}
        targets[name]["steps"] = search.steps
    return {"targets": targets, "p99_limit_ms": options.p99_limit_ms}


async def idle(options) -> dict[str, object]:
    """N streams that receive nothing: server memory per open stream."""
    rooms = max(1, options.streams // options.members)
    async with (
        running_app(options.backend, options.broker, rooms, options.members) as app,
        running_baselines() as running,
    ):
        results: dict[str, object] = {"socketio": SOCKETIO_MISSING}
        app_requests = [
            app.stream_request(room_id, member)
            for room_id, members in app.rooms.items()
            for member in members
        ][: options.streams]
        targets = [("app", app.server, app_requests, EventStream)] + [
            (baseline.name, server, [baseline.stream_request] * options.streams, baseline.body)
            for baseline, server in running
        ]
        for target, server, requests, body in targets:
            # One stream opened and closed first, so lazily built state is in "before".
            warm = await subscribe(server.port, requests[-1], lambda *_: None, body)
            warm.close()
            await asyncio.sleep(0.5)
            before = server.rss_kib()
            errors = 0
            try:
                subscribers = await subscribe_all(
                    f"{target} streams", server.port, requests, lambda *_: None, body
                )
            except (OSError, RuntimeError, TimeoutError) as exc:
                log(f"{target}: {exc!r}")
                subscribers, errors = [], 1
            await asyncio.sleep(1)
            after = server.rss_kib()
            dropped = sum(subscriber.closed for subscriber in subscribers)
            results[target] = {
                "streams": len(subscribers) - dropped,
                "errors": errors + dropped,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_stream": (after - before) / max(1, len(subscribers)),
            }
            for subscriber in subscribers:
                subscriber.close()
    return results


SCENARIOS = {
    "fanout": Scenario(
        "one room, S subscribers, R msgs/s: latency, deliveries per CPU-s",
        fanout,
        report.baselines_table,
        report.latency_plot,
    ),
    "small-rooms": Scenario(
        "100 rooms x 10 members at 20 msgs/s each: latency",
        small_rooms,
        report.baselines_table,
        report.latency_plot,
    ),
    "posts": Scenario(
        "max sustained posts/s on one worker with p99 under 50 ms",
        posts,
        report.posts_table,
        report.posts_plot,
    ),
    "idle": Scenario(
        "N idle streams: server memory per stream", idle, report.idle_table, report.idle_plot
    ),
}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("fanout, small-rooms, posts, idle")
    group.add_argument("--subscribers", type=int, default=1000, help="fanout")
    group.add_argument("--rate", type=float, help="msgs/s (fanout 5, small-rooms 20 per room)")
    group.add_argument("--rooms", type=int, help="small-rooms 100, posts 10")
    group.add_argument("--members", type=int, default=10, help="small-rooms, idle")
    group.add_argument("--streams", type=int, default=5000, help="idle")
    group.add_argument("--connections", type=int, default=64, help="posting connections")
    group.add_argument("--start-rate", type=float, default=100.0, help="posts")
    group.add_argument("--step-factor", type=float, default=1.5, help="posts")
    group.add_argument("--steps", type=int, default=12, help="posts: at most")
    group.add_argument("--p99-limit-ms", type=float, default=50.0, help="posts")


def defaults(name: str, options) -> None:
    if options.rate is None:
        options.rate = 20.0 if name == "small-rooms" else 5.0
    if options.rooms is None:
        options.rooms = 10 if name == "posts" else 100
