"""`chat bench capacity`: a toy crowd posts, types, reads, reconnects and opens pages,
and every room stream sees its room's every message once, in order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.capacity import room_sizes
from tests.support import ROOT


def test_rooms_are_a_few_large_and_many_small_and_hold_everyone() -> None:
    sizes = room_sizes(10_000)

    assert len(sizes) == 50 and sum(sizes) == 10_000
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] > 10 * sizes[-1] and min(sizes) >= 2
    for people in (7, 24, 125, 999):
        sizes = room_sizes(people)
        assert sum(sizes) == people and min(sizes) >= 2


def test_a_toy_crowd_gets_every_message_once_across_reconnects(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "chat", "bench", "capacity", "--output", str(tmp_path)),
            *("--people", "24", "--max-people", "24", "--seconds", "6"),
            # Busy people, so that six seconds hold every kind of act; limits a loaded
            # machine meets: this run checks what is delivered, not how fast.
            *("--posts-per-minute", "20", "--pages-per-minute", "10"),
            *("--reconnects-per-minute", "10", "--visible", "0.5"),
            *("--receive-p99-ms", "60000", "--page-p99-ms", "60000"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (result_file,) = tmp_path.glob("capacity-*.json")
    assert result_file.with_suffix(".png").stat().st_size > 0
    (step,) = json.loads(result_file.read_text())["steps"]

    assert step["errors"] == {}
    assert step["passed"] and step["people"] == 24
    for kind in ("post", "typing", "page", "read"):
        assert step["requests"][kind] > 0, kind
    assert step["receive"]["n"] > step["requests"]["post"]  # each post reaches its room
    assert step["rooms_page_events"] > 0
    assert step["kib_per_person"] > 0


def test_the_driver_finds_each_message_and_its_marker_in_raw_bytes_however_they_are_split():
    from bench.capacity import Crowd, Person
    from chat import sse
    from chat.sse import Cursor
    from chat.stream_connection import http_chunk

    frames = [
        sse.RETRY_FRAME,
        sse.encode("message", '<p data-x="id: 9">capacity 7 end</p>\n<p>x</p>', id=Cursor(1)),
        b":ping\n\n",
        sse.encode("typing", '{"typists": ["a"], "version": 3}'),
        sse.encode("message", "<p>no marker here</p>", id=Cursor(2)),
        sse.encode("message", "<p>capacity 12 end</p>", id=Cursor(3, 4)),
    ]
    body = b"".join(http_chunk(frame) for frame in frames)
    expected = [(1, False, 7), (2, False, None), (3, True, 12)]

    class Recorder(Crowd):
        def __init__(self) -> None:
            self.seen: list[tuple[int, bool, int | None]] = []

        def on_message(self, person, seq, is_change, index, arrived, read) -> None:
            self.seen.append((seq, is_change, index))

    for cut in range(len(body) + 1):
        crowd, person = Recorder(), Person(1, None, False)
        crowd.on_room_bytes(person, body[:cut], 0.0, 0.0)
        crowd.on_room_bytes(person, body[cut:], 0.0, 0.0)
        assert crowd.seen == expected, cut
