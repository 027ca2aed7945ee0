"""`chat bench capacity`: how many people one box holds (issue 25 section 3).

N simulated people in 50 rooms of mixed sizes (sizes fall off as 1/rank^0.8: a few
large rooms, many small), each in one room with two streams open, as a browser on the
room page has: the rooms-page stream (`GET /events`) and the room's (`GET
/rooms/ID/events?after=SEQ`). Over the window, each person posts on average once a
minute (Poisson), with a typing ping 1-3 s before (one per 2 s at most, as live.js
sends); a person whose tab is visible (--visible of them) marks the room read 1 s after
the last message of someone else it received (or 5 s after the first one not yet
marked, in a room that never pauses), if it had not marked that one yet, as live.js
does; 5 % of people reconnect per minute (both streams, resuming after the last
message seen); and now and then someone opens a search or an older-history page.

Every room stream must see its room's seqs one by one (nothing skipped or doubled,
across reconnects), every request must succeed, and every post must reach every
member by the end. A step passes with p99 post→receive ≤ --receive-p99-ms (timed by
the kernel's receive timestamps, from the post's intended send time), p99 page ≤
--page-p99-ms and no errors. N doubles from --people while steps pass (or halves while
they fail), then the gap is halved --bisect times: the largest passing N is the
capacity. Each step is a fresh server and database; server memory per person is its
RSS growth while everyone connects.

The driver holds each stream as a raw socket parsed incrementally (bench/driver.py),
so one core keeps 10,000+ people; its CPU share and read-vs-arrival lag are reported.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from bench import report
from bench.driver import Posters, Subscriber, log, measuring, send_at_rate, subscribe_all
from bench.protocol import HOST, http_request
from bench.servers import App, Member, app_database, populate_rooms
from bench.stats import latency_summary, percentile

ROOMS = 50
# What the driver finds in a room stream's raw bytes (chunk framing and all): the start
# of each message frame as chat.sse.encode writes it, with its cursor, and the marker
# in the body of the message that follows it.
MESSAGE_START = re.compile(rb"id: (\d+)(\.\d+)?\nevent: message\n")
MARKER = re.compile(rb"capacity (\d+) end")
SEARCH_WORDS = ("capacity", "end", "release", "deploy")
MIN_PEOPLE = 4
TYPING_EVERY = 2.0  # seconds between one person's typing pings, at least (live.js)
READ_AFTER_QUIET = 1.0  # live.js marks read this long after the last message...
READ_AT_MOST_AFTER = 5.0  # ...or this long after the first one not yet marked


def room_sizes(people: int, rooms: int = ROOMS) -> list[int]:
    """`people` spread over `rooms` rooms (fewer for a small crowd, four a room at
    least on average): two in each, the rest as 1/rank^0.8."""
    rooms = max(1, min(rooms, people // 4))
    weights = [1 / rank**0.8 for rank in range(1, rooms + 1)]
    rest = people - 2 * rooms
    sizes = [2 + math.floor(rest * weight / sum(weights)) for weight in weights]
    sizes[0] += people - sum(sizes)
    return sizes


@dataclass
class Person:
    room_id: int
    member: Member
    visible: bool
    last_seq: int = 0
    read_sent: int = 0
    room_stream: Subscriber | None = None
    user_stream: Subscriber | None = None
    read_timer: asyncio.TimerHandle | None = None
    read_due: float = 0.0  # at the latest (the first message not yet marked + 5 s)
    quiet_until: float = 0.0  # or once nothing more came until then
    # What each stream's last read left after its last whole frame.
    room_rest: bytes = b""
    user_rest: bytes = b""
    reconnecting: bool = False
    typed_at: float = -math.inf


@dataclass
class Tally:
    """What a step measured."""

    intended: dict[int, float] = field(default_factory=dict)  # post index -> send time
    authors: dict[int, Person] = field(default_factory=dict)  # post index -> its author
    receive_ms: list[float] = field(default_factory=list)
    read_lag_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    user_events: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Crowd:
    """The people of one step, their streams and what they do."""

    def __init__(self, app: App, options, rng: random.Random) -> None:
        self.app, self.options, self.rng = app, options, rng
        self.port = app.server.port
        self.tally = Tally()
        self.people = [
            Person(room_id, member, rng.random() < options.visible)
            for room_id, members in app.rooms.items()
            for member in members
        ]
        self.posters = Posters(self.port, options.connections)

    # --- streams ---------------------------------------------------------------------

    def room_request(self, person: Person) -> bytes:
        return http_request(
            "GET",
            f"/rooms/{person.room_id}/events?after={person.last_seq}",
            cookies=person.member.cookies,
            Accept="text/event-stream",
        )

    def user_request(self, person: Person) -> bytes:
        return http_request(
            "GET", "/events", cookies=person.member.cookies, Accept="text/event-stream"
        )

    def on_room_bytes(self, person: Person, data: bytes, arrived: float, read: float) -> None:
        """A room stream's bytes: each whole message frame in them, in order. Found with
        two regular expressions over the raw bytes rather than parsed event by event:
        the driver reads every delivery of 10,000 people's streams, and parsing them
        cost it more than a core."""
        buffer = person.room_rest + data if person.room_rest else data
        end = buffer.rfind(b"\n\n") + 2
        person.room_rest = buffer[end:] if end > 1 else buffer
        if end < 2:
            return
        starts = list(MESSAGE_START.finditer(buffer, 0, end))
        for number, start in enumerate(starts):
            frame_end = starts[number + 1].start() if number + 1 < len(starts) else end
            marker = MARKER.search(buffer, start.end(), frame_end)
            self.on_message(
                person,
                int(start[1]),
                start[2] is not None,
                int(marker[1]) if marker else None,
                arrived,
                read,
            )

    def on_message(
        self,
        person: Person,
        seq: int,
        is_change: bool,
        index: int | None,
        arrived: float,
        read: float,
    ) -> None:
        if seq <= person.last_seq:
            if not is_change:  # a change to an old message carries its own cursor
                self.tally.error("message seen twice")
            return
        if seq != person.last_seq + 1:
            self.tally.error("message skipped")
        person.last_seq = seq
        intended = self.tally.intended.get(index)
        if intended is not None and not person.reconnecting:
            self.tally.receive_ms.append((arrived - intended) * 1000)
            self.tally.read_lag_ms.append((read - arrived) * 1000)
        # live.js marks read after messages of others only (posting marks it read): 1 s
        # after the last one, or 5 s after the first one not yet marked if sooner. One
        # timer per person at a time, moved on when it fires early, not one per message.
        if person.visible and self.tally.authors.get(index) is not person:
            loop = asyncio.get_running_loop()
            now = loop.time()
            person.quiet_until = now + READ_AFTER_QUIET
            if person.read_timer is None:
                person.read_due = now + READ_AT_MOST_AFTER
                person.read_timer = loop.call_at(person.quiet_until, self.read_check, person)

    def read_check(self, person: Person) -> None:
        loop = asyncio.get_running_loop()
        due = min(person.quiet_until, person.read_due)
        if loop.time() < due:
            person.read_timer = loop.call_at(due, self.read_check, person)
            return
        self.mark_read(person)

    def on_user_bytes(self, person: Person, data: bytes, _arrived: float, _read: float) -> None:
        buffer = person.user_rest + data if person.user_rest else data
        end = buffer.rfind(b"\n\n") + 2
        person.user_rest = buffer[end:] if end > 1 else buffer
        if end > 1:
            self.tally.user_events += buffer.count(b"\nevent: ", 0, end)

    async def connect(self, people: list[Person], label: str) -> None:
        for person in people:
            person.room_rest = person.user_rest = b""
        rooms = await subscribe_all(
            label and f"{label} room streams",
            self.port,
            [self.room_request(person) for person in people],
            [functools.partial(self.on_room_bytes, person) for person in people],
            raw=True,
        )
        users = await subscribe_all(
            label and f"{label} rooms-page streams",
            self.port,
            [self.user_request(person) for person in people],
            [functools.partial(self.on_user_bytes, person) for person in people],
            raw=True,
        )
        for person, room, user in zip(people, rooms, users, strict=True):
            person.room_stream, person.user_stream = room, user

    async def reconnect(self, person: Person) -> None:
        if person.reconnecting:
            return
        person.reconnecting = True
        for stream in (person.room_stream, person.user_stream):
            stream.close()
        try:
            await self.connect([person], "")
        except (OSError, RuntimeError, TimeoutError):
            self.tally.error("reconnect failed")
        finally:
            person.reconnecting = False

    # --- requests --------------------------------------------------------------------

    def send(self, kind: str, raw: bytes, intended: float, expected: int) -> None:
        self.tally.requests[kind] = self.tally.requests.get(kind, 0) + 1

        def done(status: int, elapsed: float) -> None:
            if kind == "typing" and status == 429:  # two pings close together: not a fault
                self.tally.requests["typing throttled"] = (
                    self.tally.requests.get("typing throttled", 0) + 1
                )
            elif status != expected:
                self.tally.error(f"{kind} answered {status}")
            elif kind == "page":
                self.tally.page_ms.append(elapsed * 1000)
            elif kind == "post":
                self.tally.post_ms.append(elapsed * 1000)

        self.posters.send(raw, intended, done)

    def form(self, person: Person, path: str, fields: dict[str, str]) -> bytes:
        return http_request(
            "POST",
            path,
            cookies=person.member.cookies,
            body=urlencode(fields, quote_via=quote).encode(),
            Origin=f"http://{HOST}",
            Content_Type="application/x-www-form-urlencoded",
            X_CSRF_Token=person.member.csrf_token,
            HX_Request="true",
        )

    def mark_read(self, person: Person) -> None:
        person.read_timer = None
        if person.last_seq <= person.read_sent:
            return
        person.read_sent = person.last_seq
        raw = self.form(person, f"/rooms/{person.room_id}/read", {"seq": str(person.last_seq)})
        self.send("read", raw, time.perf_counter(), 204)

    def act(self, item: object, intended: float) -> None:
        kind, index, person = item
        room = f"/rooms/{person.room_id}"
        if kind == "typing":
            if intended - person.typed_at < TYPING_EVERY:
                return  # live.js sends one every 2 s at most
            person.typed_at = intended
            self.send("typing", self.form(person, f"{room}/typing", {}), intended, 204)
        elif kind == "post":
            self.tally.intended[index] = intended
            self.tally.authors[index] = person
            body = {"body": f"capacity {index} end"}
            self.send("post", self.form(person, f"{room}/messages", body), intended, 200)
        elif kind == "page":
            if self.rng.random() < 0.5:
                path = "/search?" + urlencode({"q": self.rng.choice(SEARCH_WORDS)})
            else:
                path = f"/rooms/{person.room_id}/messages?before={max(2, person.last_seq)}"
            raw = http_request("GET", path, cookies=person.member.cookies, HX_Request="true")
            self.send("page", raw, intended, 200)
        elif kind == "reconnect":
            asyncio.get_running_loop().create_task(self.reconnect(person))

    def schedule(self, seconds: float) -> list[tuple[float, object]]:
        """Every act of the window, at its time: Poisson arrivals for each kind."""
        rng, options, people = self.rng, self.options, self.people
        plan: list[tuple[float, object]] = []

        def arrivals(rate_per_s: float):
            moment = rng.expovariate(rate_per_s) if rate_per_s > 0 else math.inf
            while moment < seconds:
                yield moment
                moment += rng.expovariate(rate_per_s)

        count = len(people)
        for index, moment in enumerate(arrivals(count * options.posts_per_minute / 60)):
            person = rng.choice(people)
            plan.append((moment, ("post", index, person)))
            plan.append((max(0.0, moment - rng.uniform(1, 3)), ("typing", index, person)))
        for moment in arrivals(count * options.reconnects_per_minute / 60):
            plan.append((moment, ("reconnect", 0, rng.choice(people))))
        for moment in arrivals(count * options.pages_per_minute / 60):
            plan.append((moment, ("page", 0, rng.choice(people))))
        plan.sort(key=lambda entry: entry[0])
        return plan

    async def settled(self, posted: dict[int, int], within: float) -> int:
        """Waits until every room stream has its room's every message (`posted`: each
        room's newest seq); how many streams still lack some."""
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            behind = sum(person.last_seq < posted[person.room_id] for person in self.people)
            if not behind and not any(p.reconnecting for p in self.people):
                return 0
            await asyncio.sleep(0.2)
        return behind

    def close(self) -> None:
        for person in self.people:
            if person.read_timer is not None:
                person.read_timer.cancel()
            for stream in (person.room_stream, person.user_stream):
                if stream is not None:
                    stream.close()


async def quiet_server(server, below: float = 0.1, within: float = 300) -> bool:
    """Waits until the server's CPU share over a second is under `below`: the work of
    everyone connecting at once (their presence announced to their rooms, their counts
    read) is done, and the window measures the steady state, not the tail of that."""
    deadline = time.perf_counter() + within
    await asyncio.sleep(2)
    while time.perf_counter() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(1)
        if server.cpu_seconds() - before < below:
            return True
    return False


async def step(options, people: int) -> dict[str, object]:
    """One fresh server with `people` people: does it hold them within the limits?"""
    rng = random.Random(people)
    sizes = room_sizes(people)
    async with app_database(options.backend, options.broker) as db:
        population = await populate_rooms(db.url, db.secret_key, sizes)
        server = await db.start(workers=options.workers[0])
        crowd = None
        try:
            crowd = Crowd(App(db.backend, server, population), options, rng)
            await asyncio.sleep(1)
            rss_before = server.rss_kib()
            connecting = time.perf_counter()
            await crowd.connect(crowd.people, f"{people:,} people")
            settled = await quiet_server(server)
            connect_s = time.perf_counter() - connecting
            rss_after = server.rss_kib()
            plan = crowd.schedule(options.seconds)
            with measuring():
                cpu_before, driver_before = server.cpu_seconds(), time.process_time()
                started = time.perf_counter()
                await send_at_rate(plan, crowd.act, f"{people:,} people acting")
                await crowd.posters.drained(within=15)
                behind = await crowd.settled(await db.last_seqs(), within=15)
                wall = time.perf_counter() - started
                server_cpu = server.cpu_seconds() - cpu_before
                driver_share = (time.process_time() - driver_before) / wall
                # All the work the window's acts caused, however late a starved server
                # did it: the load is open-loop, so this does not depend on the machine's
                # other load, as the latencies do.
                await quiet_server(server, within=120)
                work_cpu = server.cpu_seconds() - cpu_before
            tally = crowd.tally
            if behind:
                tally.errors["streams missing messages at the end"] = behind
            closed = sum(
                stream.closed
                for person in crowd.people
                for stream in (person.room_stream, person.user_stream)
                if not person.reconnecting
            )
            if closed:
                tally.errors["streams closed by the server"] = closed
            if not settled:
                tally.errors["server still busy after everyone connected"] = 1
        finally:
            if crowd is not None:
                crowd.close()
                await crowd.posters.close()
            server.stop()
    receive, page = latency_summary(tally.receive_ms), latency_summary(tally.page_ms)
    passed = (
        receive["p99_ms"] <= options.receive_p99_ms
        and (not tally.page_ms or page["p99_ms"] <= options.page_p99_ms)
        and not tally.errors
    )
    log(
        f"{people:,} people: receive p99 {receive['p99_ms']:.1f} ms, page p99 "
        f"{page['p99_ms']:.1f} ms, errors {tally.errors or 0}: {'pass' if passed else 'FAIL'}"
    )
    return {
        "people": people,
        "rooms": sizes,
        "passed": passed,
        "receive": receive,
        "read_lag_p99_ms": percentile(tally.read_lag_ms, 0.99),
        "page": page,
        "post": latency_summary(tally.post_ms),
        "requests": tally.requests,
        "rooms_page_events": tally.user_events,
        "errors": tally.errors,
        "server_cpu_share": server_cpu / wall,
        "server_cores_needed": work_cpu / options.seconds,
        "driver_cpu_share": driver_share,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_person": (rss_after - rss_before) / people,
        "connect_s": connect_s,
    }


async def measure(options) -> dict[str, object]:
    steps = [await step(options, options.people)]
    # Double while it holds, or halve while it does not, until the result flips.
    factor = 2 if steps[0]["passed"] else 0.5
    people = round(options.people * factor)
    while MIN_PEOPLE <= people <= options.max_people:
        steps.append(await step(options, people))
        if steps[-1]["passed"] != steps[0]["passed"]:
            break
        people = round(people * factor)
    low = max((s["people"] for s in steps if s["passed"]), default=0)
    high = min((s["people"] for s in steps if not s["passed"] and s["people"] > low), default=0)
    for _ in range(options.bisect if high else 0):  # then halve the gap
        middle = (low + high) // 2
        if middle in (low, high) or middle < 2:
            break
        steps.append(await step(options, middle))
        low, high = (middle, high) if steps[-1]["passed"] else (low, middle)
    steps.sort(key=lambda s: s["people"])
    return {
        "capacity": low,
        "limits": {"receive_p99_ms": options.receive_p99_ms, "page_p99_ms": options.page_p99_ms},
        "steps": steps,
    }


def table(result: dict[str, object]):
    yield (
        f"{'people':>8} {'recv p50':>9} {'recv p99':>9} {'page p99':>9} {'post p99':>9} "
        f"{'KiB/person':>10} {'server':>7} {'cores':>6} {'driver':>7}  errors"
    )
    for s in result["steps"]:
        yield (
            f"{s['people']:8,} {s['receive']['p50_ms']:9.1f} {s['receive']['p99_ms']:9.1f} "
            f"{s['page']['p99_ms']:9.1f} {s['post']['p99_ms']:9.1f} {s['kib_per_person']:10.1f} "
            f"{s['server_cpu_share']:7.0%} {s['server_cores_needed']:6.2f} "
            f"{s['driver_cpu_share']:7.0%}  "
            f"{s['errors'] or '-'}{'' if s['passed'] else '  <- over a limit'}"
        )
    limits = result["limits"]
    yield (
        f"capacity: {result['capacity']:,} people (p99 post→receive ≤ "
        f"{limits['receive_p99_ms']:.0f} ms, p99 page ≤ {limits['page_p99_ms']:.0f} ms, no errors)"
    )


def plot(result: dict[str, object], axes) -> None:
    steps = result["steps"]
    people = [s["people"] for s in steps]
    axes.plot(people, [s["receive"]["p99_ms"] for s in steps], marker="o", label="receive p99")
    axes.plot(people, [s["page"]["p99_ms"] for s in steps], marker="o", label="page p99")
    axes.axhline(result["limits"]["receive_p99_ms"], linestyle="--", color="grey")
    axes.axhline(result["limits"]["page_p99_ms"], linestyle=":", color="grey")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("people (two streams each)")
    axes.set_ylabel("ms")
    axes.legend()


SCENARIO = report.Scenario(
    "N people in 50 rooms: the largest N within p99 receive/page limits", measure, table, plot
)


def add_arguments(parser) -> None:
    group = parser.add_argument_group("capacity")
    group.add_argument("--people", type=int, default=1000, help="capacity: the first step")
    group.add_argument("--max-people", type=int, default=64_000, help="capacity")
    group.add_argument("--bisect", type=int, default=2, help="capacity, posts: steps between")
    group.add_argument("--posts-per-minute", type=float, default=1.0, help="capacity: each")
    group.add_argument("--pages-per-minute", type=float, default=0.2, help="capacity: each")
    group.add_argument("--reconnects-per-minute", type=float, default=0.05, help="capacity")
    group.add_argument("--visible", type=float, default=0.2, help="capacity: tabs in view")
    group.add_argument("--receive-p99-ms", type=float, default=100.0, help="capacity")
    group.add_argument("--page-p99-ms", type=float, default=200.0, help="capacity")
