"""`chat bench`'s live-server scenarios: the SSE reading they rely on, and a tiny run of each."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sse_starlette import ServerSentEvent

from bench.driver import subscribe
from bench.protocol import ChunkedDecoder, Event, SocketIOStream, SSEParser
from chat import sse
from tests.support import ROOT


def parse_in_pieces(stream: bytes, size: int) -> list[Event]:
    parser = SSEParser()
    return [
        event for n in range(0, len(stream), size) for event in parser.feed(stream[n : n + size])
    ]


@pytest.mark.parametrize("size", [1, 2, 7, 4096])
def test_encoded_frame_parses_as_sse_with_its_id_and_every_data_line(size: int) -> None:
    html = '<article id="message-7">\n  <p>first\r\nsecond\rthird</p>\n</article>'
    stream = sse.RETRY_FRAME + sse.encode("message", html, id=7) + b": ping\r\n\r\n"

    assert parse_in_pieces(stream, size) == [
        Event("message", '<article id="message-7">\n  <p>first\nsecond\nthird</p>\n</article>', "7")
    ]


def test_frames_of_the_baseline_parse_like_the_apps() -> None:
    frame = ServerSentEvent(data="one\ntwo", id="3", event="message").encode()

    assert frame.endswith(b"\r\n\r\n")  # sse-starlette's CRLF line ends
    assert parse_in_pieces(frame + frame, 5) == [Event("message", "one\ntwo", "3")] * 2


def test_a_chunked_body_is_reassembled_across_reads() -> None:
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    decoder = ChunkedDecoder()

    assert b"".join(decoder.feed(body[n : n + 3]) for n in range(0, len(body), 3)) == (
        b"hello, world"
    )
    assert decoder.ended


async def test_a_subscriber_times_an_event_by_its_arrival_not_by_when_it_is_read() -> None:
    """The driver reads a thousand subscribers one after another: an event it reads late
    still counts from when its bytes reached the socket (the kernel's timestamp)."""
    seen: list[tuple[Event, float, float]] = []
    written: list[float] = []
    served, taken = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        written.append(time.perf_counter())
        writer.write(sse.encode("message", "hello", id=sse.Cursor(1)))
        await writer.drain()
        time.sleep(0.2)  # noqa: ASYNC251 (the reading process is busy: the bytes wait)
        # Open until the event is read, as a stream stays: a read that also takes the
        # close is timed by the close, the last of what it took.
        await taken.wait()
        writer.close()
        await writer.wait_closed()
        served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    subscriber = await subscribe(port, b"GET / HTTP/1.1\r\n\r\n", lambda *event: seen.append(event))
    async with asyncio.timeout(5):
        while not seen:  # noqa: ASYNC110 (the subscriber calls back from its reader)
            await asyncio.sleep(0.01)
        taken.set()
        await served.wait()
    subscriber.close()
    server.close()
    await server.wait_closed()
    (event, arrived, read) = seen[0]
    assert event == Event("message", "hello", "1")
    assert read - written[0] >= 0.2
    assert abs(arrived - written[0]) < 0.02


def unmasked(frame: bytes) -> tuple[int, bytes]:
    """A client's (masked, short) WebSocket frame: its opcode and payload."""
    assert frame[1] & 0x80
    length, mask = frame[1] & 0x7F, frame[2:6]
    return frame[0] & 0x0F, bytes(b ^ mask[n % 4] for n, b in enumerate(frame[6 : 6 + length]))


def test_a_socketio_stream_joins_answers_pings_and_reads_events_across_reads() -> None:
    html = "<article>" + "x" * 300 + "</article>"  # a frame over 125 bytes: 16-bit length
    packets = [
        (0x1, b'0{"sid":"abc","pingInterval":25000,"pingTimeout":20000}'),
        (0x1, b'40{"sid":"def"}'),
        (0x9, b"ka"),  # the WebSocket's own ping
        (0x1, b"2"),  # Engine.IO's
        (0x1, b"42" + json.dumps(["message", html]).encode()),
    ]
    stream = b""
    for opcode, payload in packets:
        size = len(payload)
        length = bytes([size]) if size < 126 else bytes([126]) + size.to_bytes(2)
        stream += bytes([0x80 | opcode]) + length + payload
    body, events_seen, answers = SocketIOStream(b""), [], b""
    for n in range(0, len(stream), 7):
        events_seen_now, answer = body.feed(stream[n : n + 7])
        events_seen += events_seen_now
        answers += answer
    assert body.ready
    assert events_seen == [Event("message", html)]
    frames = []
    while answers:
        frames.append(unmasked(answers))
        answers = answers[6 + (answers[1] & 0x7F) :]
    assert frames == [(0x1, b"40"), (0xA, b"ka"), (0x1, b"3")]


def run_bench(tmp_path: Path, scenario: str, *options: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "chat", "bench", scenario, *options, "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result_file,) = tmp_path.glob(f"{scenario}-*.json")
    assert result_file.with_suffix(".png").stat().st_size > 0
    return json.loads(result_file.read_text())


def test_fanout_delivers_every_message_to_every_subscriber_of_app_and_baselines(
    tmp_path: Path,
) -> None:
    result = run_bench(tmp_path, "fanout", "--subscribers", "20", "--seconds", "1", "--rounds", "1")

    for target in ("app", "baseline", "socketio"):
        figures = result[target]
        assert figures["delivered"] == figures["expected"] == 20 * 5
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert "deliveries_per_cpu_s" in figures
    # A toy round may take the server less than one clock tick of CPU (/proc counts in
    # hundredths of a second): then the ratio is NaN. Counting is checked on its own below.
    if result["app"]["server_cpu_s"] > 0:
        assert result["app"]["deliveries_per_cpu_s"] > 0


def test_a_servers_cpu_counts_the_processes_it_started(tmp_path: Path) -> None:
    from bench.servers import Server

    burn = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(range(30_000_000))'])"
    )
    server = Server("burner", [sys.executable, "-c", burn], env={})
    server.process = subprocess.Popen(
        [sys.executable, "-c", burn + "; input()"], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while server.cpu_seconds() < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.cpu_seconds() >= 0.2  # mostly the grandchild's, counted while it ran
    finally:
        server.process.kill()
        server.process.wait()


def test_small_rooms_delivers_every_message_to_each_rooms_members(tmp_path: Path) -> None:
    result = run_bench(
        tmp_path, "small-rooms", "--rooms", "3", "--members", "3", "--rate", "5", "--seconds", "2"
    )

    app = result["app"]
    assert app["delivered"] == app["expected"] == 3 * 10 * 3
    assert app["posts_failed"] == 0
    assert 0 < app["p50_ms"] <= app["p99_ms"]


def test_posts_steps_up_the_offered_rate(tmp_path: Path) -> None:
    result = run_bench(
        tmp_path, "posts", "--start-rate", "10", "--step-factor", "2", "--steps", "2",
        "--seconds", "1", "--p99-limit-ms", "10000",
    )  # fmt: skip

    steps = result["targets"]["app"]["steps"]
    assert [step["offered_per_s"] for step in steps] == [10, 20]
    assert all(step["failed"] == 0 and step["p50_ms"] > 0 for step in steps)
    assert result["targets"]["app"]["max_sustained_posts_per_s"] == 20


def test_idle_measures_memory_per_stream_on_app_and_baselines(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "idle", "--streams", "30", "--members", "10")

    for target in ("app", "baseline", "socketio"):
        assert result[target]["streams"] == 30
        assert result[target]["errors"] == 0
        assert not math.isnan(result[target]["kib_per_stream"])


def test_seed_then_history_and_search_report_every_measurement(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'seeded.db'}",
        "CHAT_MEDIA_DIR": str(tmp_path / "media"),
    }

    def chat(*arguments: str) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "chat", *arguments],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    chat("db", "upgrade")
    chat("seed", "--rooms", "3", "--users", "5", "--messages", "400")
    history = chat("bench", "history", "--requests", "3")
    search = chat("bench", "search", "--requests", "2")

    rows = {}
    for line in history.splitlines()[1:] + search.splitlines()[1:]:  # under a header each
        label, count, *milliseconds = line.rsplit(maxsplit=5)
        rows[label.strip()] = (int(count), [float(value) for value in milliseconds])
    for label in ("room page", "permalink", "permalink, again", "older fragment"):
        assert rows[label][0] == 3
    for label in ("common word", "phrase", "from + word", "in + word", "has:link + word"):
        assert rows[label][0] == 2
    assert all(0 < p50 <= p95 <= p99 <= top for _, (p50, p95, p99, top) in rows.values())

    cost = chat("bench", "cost", "--requests", "16", "--rounds", "1").splitlines()
    costs = {line.split()[0]: line.split()[1:] for line in cost[1:-1]}
    assert list(costs) == ["room", "messages", "sidebar", "search", "post"]
    for fast, plain, ratio, bad in costs.values():
        assert float(fast) > 0 and float(plain) > 0 and ratio.endswith("x") and bad == "0"


def test_the_cpu_of_a_runs_postgresql_backends_and_of_its_own_redis_is_counted(
    postgres_url: str,
) -> None:
    import asyncpg
    import redis

    from bench.servers import redis_server
    from bench.shared_cpu import SharedCpu

    async def burn(redis_url: str, redis_pid: int) -> dict[str, float]:
        shared = SharedCpu(postgres_url.rsplit("/", 1)[1], redis_pid)
        shared.start()
        connection = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await connection.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
        finally:
            await connection.close()  # its backend's CPU is counted all the same
        client = redis.Redis.from_url(redis_url)
        client.eval("local x = 0 for i = 1, 30000000 do x = x + i end return 1", 0)
        client.close()
        return await shared.stop()

    with redis_server() as (redis_url, redis_pid):
        assert redis_pid is not None  # Debian's redis-server is installed here
        used = asyncio.run(burn(redis_url, redis_pid))

    assert used["postgres"] >= 0.02
    assert used["redis"] >= 0.02


def test_posts_halve_the_gap_between_the_rate_that_held_and_the_one_that_did_not() -> None:
    from bench.live import PostSteps

    search = PostSteps(app=None, posters=None, rate=100.0, max_steps=12, bisections=2)
    for holds in (True, True, False, True):
        search.steps.append({"offered_per_s": search.rate, "sustained": holds})
        search.next_rate(1.5)

    offered = [round(step["offered_per_s"], 1) for step in search.steps]
    # Up by 1.5 while it holds; then the middle of 150 (held) and 225 (did not), which held.
    assert offered == [100.0, 150.0, 225.0, 183.7]
    assert search.rate == pytest.approx((150 * 225) ** 0.5 * (225 / (150 * 225) ** 0.5) ** 0.5)
    assert not search.done
    search.steps.append({"offered_per_s": search.rate, "sustained": False})
    search.next_rate(1.5)
    assert search.done  # both halvings made


@pytest.mark.parametrize("strategy", ["update-returning", "select-for-update"])
def test_both_ways_of_taking_a_seq_store_every_post_once_with_contiguous_seqs(
    postgres_url: str, strategy: str
) -> None:
    from bench.seq_assignment import run
    from bench.servers import database

    async def measure() -> float:
        async with database("postgres") as scratch:  # run() recreates its tables
            return await run(scratch, strategy, posts=12, concurrency=3)

    assert asyncio.run(measure()) > 0  # run() asserts 12 stored, seqs 1..12
