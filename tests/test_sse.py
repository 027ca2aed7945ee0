"""Frame encoding (chat/sse.py): every line of the data, whatever its line break, is a
`data:` line of its own, so that a browser puts the data back together as it was sent."""

import pytest

from chat import sse


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("", [""]),
        ("one", ["one"]),
        ("a\nb", ["a", "b"]),
        ("a\r\nb\rc\n", ["a", "b", "c", ""]),
        ("\r\r\n\n", ["", "", "", ""]),
    ],
)
def test_each_line_of_the_data_is_a_data_line(data, lines):
    frame = sse.encode("message", data, id=sse.Cursor(4, 2))
    expected = ["id: 4.2", "event: message", *(f"data: {line}" for line in lines)]
    assert frame == ("\n".join(expected) + "\n\n").encode()
    assert sse.encode("message", data) == ("\n".join(expected[1:]) + "\n\n").encode()
