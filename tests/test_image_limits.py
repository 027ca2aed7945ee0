"""Decoding bounded by memory (issue 21, row 4): a pixel cap, and at most N decodes at
once in the process."""

import asyncio
import io
import threading
import time

import pytest
from PIL import Image
from sqlalchemy import func, select

from chat import message_path
from chat.models import Attachment, Message
from tests.test_attachments import mostly_empty_png, send
from tests.test_http_guards import peak_rss_mb


def rgb_png(width: int, height: int) -> bytes:
    """A small file of a full-colour image (decoded: 3 bytes a pixel)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def count(app, model) -> int:
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).select_from(model))


async def test_a_7000_by_7000_png_is_refused_without_being_decoded(visitors, live_server):
    """Five per message, four messages at once: each 400, nothing stored, and the
    server's peak memory hardly moves (decoded, each took +380 MB and 2.1 s)."""
    png = rgb_png(7000, 7000)
    assert len(png) < 300_000
    alice = await visitors("alice")
    room_id = await alice.create_room()
    before = peak_rss_mb(live_server.process.pid)
    files = [(f"big{n}.png", png, "image/png") for n in range(5)]
    responses = await asyncio.gather(*(send(alice, room_id, files, f"try {m}") for m in range(4)))
    for response in responses:
        assert response.status_code == 400, response.text
        assert "too many pixels" in response.text
    assert peak_rss_mb(live_server.process.pid) - before < 60
    page = await alice.get(f"/rooms/{room_id}")
    assert "data-seq" not in page.text


@pytest.fixture
def settings(settings):
    from dataclasses import replace

    return replace(settings, max_image_pixels=10_000)


async def test_the_pixel_cap_is_a_setting_and_an_image_at_it_passes(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await send(alice, room_id, [("ok.png", mostly_empty_png(100, 100), "image/png")])
    assert response.status_code == 200
    response = await send(alice, room_id, [("big.png", mostly_empty_png(101, 100), "image/png")])
    assert response.status_code == 400
    assert await count(app, Message) == 1
    assert await count(app, Attachment) == 1


async def test_at_most_two_images_are_decoded_at_once(people, app, monkeypatch):
    real_prepare = message_path.prepare
    lock = threading.Lock()
    running, most = 0, 0

    def slow_prepare(*args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        try:
            return real_prepare(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(message_path, "prepare", slow_prepare)
    alice = await people("alice")
    room_id = await alice.create_room()
    png = ("tiny.png", mostly_empty_png(10, 10), "image/png")
    responses = await asyncio.gather(*(send(alice, room_id, [png] * 3) for _ in range(4)))
    assert [response.status_code for response in responses] == [200] * 4
    assert most == 2
