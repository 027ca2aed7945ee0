"""`chat bench http`: Campfire's HTTP workload (issue 25), one row at a time.

A fresh database seeded like `chat seed --rooms 50 --users 500 --messages 200000`, a
direct conversation of 60 messages, and `chat serve` signed in as user00001. Each row is
one request repeated by Debian's wrk (`-t1 -c16`: 16 keep-alive clients on one thread)
with bench/wrk/check.lua, which checks every response: its status, and the message ids
(or room ids) the page must hold and must not. The server is pinned to core 0, wrk to
core 1 (it inherits the driver's pinning); their CPU shares are printed, so a row where
wrk, not the server, sets the pace shows. Each row is warmed up first; then the rounds
take turns, row by row and (with several --workers counts) server by server. Posts go
to a room of their own with unique bodies, and afterwards SQL must hold every answered
post exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench import report
from bench.driver import Connection, log
from bench.protocol import http_request
from bench.servers import App, AppDatabase, Member, Server, app_database, sign_in

CHECK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "check.lua"
ROWS = ("room", "messages", "sidebar", "search", "post", "direct")
DIRECT_MESSAGES = 60
POST_ROOM = 2  # the posts' own room, so the pages the other rows read stay the same
POST_MARK = "bench-http"


@dataclass
class Row:
    """One request of the workload and what each of its answers must hold."""

    name: str
    path: str
    present: list[str]
    absent: list[str] = field(default_factory=list)
    method: str = "GET"


def message_ids(*seqs: int) -> list[str]:
    return [f'id="message-{seq}"' for seq in seqs if seq > 0]


def page_rows(name: str, path: str, newest: int, page: int) -> Row:
    """A page of the `page` messages up to `newest`: its first and last, not the one
    before or after."""
    oldest = max(1, newest - page + 1)
    return Row(name, path, message_ids(newest, oldest), message_ids(newest + 1, oldest - 1))


async def seed_and_sign_in(db: AppDatabase, options) -> tuple[Member, int]:
    """The seeded history, a session for user00001, and its direct conversation with
    user00002 (the room's id; its messages are posted through the server later)."""
    from bench.seed import seed
    from chat.db import create_engine, create_sessionmaker
    from chat.models import Room, User

    await seed(
        db.url,
        rooms=options.seed_rooms,
        users=options.seed_users,
        messages=options.seed_messages,
        rng_seed=0,
    )
    engine = create_engine(db.url)
    try:
        async with create_sessionmaker(engine)() as session:
            viewer = await User.by_username(session, "user00001")
            other = await User.by_username(session, "user00002")
            direct = await Room.direct_between(session, viewer, other, create=True)
            await session.commit()
            viewer_id, direct_id = viewer.id, direct.id
    finally:
        await engine.dispose()
    (member,) = await sign_in(db.url, db.secret_key, [viewer_id])
    return member, direct_id


async def search_hits(db: AppDatabase, port: int, member: Member, query: str) -> list[str]:
    """The first results page of `query`, as permalinks, each checked in SQL to be a
    message holding the word: what every timed answer must list too."""
    from sqlalchemy import select

    from chat.db import create_engine
    from chat.models import Message

    connection = Connection(port)
    try:
        raw = http_request("GET", "/search?" + urlencode({"q": query}), cookies=member.cookies)
        status, body = await connection.exchange(raw)
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"search answered {status}")
    hits = re.findall(r"/rooms/(\d+)\?at=(\d+)#message-\d+", body.decode())
    if not hits:
        raise RuntimeError(f"search for {query!r} found nothing to check")
    engine = create_engine(db.url)
    try:
        async with engine.connect() as connection:
            for room_id, seq in hits:
                text = await connection.scalar(
                    select(Message.body).where(
                        Message.room_id == int(room_id), Message.seq == int(seq)
                    )
                )
                if text is None or query not in text.lower():
                    raise RuntimeError(f"search hit {room_id}/{seq} does not hold {query!r}")
    finally:
        await engine.dispose()
    return [f"/rooms/{room_id}?at={seq}#message-{seq}" for room_id, seq in hits]


async def rows(db: AppDatabase, server: Server, member: Member, direct_id: int, options):
    """The workload's rows, with the ids each page must show (from SQL)."""
    port, page = server.port, options.page_size
    connection = Connection(port)
    poster = App(db.backend, server)
    try:  # the direct conversation's messages, posted as its people would
        for n in range(DIRECT_MESSAGES):
            raw = poster.post_request(direct_id, member, f"direct message {n}")
            if (status := await connection.request(raw)) != 200:
                raise RuntimeError(f"posting to the direct conversation answered {status}")
    finally:
        connection.close()
    last = await db.last_seqs()
    room, before = 1, max(2, last[1] // 2)
    hits = await search_hits(db, port, member, options.query)
    newest = last[room]
    return [
        page_rows("room", f"/rooms/{room}", newest, page),
        page_rows("messages", f"/rooms/{room}/messages?before={before}", before - 1, page),
        Row("sidebar", "/", [f'data-room-id="{room_id}"' for room_id in (1, POST_ROOM)]),
        Row("search", "/search?" + urlencode({"q": options.query}), [hits[0], hits[-1]]),
        # An htmx post answers with a fresh composer; the message itself comes by stream.
        Row("post", f"/rooms/{POST_ROOM}/messages", ['<form id="composer"'], method="POST"),
        page_rows("direct", f"/rooms/{direct_id}", DIRECT_MESSAGES, page),
    ]


async def run_wrk(
    row: Row,
    port: int,
    member: Member,
    seconds: float,
    connections: int,
    post_prefix: str = "",
) -> dict[str, object]:
    """One wrk run of `row`; its figures, counts and CPU share."""
    import json
    import resource  # Unix only: asked here, not at import

    env = {
        **os.environ,
        "BENCH_METHOD": row.method,
        "BENCH_PATH": row.path,
        "BENCH_COOKIE": "; ".join(f"{key}={value}" for key, value in member.cookies.items()),
        "BENCH_CSRF": member.csrf_token,
        "BENCH_ORIGIN": f"http://127.0.0.1:{port}",
        "BENCH_PRESENT": "\n".join(row.present),
        "BENCH_ABSENT": "\n".join(row.absent),
    }
    if row.method == "POST":
        env["BENCH_POST_PREFIX"] = post_prefix
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *(shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"),
        *("--timeout", "10s", "-s", str(CHECK_SCRIPT), f"http://127.0.0.1:{port}"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode(errors="replace")
    found = re.search(r"^BENCH (\{.*\})$", text, re.M)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()[-2000:]}{text}")

    figures = json.loads(found[1])
    first_bad = re.search(r"^BENCH-FIRST-BAD (.*)$", text, re.M)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    duration = figures["duration_us"] / 1e6
    return {
        "requests_per_s": figures["requests"] / duration,
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
        "requests": figures["requests"],
        "sent": figures["sent"],
        "answered": figures["answered"],
        "bad": figures["bad"] + figures["errors"],
        "first_bad": first_bad[1] if first_bad and first_bad[1] else None,
        "wrk_cpu_share": wrk_cpu / wall,
        "wrk_cpu_s": wrk_cpu,
    }


async def posts_stored(db: AppDatabase) -> dict[str, tuple[int, int]]:
    """Per run prefix: (messages stored, distinct bodies)."""
    from sqlalchemy import func, select

    from chat.db import create_engine
    from chat.models import Message

    prefix = func.substr(Message.body, 1, func.instr(Message.body, " ") - 1)
    if db.backend == "postgres":
        prefix = func.split_part(Message.body, " ", 1)
    engine = create_engine(db.url)
    try:
        async with engine.connect() as connection:
            found = await connection.execute(
                select(prefix, func.count(), func.count(func.distinct(Message.body)))
                .where(Message.body.like(f"{POST_MARK}-%"))
                .group_by(prefix)
            )
            return {name: (stored, distinct) for name, stored, distinct in found.all()}
    finally:
        await engine.dispose()


def check_posts(runs: list[dict[str, object]], stored: dict[str, tuple[int, int]]) -> list[str]:
    """Every answered post stored once: no body twice, none answered and missing; a
    post wrk sent but stopped waiting for at the end of its run may be stored too."""
    problems = []
    for run in runs:
        count, distinct = stored.get(run["prefix"], (0, 0))
        if distinct != count:
            problems.append(f"{run['prefix']}: {count - distinct} posts stored twice")
        if not run["answered"] <= count <= run["sent"]:
            problems.append(
                f"{run['prefix']}: {count} posts stored, {run['answered']} answered, "
                f"{run['sent']} sent"
            )
    return problems


def summarize(rounds: list[dict[str, object]]) -> dict[str, object]:
    """A row's figures: the median of its rounds, and each round."""
    middle = {
        key: statistics.median(round_[key] for round_ in rounds)
        for key in (
            "requests_per_s",
            "requests_per_server_cpu_s",
            "p50_ms",
            "p99_ms",
            "wrk_cpu_share",
            "server_cpu_share",
        )
    }
    # CPU per request of each process, over all the rounds.
    requests = max(1, sum(round_["requests"] for round_ in rounds))
    cpu = {
        name: sum(round_.get(key, 0.0) for round_ in rounds) / requests
        for name, key in (
            ("server", "server_cpu_s"),
            ("postgres", "postgres_cpu_s"),
            ("redis", "redis_cpu_s"),
            ("driver", "wrk_cpu_s"),
        )
    }
    return {
        **middle,
        "cpu_s_per_request": cpu,
        "bad": sum(round_["bad"] for round_ in rounds),
        "rounds": rounds,
    }


async def measure(options) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise SystemExit("chat bench http: needs Debian's wrk (`make bench` installs it)")
    async with app_database(options.backend, options.broker) as db:
        member, direct_id = await seed_and_sign_in(db, options)
        servers: dict[str, Server] = {}
        try:
            for workers in options.workers:
                servers[report.app_name(workers)] = await db.start(
                    report.app_name(workers), workers
                )
            first = next(iter(servers.values()))
            workload = [
                row for row in await rows(db, first, member, direct_id, options)
                if row.name in options.rows
            ]  # fmt: skip
            results = await take_turns(db, servers, workload, member, options)
        finally:
            for server in servers.values():
                server.stop()
    return results


async def take_turns(db, servers, workload, member, options) -> dict[str, object]:
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    post_runs: list[dict[str, object]] = []
    for name, server in servers.items():
        for row in workload:
            log(f"warming up {name}: {row.name}")
            warm = await run_wrk(
                row, server.port, member, options.warmup, options.connections_http,
                f"{POST_MARK}-warm-{name}",
            )  # fmt: skip
            if row.method == "POST":
                post_runs.append({**warm, "prefix": f"{POST_MARK}-warm-{name}"})
            if warm["bad"]:
                log(f"  {warm['bad']} bad answers, the first: {warm['first_bad']}")
    for number in range(1, options.rounds + 1):
        for row in workload:
            for name, server in servers.items():
                prefix = f"{POST_MARK}-r{number}-{name}"
                shared = db.shared_cpu()
                shared.start()
                cpu_before, started = server.cpu_seconds(), time.perf_counter()
                figures = await run_wrk(
                    row, server.port, member, options.seconds, options.connections_http, prefix
                )
                figures["server_cpu_s"] = server.cpu_seconds() - cpu_before
                figures["server_cpu_share"] = figures["server_cpu_s"] / (
                    time.perf_counter() - started
                )
                used = await shared.stop()
                figures["postgres_cpu_s"], figures["redis_cpu_s"] = used["postgres"], used["redis"]
                # What a core of the server's did: robust to a machine shared with
                # other work, where the server gets only part of its core.
                figures["requests_per_server_cpu_s"] = figures["requests_per_s"] / max(
                    figures["server_cpu_share"], 1e-9
                )
                runs.setdefault((name, row.name), []).append(figures)
                if row.method == "POST":
                    post_runs.append({**figures, "prefix": prefix})
                log(
                    f"round {number}/{options.rounds} {name} {row.name}: "
                    f"{figures['requests_per_s']:,.0f}/s "
                    f"({figures['requests_per_server_cpu_s']:,.0f} per server CPU-s), "
                    f"p99 {figures['p99_ms']:.1f} ms, "
                    f"wrk CPU {figures['wrk_cpu_share']:.0%}, bad {figures['bad']}"
                )
    targets = {
        name: {row.name: summarize(runs[(name, row.name)]) for row in workload} for name in servers
    }
    problems = [
        f"{name} {row}: {figures['bad']} bad answers; the first: "
        + next((r["first_bad"] for r in figures["rounds"] if r["first_bad"]), "(errors)")
        for name, by_row in targets.items()
        for row, figures in by_row.items()
        if figures["bad"]
    ]
    if any(row.method == "POST" for row in workload):
        try:
            problems += check_posts(post_runs, await posts_stored(db))
        except Exception as exc:  # the figures are kept; the check is reported undone
            problems.append(f"posts could not be counted: {exc!r}"[:500])
    return {"targets": targets, "rows": [row.name for row in workload], "problems": problems}


def table(result: dict[str, object]):
    targets = result["targets"]
    names = list(targets)
    yield f"{'':10}" + "".join(
        f" | {name:>8} {'/CPU-s':>7} {'p50 ms':>7} {'p99 ms':>7} {'wrk':>5} {'server':>6}"
        for name in names
    )
    for row in result["rows"]:
        line = f"{row:10}"
        for name in names:
            figures = targets[name][row]
            line += (
                f" | {figures['requests_per_s']:8,.0f} "
                f"{figures['requests_per_server_cpu_s']:7,.0f} {figures['p50_ms']:7.2f} "
                f"{figures['p99_ms']:7.2f} {figures['wrk_cpu_share']:5.0%} "
                f"{figures['server_cpu_share']:6.0%}"
            )
        yield line
    yield (
        "requests/s and latencies: the median of the rounds; /CPU-s: requests per second of"
        " the server's CPU; wrk, server: CPU share of a core"
    )
    yield "CPU µs per request: server / PostgreSQL / Redis / wrk"
    for row in result["rows"]:
        yield f"{row:10}" + "".join(
            f" | {name:>8} "
            + " / ".join(
                f"{value * 1e6:,.0f}" for value in targets[name][row]["cpu_s_per_request"].values()
            )
            for name in names
        )
    for name in names[1:]:
        base, other = targets[names[0]], targets[name]
        ratios = ", ".join(
            f"{row} {other[row]['requests_per_s'] / base[row]['requests_per_s']:.2f}x"
            for row in result["rows"]
        )
        yield f"{name} / {names[0]}: {ratios}"
        bounds = ", ".join(
            f"{row} {bound:.2f}x"
            for row in result["rows"]
            for bound in [
                report.two_core_bound(
                    base[row]["cpu_s_per_request"], other[row]["cpu_s_per_request"]
                )
            ]
        )
        yield f"{name} / {names[0]} at most, on 2 cores at these CPU costs: {bounds}"
    for problem in result["problems"]:
        yield f"PROBLEM: {problem}"


def plot(result: dict[str, object], axes) -> None:
    rows, targets = result["rows"], result["targets"]
    width = 0.8 / len(targets)
    for n, (name, by_row) in enumerate(targets.items()):
        axes.bar(
            [index + n * width for index in range(len(rows))],
            [by_row[row]["requests_per_s"] for row in rows],
            width,
            label=name,
        )
    axes.set_xticks([index + width * (len(targets) - 1) / 2 for index in range(len(rows))], rows)
    axes.set_ylabel("requests/s (16 keep-alive clients)")
    axes.legend()


SCENARIO = report.Scenario(
    "Campfire's HTTP workload with wrk: requests/s and p50/p99 per page", measure, table, plot
)


def add_arguments(parser) -> None:
    group = parser.add_argument_group("http")
    group.add_argument("--seed-rooms", type=int, default=50, help="http: chat seed --rooms")
    group.add_argument("--seed-users", type=int, default=500, help="http: chat seed --users")
    group.add_argument(
        "--seed-messages", type=int, default=200_000, help="http: chat seed --messages"
    )
    group.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="http: seconds per row first (whole seconds, as for wrk)",
    )
    group.add_argument("--clients", dest="connections_http", type=int, default=16, help="http")
    group.add_argument("--query", default="build", help="http: the search row's word")
    group.add_argument("--page-size", type=int, default=50, help="http: messages a page shows")
    group.add_argument(
        "--rows", nargs="+", choices=ROWS, default=list(ROWS), help="http: which rows"
    )
