"""Bounded bodies, numbers, caching, hosts, HTTPS and proxies, 500s (issue 21, rows 1,
5, 7, 8 and 9)."""

import shutil
import socket

import httpx
import pytest
from sqlalchemy import func, make_url, select
from starlette.responses import PlainTextResponse

from chat.app import create_app
from chat.models import Message
from chat.settings import Settings
from tests.conftest import TEST_HOSTS, TEST_SECRET_KEY
from tests.support import CSRF_META, LiveServer, Person, client_for

MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def csrf_of(server: LiveServer) -> tuple[str, str]:
    """A fresh anonymous browser's CSRF cookie and token."""
    response = httpx.get(f"{server.url}/login")
    return response.cookies["chat_csrf"], CSRF_META.search(response.text).group(1)


def send_chunked(server: LiveServer, path: str, headers: dict[str, str], total: int) -> bytes:
    """POST `total` bytes of a url-encoded body in chunks, without a Content-Length,
    until the server answers; what it answered."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        host = f"Host: 127.0.0.1:{server.port}"
        head = [f"POST {path} HTTP/1.1", host, "Transfer-Encoding: chunked"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        chunk = b"username=" + b"a" * (64 * 1024)
        sent = 0
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"a" * (1024 * 1024)
        except OSError:  # the server answered and closed: what we came for
            pass
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_200_mb_url_encoded_body_is_refused_while_it_streams(live_server):
    cookie, token = csrf_of(live_server)
    before = peak_rss_mb(live_server.process.pid)
    headers = {
        "Cookie": f"chat_csrf={cookie}",
        "X-CSRF-Token": token,
        "Origin": live_server.url,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    answer = send_chunked(live_server, "/login", headers, 200 * MB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Read whole, the body took the server from ~145 MB to 1.25 GB.
    assert peak_rss_mb(live_server.process.pid) - before < 30


def test_a_body_declared_too_large_is_refused_before_it_is_read(live_server):
    cookie, token = csrf_of(live_server)
    response = httpx.post(
        f"{live_server.url}/login",
        content=b"username=" + b"a" * (MB),
        headers={
            "X-CSRF-Token": token,
            "Origin": live_server.url,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        cookies={"chat_csrf": cookie},
    )
    assert response.status_code == 413
    assert "aaaaaaaaaa" not in response.text


async def test_a_long_username_is_not_echoed_back_whole(anonymous):
    await anonymous.get("/login")
    response = await anonymous.post("/login", {"username": "x" * 10_000, "password": "nope"})
    assert response.status_code == 401
    assert "x" * 257 not in response.text


async def test_malformed_numbers_are_400_never_500(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    for query in ("before=¹", "at=" + "9" * 5000, "after=٣", "before=2147483648", "reply=-1"):
        response = await alice.get(f"/rooms/{room_id}?{query}")
        assert response.status_code == 400, query
    response = await alice.get(f"/rooms/{room_id}/messages?before=" + "1" * 5000)
    assert response.status_code == 400
    response = await alice.get("/search?q=hello&before=¹")
    assert response.status_code == 400


async def test_ids_past_the_columns_range_are_404_on_every_backend(people):
    alice = await people("alice")
    await alice.create_room()
    for path in ("/rooms/2147483648", "/rooms/" + "1" * 5000, "/rooms/1/messages/2147483648"):
        response = await alice.get(path)
        assert response.status_code == 404, path
    response = await alice.get("/rooms/2147483648/events")
    assert response.status_code == 404


async def test_a_reply_to_an_odd_number_is_400_and_stores_nothing(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for reply_to in ("¹", "9" * 5000, "2147483648"):
        response = await alice.post(
            f"/rooms/{room_id}/messages", {"body": "hi", "reply_to": reply_to}, htmx=True
        )
        assert response.status_code == 400, reply_to
    async with app.state.db() as db:
        assert await db.scalar(select(func.count()).select_from(Message)) == 0


async def test_search_dates_at_the_ends_of_the_calendar_are_text(people):
    alice = await people("alice")
    for query in ("after:9999-12-31", "before:0001-01-01", "after:9999-12-31 hello"):
        response = await alice.get("/search", params={"q": query})
        assert response.status_code == 200, query


async def test_a_500_carries_the_security_headers(people, app, monkeypatch):
    alice = await people("alice")

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("chat.routes.search.search", broken)
    response = await alice.get("/search", params={"q": "hello"})
    assert response.status_code == 500
    assert "a bug" not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_private_pages_are_not_stored_but_static_files_are_cached(people):
    alice = await people("alice")
    bob = await people("bob")
    room_id = await alice.create_room()
    await alice.say(room_id, "hello")
    await bob.post("/direct/alice/messages", {"body": "hi"})
    for path in (
        f"/rooms/{room_id}",
        f"/rooms/{room_id}/messages?before=2",
        "/search?q=hello",
        "/",
        "/account",
    ):
        response = await alice.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["vary"] == "Cookie", path
    static = await alice.get("/static/app.css")
    assert "no-store" not in static.headers.get("cache-control", "")


async def test_a_foreign_host_is_400_and_never_written_into_a_link(anonymous):
    response = await anonymous.client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "evil.example" not in response.headers.get("location", "")
    assert "evil.example" not in response.text


async def test_remembered_hosts_are_exactly_those_starlette_let_through():
    """chat.http_guards.AllowedHostsMiddleware remembers the Host headers Starlette's
    check accepted; a foreign one stays refused however often a good one came first,
    and of two Host headers the first decides, as in Starlette."""
    from chat.http_guards import AllowedHostsMiddleware

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["headers"])
        await PlainTextResponse("ok")(scope, receive, send)

    guard = AllowedHostsMiddleware(app, allowed_hosts=["localhost", "*.example.com"])

    async def status(*hosts: bytes) -> int:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
        scope["headers"] = [(b"host", host) for host in hosts]
        await guard(scope, None, send)
        return sent[0]["status"]

    for _ in range(2):
        assert await status(b"localhost:8000") == 200
        assert await status(b"chat.example.com") == 200
        assert await status(b"evil.example") == 400
        assert await status(b"localhost.evil.example") == 400
        assert await status(b"evil.example", b"localhost:8000") == 400
        assert await status() == 400
    assert await status(b"localhost:8000", b"evil.example") == 200
    assert len(reached) == 5
    assert guard._accepted == {b"localhost:8000", b"chat.example.com"}


def test_the_default_hosts_are_localhost_only():
    settings = Settings.from_env({"CHAT_SECRET_KEY": "k" * 40})
    assert settings.allowed_hosts == ("localhost", "127.0.0.1")


def test_responses_do_not_name_the_server_software(live_server):
    response = httpx.get(f"{live_server.url}/login")
    assert "server" not in response.headers


@pytest.fixture
def https_settings(settings: Settings) -> Settings:
    return Settings.from_env(
        {
            "CHAT_DATABASE_URL": settings.database_url,
            "CHAT_SECRET_KEY": TEST_SECRET_KEY,
            "CHAT_MEDIA_DIR": str(settings.media_dir),
            "CHAT_HTTPS": "1",
            **TEST_HOSTS,
        }
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_with_https_cookies_are_secure_host_prefixed_and_hsts_is_sent(https_settings, engine):
    app = create_app(https_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with client_for("https://testserver", transport=transport) as client:
            alice = Person(client, "alice")
            page = await alice.get("/signup")
            assert "max-age=" in page.headers["strict-transport-security"]
            response = await alice.post("/signup", {"username": "alice", "password": "x9!" * 4})
            assert response.status_code == 303
            cookies = response.headers.get_list("set-cookie")
            session = next(c for c in cookies if c.startswith("__Host-chat_session="))
            assert "Secure" in session and "Path=/" in session and "Domain" not in session
            assert any(c.startswith("__Host-chat_csrf=") and "Secure" in c for c in cookies)
            assert (await alice.get("/")).status_code == 200  # signed in with them


def start_server(request, server_env, tmp_path, **extra: str) -> LiveServer:
    """`chat serve` like the live_server fixture's, with settings of the test's own."""
    url = server_env["CHAT_DATABASE_URL"]
    if url.startswith("sqlite"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), make_url(url).database)
    return LiveServer({**server_env, **extra}, log_path=tmp_path / "server.log").start()


def signed_up_through_proxy(server: LiveServer, origin: str) -> tuple[str, str]:
    """Sign up with X-Forwarded-For/-Proto headers: the account page, and the
    session's Set-Cookie header. Cookies are carried by hand: a Secure one is never
    sent back over plain HTTP by the client."""
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Origin": origin}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        page = client.get("/signup")
        token = CSRF_META.search(page.text).group(1)
        csrf = cookie_value(page, "chat_csrf")
        response = client.post(
            "/signup",
            data={"csrf_token": token, "username": "alice", "password": "x9!" * 4},
            headers={"Cookie": f"chat_csrf={csrf}"},
        )
        assert response.status_code == 303, response.text
        cookie = next(c for c in response.headers.get_list("set-cookie") if "chat_session" in c)
        session = cookie_value(response, "chat_session")
        account = client.get("/account", headers={"Cookie": f"chat_session={session}"})
        return account.text, cookie


def cookie_value(response: httpx.Response, name: str) -> str:
    header = next(c for c in response.headers.get_list("set-cookie") if c.startswith(name))
    return header.split(";", 1)[0].split("=", 1)[1]


def test_forwarded_headers_from_anyone_change_nothing(request, server_env, tmp_path):
    server = start_server(request, server_env, tmp_path)
    try:
        page, cookie = signed_up_through_proxy(server, server.url)
    finally:
        server.stop()
    assert "203.0.113.9" not in page and "127.0.0.1" in page
    assert "Secure" not in cookie


def test_forwarded_headers_from_a_trusted_proxy_give_the_address_and_https(
    request, server_env, tmp_path
):
    server = start_server(request, server_env, tmp_path, CHAT_TRUSTED_PROXIES="127.0.0.1")
    try:
        # Through the proxy the page is https://, and so is its Origin.
        page, cookie = signed_up_through_proxy(server, server.url.replace("http:", "https:"))
    finally:
        server.stop()
    assert "203.0.113.9" in page
    assert "Secure" in cookie


async def test_each_request_has_its_own_id_in_its_header_and_its_log_line(anonymous, capsys):
    import json

    from chat.logging import configure_logging

    configure_logging("INFO")
    capsys.readouterr()
    ids = [(await anonymous.client.get("/login")).headers["x-request-id"] for _ in range(3)]
    assert len(set(ids)) == 3 and all(len(each) == 16 and int(each, 16) >= 0 for each in ids)
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["request_id"] for line in logged if line["event"] == "request"] == ids
    configure_logging("WARNING")
    try:
        capsys.readouterr()
        await anonymous.client.get("/login")
        assert "request" not in capsys.readouterr().err
    finally:
        configure_logging("INFO")
