"""A subscriber that stops reading is cut off; it never slows the room down."""

import asyncio
import socket

import pytest

from tests.support import LiveServer, open_stream
from tests.test_streams import room_with


@pytest.fixture
def server_env(server_env):
    # A small queue: a client that stopped reading is cut off soon after the socket
    # buffers fill. Not tiny: the fast reader shares a busy test process (posts go
    # out twenty at a time) and must never trail by that many frames (with 8 it did).
    return {**server_env, "CHAT_SUBSCRIBER_QUEUE_SIZE": "64"}


async def read_until(stream, marker: str) -> list[int]:
    seqs = []
    while True:
        [event] = await stream.messages(1, timeout=60)
        seqs.append(event.seq)
        if marker in event.data:
            return seqs


@pytest.mark.bulk
async def test_slow_subscriber_is_dropped_without_delaying_the_others(
    visitors, live_server: LiveServer
):
    room_id, (alice, bob) = await room_with(visitors, "alice", "bob")
    # The slow client: a raw socket with a small receive buffer that never reads.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    slow.connect(("127.0.0.1", live_server.port))
    cookies = "; ".join(f"{k}={v}" for k, v in bob.client.cookies.items())
    slow.sendall(
        f"GET /rooms/{room_id}/events?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {cookies}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    async with open_stream(alice.client, f"/rooms/{room_id}/events?after=0") as fast:
        reader = asyncio.create_task(read_until(fast, "after the cut"))
        # Post until the server reports cutting the slow one off; socket buffers
        # absorb a few megabytes first, so that takes some hundreds of 4 kB messages.
        total = 0
        while "stream.cut_off" not in live_server.log_path.read_text():
            assert total < 3000, "the slow subscriber was never cut off"
            await asyncio.gather(*(alice.say(room_id, "long text " * 399) for _ in range(20)))
            total += 20
        await alice.say(room_id, "after the cut")
        total += 1
        assert await reader == list(range(1, total + 1))

    # The slow one was cut off: what it was sent ends in EOF, short of the end.
    slow.settimeout(60)
    received = b""
    while chunk := await asyncio.to_thread(slow.recv, 1 << 20):
        received += chunk
    slow.close()
    assert b"id: 1\n" in received
    assert f"id: {total}\n".encode() not in received
