"""`chat bench http`: wrk checks every answer, posts are counted in SQL, and a toy run of
the whole workload passes its own checks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from bench.http import Row, check_posts, run_wrk
from bench.servers import Member
from tests.support import ROOT

MEMBER = Member(1, {"chat_session": "s"}, "token")


async def answer_with(page: bytes) -> asyncio.Server:
    """A keep-alive server that answers every request with `page`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_wrk_counts_every_answer_without_the_expected_messages_as_bad() -> None:
    server = await answer_with(b'<article id="message-7"></article><article id="message-8">')
    port = server.sockets[0].getsockname()[1]
    row = Row("room", "/rooms/1", ['id="message-7"', 'id="message-8"'], ['id="message-6"'])
    wrong = Row("room", "/rooms/1", ['id="message-9"'])
    stale = Row("room", "/rooms/1", ['id="message-8"'], ['id="message-7"'])
    try:
        right = await run_wrk(row, port, MEMBER, 1, 2)
        missing = await run_wrk(wrong, port, MEMBER, 1, 2)
        unwanted = await run_wrk(stale, port, MEMBER, 1, 2)
    finally:
        server.close()
        await server.wait_closed()

    assert right["requests"] > 0 and right["bad"] == 0
    assert missing["answered"] > 0 and missing["bad"] == missing["answered"]
    assert missing["first_bad"].startswith("200 <article")
    assert unwanted["bad"] == unwanted["answered"] > 0


def test_posts_stored_twice_or_answered_and_missing_are_problems() -> None:
    runs = [
        {"prefix": "bench-http-r1-app", "answered": 10, "sent": 12},
        {"prefix": "bench-http-r2-app", "answered": 10, "sent": 12},
        {"prefix": "bench-http-r3-app", "answered": 10, "sent": 12},
    ]
    stored = {"bench-http-r1-app": (11, 11), "bench-http-r2-app": (11, 10)}

    problems = check_posts(runs, stored)

    assert problems == [
        "bench-http-r2-app: 1 posts stored twice",
        "bench-http-r3-app: 0 posts stored, 10 answered, 12 sent",
    ]


def test_a_toy_run_checks_every_row_and_finds_every_post_stored_once(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "chat", "bench", "http", "--output", str(tmp_path)),
            *("--seed-rooms", "3", "--seed-users", "5", "--seed-messages", "400"),
            *("--seconds", "1", "--rounds", "1", "--warmup", "1", "--clients", "4"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (result_file,) = tmp_path.glob("http-*.json")
    assert result_file.with_suffix(".png").stat().st_size > 0
    result = json.loads(result_file.read_text())

    assert result["problems"] == []
    rows = result["targets"]["app"]
    assert list(rows) == ["room", "messages", "sidebar", "search", "post", "direct"]
    for figures in rows.values():
        (only,) = figures["rounds"]
        assert only["requests"] > 0 and only["bad"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert 0 < figures["wrk_cpu_share"] < 1
