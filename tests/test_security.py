from sqlalchemy import func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout

import chat.routes.search
from chat.models import Message


async def message_count(app):
    async with app.state.db() as db:
        return await db.scalar(select(func.count()).select_from(Message))


async def test_unsafe_requests_without_a_valid_csrf_token_are_403(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    url = f"/rooms/{room_id}/messages"
    for data in (
        {"body": "x"},
        {"body": "x", "csrf_token": "forged"},
        {"body": "x", "csrf_token": alice.csrf_token + "x"},
    ):
        response = await alice.client.post(url, data=data)
        assert response.status_code == 403
    assert await message_count(app) == 0


async def test_csrf_token_works_as_a_header(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.client.post(
        f"/rooms/{room_id}/messages",
        data={"body": "x"},
        headers={"X-CSRF-Token": alice.csrf_token, "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert await message_count(app) == 1


async def test_another_users_token_does_not_work(people, app):
    alice, bob = await people("alice"), await people("bob")
    room_id = await alice.create_room()
    await bob.join(room_id)
    response = await bob.client.post(
        f"/rooms/{room_id}/messages", data={"body": "x", "csrf_token": alice.csrf_token}
    )
    assert response.status_code == 403


async def test_cross_origin_requests_are_refused_even_with_a_token(people, app):
    alice = await people("alice")
    room_id = await alice.create_room()
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver:8080"},
        {"Origin": "https://testserver"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        response = await alice.client.post(
            f"/rooms/{room_id}/messages",
            data={"body": "x", "csrf_token": alice.csrf_token},
            headers=headers,
        )
        assert response.status_code == 403, headers
    del alice.client.headers["Origin"]
    response = await alice.client.post(
        f"/rooms/{room_id}/messages", data={"body": "x", "csrf_token": alice.csrf_token}
    )
    assert response.status_code == 403
    assert await message_count(app) == 0


async def test_login_and_signup_need_the_token_too(anonymous):
    response = await anonymous.client.post(
        "/signup", data={"username": "alice", "password": "long enough password"}
    )
    assert response.status_code == 403


async def test_oversized_form_bodies_are_413(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    response = await alice.client.post(f"/rooms/{room_id}/messages", data={"body": "x" * 70_000})
    assert response.status_code == 413


async def test_every_page_has_security_headers_and_a_strict_csp(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    for path in ("/login", "/", f"/rooms/{room_id}", "/healthz", "/nope"):
        response = await alice.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_session_cookie_is_httponly_and_samesite_lax(anonymous):
    await anonymous.get("/signup")
    response = await anonymous.post(
        "/signup", {"username": "alice", "password": "long enough password"}
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


async def test_logs_hold_no_passwords_tokens_or_bodies(people, capfd):
    alice = await people("alice")
    room_id = await alice.create_room()
    await alice.say(room_id, "top secret message body")
    await alice.post("/logout")
    logs = capfd.readouterr().err
    assert '"event": "message.posted"' in logs
    for secret in ("correct horse battery", "top secret message body", alice.csrf_token):
        assert secret not in logs
    for cookie in alice.client.cookies.values():
        assert cookie not in logs


async def test_healthz_reports_database_and_broker(anonymous):
    response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


async def test_a_request_that_waits_too_long_for_a_database_connection_is_a_503(
    people, monkeypatch
):
    # An overloaded server (chat bench capacity past its capacity): on SQLite every
    # request queues for one connection, and one that waited past the pool's timeout
    # may be retried, as when the database is down; it is not a bug.
    alice = await people("alice")

    async def overloaded(*args, **kwargs):
        raise PoolTimeout("QueuePool limit of size 1 overflow 0 reached, connection timed out")

    monkeypatch.setattr(chat.routes.search, "search", overloaded)
    response = await alice.get("/search?q=hello")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "busy" in response.text
