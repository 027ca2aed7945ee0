"""What the benchmark clients say and read: HTTP/1.1 requests, chunked bodies,
Server-Sent Events and Socket.IO over a WebSocket, each parsed incrementally as bytes
arrive. Pure functions and small state machines; no sockets here (bench/driver.py)."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

# The Host header of every request (and so the origin posts come from).
HOST = "bench.localhost"


@dataclass
class Event:
    event: str
    data: str
    id: str | None = None


class ChunkedDecoder:
    """The body of a `Transfer-Encoding: chunked` response, as its bytes arrive."""

    def __init__(self) -> None:
        self.buffer = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        body = []
        while not self.ended:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.buffer[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if size == 0:
                self.ended = True
                break
            if len(self.buffer) < start + size + 2:
                break
            body.append(self.buffer[start : start + size])
            self.buffer = self.buffer[start + size + 2 :]
        return b"".join(body)


class SSEParser:
    """Events from a text/event-stream, fed in arbitrary pieces. Lines end in CRLF, LF
    or CR; comments and events without data are skipped (as a browser does)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[Event]:
        text = self.pending + data
        held = b""
        if text.endswith(b"\r"):  # perhaps the first half of a CRLF
            text, held = text[:-1], b"\r"
        *blocks, rest = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n")
        self.pending = rest + held
        return [event for block in blocks if (event := self._event(block))]

    @staticmethod
    def _event(block: bytes) -> Event | None:
        name, data, event_id = "message", [], None
        for line in block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id":
                event_id = value
        return Event(name, "\n".join(data), event_id) if data else None


class EventStream:
    """The body of a text/event-stream response, chunked or not."""

    answer = b"HTTP/1.1 200"

    def __init__(self, head: bytes) -> None:
        self.decoder = ChunkedDecoder() if b"transfer-encoding: chunked" in head.lower() else None
        self.parser = SSEParser()
        self.ready = True

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        """The events `data` completes, and what to send back (nothing, here)."""
        if self.decoder is not None:
            data = self.decoder.feed(data)
        return self.parser.feed(data), b""


class SocketIOStream:
    """Socket.IO (protocol 5, Engine.IO 4) over a WebSocket: each of the server's text
    frames is an Engine.IO packet. It joins the default namespace once the connection
    is open, answers the server's pings, and makes each `42["name", data]` an event."""

    answer = b"HTTP/1.1 101"
    request_path = "/socket.io/?EIO=4&transport=websocket"

    def __init__(self, _head: bytes) -> None:
        self.buffer = b""
        self.ready = False  # until the namespace is joined

    @staticmethod
    def request() -> bytes:
        return http_request(
            "GET",
            SocketIOStream.request_path,
            Upgrade="websocket",
            Connection="Upgrade",
            Sec_WebSocket_Key=base64.b64encode(secrets.token_bytes(16)).decode(),
            Sec_WebSocket_Version="13",
        )

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        self.buffer += data
        events, answers = [], []
        while (frame := self._frame()) is not None:
            opcode, payload = frame
            if opcode == PING:  # the WebSocket's own keepalive (uvicorn's, every 20 s)
                answers.append(_websocket_frame(PONG, payload))
            if opcode != TEXT:  # only text frames carry Engine.IO packets
                continue
            packet = payload.decode()
            if packet.startswith("0"):  # open
                answers.append(_websocket_frame(TEXT, b"40"))
            elif packet == "2":  # Engine.IO's ping
                answers.append(_websocket_frame(TEXT, b"3"))
            elif packet.startswith("40"):  # joined
                self.ready = True
            elif packet.startswith("42"):
                name, *arguments = json.loads(packet[2:])
                events.append(Event(name, arguments[0] if arguments else ""))
        return events, b"".join(answers)

    def _frame(self) -> tuple[int, bytes] | None:
        """The next whole frame of the buffer (a server's frames are not masked; these
        are never fragmented), or None until it has arrived."""
        if len(self.buffer) < 2:
            return None
        opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(self.buffer[2:4]), 4
        elif length == 127:
            length, start = int.from_bytes(self.buffer[2:10]), 10
        if len(self.buffer) < start + length:
            return None
        payload = self.buffer[start : start + length]
        self.buffer = self.buffer[start + length :]
        return opcode, payload


TEXT, PING, PONG = 0x1, 0x9, 0xA


def _websocket_frame(opcode: int, payload: bytes) -> bytes:
    """A client's frame (masked, as a client's must be) of a short payload."""
    mask = secrets.token_bytes(4)
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def http_request(
    method: str, path: str, *, cookies: dict[str, str] | None = None, body: bytes = b"", **headers
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    lines.extend(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())
    if method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
