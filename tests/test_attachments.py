"""Attachments: limits enforced while uploading, types read from the bytes, images
re-encoded, files served only to readers of the room, and deleted with their message."""

import io
import re
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select

from chat.models import Attachment, Message
from tests.support import open_stream

MB = 1024 * 1024
IMG = re.compile(
    r'<img src="(/rooms/\d+/attachments/\w+)" alt="([^"]*)" width="(\d+)" height="(\d+)"'
)
DOWNLOAD = re.compile(r'<a href="(/rooms/\d+/attachments/\w+)" download="([^"]*)">')


def png(width=40, height=30, *, comment=""):
    image = Image.new("RGB", (width, height), "teal")
    info = PngImagePlugin.PngInfo()
    if comment:
        info.add_text("Comment", comment)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def png_header_only(width, height):
    """A PNG that claims to be huge: what a decompression bomb looks like before decoding."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def mostly_empty_png(width, height):
    """A real, small file that decodes to `width` x `height` pixels."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")
    return out.getvalue()


async def send(person, room_id, files, body="", *, htmx=True, data=None):
    """Post a message with `files` [(name, bytes, claimed type)] as the composer does."""
    return await person.post(
        f"/rooms/{room_id}/messages",
        {"body": body, **(data or {})},
        htmx=htmx,
        files=[("files", file) for file in files],
    )


async def room_of(people, *names, visibility="public"):
    members = [await people(name) for name in names]
    room_id = await members[0].create_room("general", visibility)
    for person in members[1:]:
        if visibility == "public":
            await person.join(room_id)
        else:
            await members[0].post(f"/rooms/{room_id}/members", {"username": person.username})
    return room_id, members


def stored_files(media_dir):
    return sorted(path for path in media_dir.rglob("*") if path.is_file())


async def count(app, model):
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).select_from(model))


async def test_a_png_named_exe_is_shown_as_an_image_without_its_metadata(people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    original = png(800, 600, comment="home address")
    reply = await send(alice, room_id, [("cat <b>.exe", original, "application/x-msdownload")])
    assert reply.status_code == 200, reply.text

    page = (await alice.get(f"/rooms/{room_id}")).text
    url, alt, width, height = IMG.search(page).groups()
    assert alt == "cat &lt;b&gt;.exe"  # the name, escaped
    assert (width, height) == ("320", "240")  # the thumbnail's box, no layout shift
    image = await alice.get(url)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    assert image.headers["content-disposition"].startswith('inline; filename="cat _b_.png"')
    assert Image.open(io.BytesIO(image.content)).size == (800, 600)
    assert b"home address" not in image.content  # re-encoded: the metadata is gone
    assert [path.read_bytes() for path in stored_files(media_dir)] == [image.content]


async def test_html_named_png_and_svg_with_script_are_only_downloads(people):
    room_id, (alice,) = await room_of(people, "alice")
    html = b"<!doctype html><script>window.__xss = 1</script>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    reply = await send(
        alice, room_id, [("cat.png", html, "image/png"), ("logo.svg", svg, "image/svg+xml")]
    )
    assert reply.status_code == 200, reply.text

    page = (await alice.get(f"/rooms/{room_id}")).text
    assert "<img" not in page.split('role="log"', 1)[1].split("</section>", 1)[0]
    links = DOWNLOAD.findall(page)
    assert [name for _, name in links] == ["cat.png", "logo.svg"]
    for (url, name), content in zip(links, [html, svg], strict=True):
        response = await alice.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == (
            f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        )
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in response.headers["content-security-policy"]
        assert response.content == content


async def test_a_file_over_the_size_limit_is_refused_with_413_and_nothing_is_stored(
    app, people, media_dir
):
    room_id, (alice,) = await room_of(people, "alice")
    too_big = b"\0" * (10 * MB + 1)
    for htmx in (True, False):
        reply = await send(alice, room_id, [("big.bin", too_big, "")], "look", htmx=htmx)
        assert reply.status_code == 413
        # Said once, beside the composer, which keeps what was typed.
        assert reply.text.count("at most 10 MB; “big.bin” is larger") == 1
        assert re.search(r'<textarea id="composer-body"[^>]*>look</textarea>', reply.text)
    assert stored_files(media_dir) == []
    assert await count(app, Message) == 0 and await count(app, Attachment) == 0
    # Exactly at the limit is fine.
    reply = await send(alice, room_id, [("fits.bin", b"\0" * (10 * MB), "")])
    assert reply.status_code == 200


async def test_reading_stops_at_the_limit_instead_of_taking_the_whole_upload(people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    boundary = "limit-test-boundary"
    sent_chunks = 0

    async def body():
        nonlocal sent_chunks
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f"{alice.csrf_token}\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="files"; filename="huge.bin"\r\n\r\n'
        ).encode()
        for _ in range(100):  # 100 MB on offer
            sent_chunks += 1
            yield b"\0" * MB
        yield f"\r\n--{boundary}--\r\n".encode()

    reply = await alice.client.post(
        f"/rooms/{room_id}/messages",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert reply.status_code == 413 and "huge.bin" in reply.text
    assert sent_chunks <= 12  # 10 MB and the chunk that passed it, give or take one
    assert stored_files(media_dir) == []


async def test_more_files_than_allowed_are_refused_and_nothing_is_stored(app, people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    files = [(f"{n}.txt", b"hello", "text/plain") for n in range(6)]
    reply = await send(alice, room_id, files, "six files")
    assert reply.status_code == 400
    assert "at most 5 files" in reply.text
    assert stored_files(media_dir) == []
    assert await count(app, Message) == 0
    reply = await send(alice, room_id, files[:5], "five files")
    assert reply.status_code == 200
    assert len(stored_files(media_dir)) == 5


# Pillow warns while it opens the 100 MP image, before our own limit refuses it.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_images_that_cannot_be_decoded_safely_are_refused(app, people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    refused = {
        "bomb-header.png": png_header_only(30_000, 30_000),  # Pillow's DecompressionBombError
        "bomb-warning.png": mostly_empty_png(10_000, 10_000),  # Pillow's warning: 100 MP
        "bomb-limit.png": mostly_empty_png(8_000, 7_000),  # ours: 56 MP
        "truncated.png": png(200, 200)[:-200],
        "empty.txt": b"",
    }
    for name, content in refused.items():
        reply = await send(alice, room_id, [(name, content, "image/png")], "hi")
        assert reply.status_code == 400, name
        assert name in reply.text
    assert stored_files(media_dir) == []
    assert await count(app, Message) == 0


async def test_a_message_may_be_files_alone_but_not_empty(people):
    room_id, (alice,) = await room_of(people, "alice")
    assert (await send(alice, room_id, [], "")).status_code == 400
    assert (
        await send(alice, room_id, [("notes.txt", b"remember", "text/plain")])
    ).status_code == 200
    page = (await alice.get(f"/rooms/{room_id}")).text
    assert DOWNLOAD.search(page).group(2) == "notes.txt"
    assert "(8 bytes)" in page


async def test_attachments_are_served_only_to_readers_of_the_room(people, anonymous):
    room_id, (alice, bob) = await room_of(people, "alice", "bob", visibility="private")
    mallory = await people("mallory")
    await send(alice, room_id, [("plan.txt", b"secret plan", "text/plain")])
    [(url, _)] = DOWNLOAD.findall((await bob.get(f"/rooms/{room_id}")).text)

    assert (await bob.get(url)).content == b"secret plan"
    assert (await mallory.get(url)).status_code == 404
    logged_out = await anonymous.get(url)
    assert logged_out.status_code == 303 and logged_out.headers["location"].endswith("/login")
    # A key is found only in its own room, even by someone who may read the other one.
    other_room = await mallory.create_room("elsewhere")
    key = url.rsplit("/", 1)[1]
    assert (await mallory.get(f"/rooms/{other_room}/attachments/{key}")).status_code == 404
    assert (await alice.get(f"/rooms/{room_id}/attachments/nosuchkey")).status_code == 404


async def test_deleting_a_message_deletes_its_files(people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    await send(alice, room_id, [("a.png", png(), "image/png"), ("b.txt", b"text", "")], "both")
    page = (await alice.get(f"/rooms/{room_id}")).text
    urls = [IMG.search(page).group(1), DOWNLOAD.search(page).group(1)]
    assert len(stored_files(media_dir)) == 2

    reply = await alice.post(f"/rooms/{room_id}/messages/1/delete", htmx=True)
    assert reply.status_code == 200
    assert "Message deleted" in reply.text and "attachments" not in reply.text
    assert stored_files(media_dir) == []
    for url in urls:
        assert (await alice.get(url)).status_code == 404


async def test_the_csrf_token_is_checked_before_an_upload_is_read(app, people, media_dir):
    room_id, (alice,) = await room_of(people, "alice")
    url = f"/rooms/{room_id}/messages"
    file = ("files", ("a.txt", b"x" * 200_000, "text/plain"))
    no_token = await alice.client.post(url, data={"body": "hi"}, files=[file])
    assert no_token.status_code == 403
    # The forms send it first; behind a large file it is not looked for.
    token_last = await alice.client.post(
        url, files=[file, ("csrf_token", (None, alice.csrf_token))], data={"body": "hi"}
    )
    assert token_last.status_code == 403
    # htmx sends it as a header.
    header = await alice.client.post(
        url, data={"body": "hi"}, files=[file], headers={"X-CSRF-Token": alice.csrf_token}
    )
    assert header.status_code == 303
    assert len(stored_files(media_dir)) == 1 and await count(app, Message) == 1


async def test_a_file_name_outside_ascii_is_kept_for_download(people):
    room_id, (alice,) = await room_of(people, "alice")
    await send(alice, room_id, [("résumé 日本.txt", b"cv", "text/plain")], htmx=False)
    url, name = DOWNLOAD.search((await alice.get(f"/rooms/{room_id}")).text).groups()
    assert name == "résumé 日本.txt"
    disposition = (await alice.get(url)).headers["content-disposition"]
    assert disposition == (
        'attachment; filename="resume .txt"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.txt"
    )


async def test_another_member_sees_the_attachment_live(visitors):
    alice, bob = await visitors("alice"), await visitors("bob")
    room_id = await alice.create_room("general")
    await bob.join(room_id)
    async with open_stream(bob.client, f"/rooms/{room_id}/events") as tab:
        reply = await send(alice, room_id, [("sunset.png", png(100, 50), "image/png")], "look")
        assert reply.status_code == 200, reply.text
        [event] = await tab.messages(1)
    url, alt, width, height = IMG.search(event.data).groups()
    assert (alt, width, height) == ("sunset.png", "100", "50")
    image = await bob.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


async def test_a_first_direct_message_may_be_a_file(people):
    alice, bob = await people("alice"), await people("bob")
    reply = await alice.post(
        "/direct/bob/messages", {"body": ""}, files=[("files", ("hi.txt", b"hello", "text/plain"))]
    )
    assert reply.status_code == 303, reply.text
    room_page = await bob.get(reply.headers["location"].split("#")[0])
    [(url, name)] = DOWNLOAD.findall(room_page.text)
    assert name == "hi.txt" and (await bob.get(url)).content == b"hello"


async def test_a_first_direct_message_with_a_file_too_large_keeps_the_text_and_makes_no_room(
    app, people
):
    alice, _ = await people("alice"), await people("bob")
    reply = await alice.post(
        "/direct/bob/messages",
        {"body": "see attached"},
        files=[("files", ("big.bin", b"\0" * (10 * MB + 1), ""))],
    )
    assert reply.status_code == 413
    assert "at most 10 MB" in reply.text
    assert re.search(r'<textarea id="composer-body"[^>]*>see attached</textarea>', reply.text)
    assert (await alice.get("/direct/bob")).status_code == 200  # still only a draft
    assert await count(app, Message) == 0


async def test_the_text_of_a_message_with_files_may_be_edited_away(people):
    room_id, (alice,) = await room_of(people, "alice")
    await send(alice, room_id, [("a.txt", b"a", "text/plain")], "caption")
    await alice.say(room_id, "text only")
    edit = f"/rooms/{room_id}/messages/%d"
    assert (await alice.post(edit % 1, {"body": ""}, htmx=True)).status_code == 200
    assert (await alice.post(edit % 2, {"body": ""}, htmx=True)).status_code == 400
    page = (await alice.get(f"/rooms/{room_id}")).text
    assert "caption" not in page and "text only" in page and DOWNLOAD.search(page)


async def test_an_animated_gif_keeps_its_frames(people):
    room_id, (alice,) = await room_of(people, "alice")
    frames = [Image.new("RGB", (20, 20), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    await send(alice, room_id, [("spin.gif", out.getvalue(), "image/gif")])
    url = IMG.search((await alice.get(f"/rooms/{room_id}")).text).group(1)
    served = Image.open(io.BytesIO((await alice.get(url)).content))
    assert (served.format, served.n_frames) == ("GIF", 3)
