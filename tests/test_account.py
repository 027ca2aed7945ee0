"""Sessions that end, the account page and password rules (issue 21, rows 3 and 10)."""

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from chat.auth import CSRF_COOKIE
from chat.models import AuthSession, utcnow
from chat.passwords import password_problem
from tests.support import PASSWORD, Person, client_for


async def sessions_of(app) -> list[AuthSession]:
    async with app.state.db() as db:
        return list(await db.scalars(select(AuthSession)))


async def age_sessions(app, **columns) -> None:
    async with app.state.db() as db:
        await db.execute(update(AuthSession).values(**columns))
        await db.commit()


async def second_browser(app_or_url, username: str) -> Person:
    """Another browser of the same person, signed in by the login form."""
    if isinstance(app_or_url, str):
        client = client_for(app_or_url, timeout=30)
    else:
        client = client_for("http://testserver", transport=httpx.ASGITransport(app=app_or_url))
    person = Person(client, username)
    response = await person.post("/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 303, response.text
    return person


@pytest.mark.parametrize(
    "columns",
    [
        {"created_at": utcnow() - timedelta(days=31)},  # past the 30-day lifetime
        {"last_seen_at": utcnow() - timedelta(days=15)},  # unused for 15 of 14 days
    ],
    ids=["absolute", "idle"],
)
async def test_an_expired_session_is_refused_and_its_row_deleted(people, app, columns):
    alice = await people("alice")
    assert (await alice.get("/")).status_code == 200
    await age_sessions(app, **columns)
    response = await alice.get("/")
    assert response.status_code == 303 and response.headers["location"].endswith("/login")
    assert await sessions_of(app) == []


async def test_a_session_in_use_is_kept_and_its_last_use_written(people, app):
    alice = await people("alice")
    await age_sessions(app, last_seen_at=utcnow() - timedelta(days=13))
    assert (await alice.get("/")).status_code == 200
    [session] = await sessions_of(app)
    assert utcnow() - session.last_seen_at < timedelta(minutes=1)


async def test_signing_in_cleans_up_everyones_expired_sessions(people, app):
    await people("alice")
    await age_sessions(app, created_at=utcnow() - timedelta(days=40))
    await people("bob")
    assert len(await sessions_of(app)) == 1


async def test_signing_in_rotates_the_csrf_cookie(anonymous):
    await people_free_signup(anonymous)
    before = anonymous.client.cookies[CSRF_COOKIE]
    response = await anonymous.client.post(
        "/login",
        data={"csrf_token": anonymous.csrf_token, "username": "carol", "password": PASSWORD},
    )
    assert response.status_code == 303
    assert response.cookies[CSRF_COOKIE] != before


async def people_free_signup(anonymous: Person) -> None:
    anonymous.username = "carol"
    await anonymous.signup()
    anonymous.client.cookies.delete("chat_session")
    await anonymous.get("/login")


async def test_the_account_page_lists_where_you_are_signed_in(people, app):
    alice = await people("alice")
    other = await second_browser(app, "alice")
    try:
        page = await alice.get("/account", headers={"User-Agent": "ignored"})
        assert page.status_code == 200
        assert page.text.count("<tr>") == 3  # the head and two sessions
        assert "This browser" in page.text
        assert "Sign out everywhere else" in page.text
        assert 'name="current_password"' in page.text and 'name="new_password"' in page.text
    finally:
        await other.client.aclose()


async def test_signing_out_one_session_ends_only_that_one(people, app):
    alice = await people("alice")
    other = await second_browser(app, "alice")
    try:
        # Alice's own session is the older one.
        theirs = max(await sessions_of(app), key=lambda session: session.created_at)
        response = await alice.post(f"/account/sessions/{theirs.public_id}/end")
        assert response.status_code == 303
        assert (await other.get("/")).status_code == 303
        assert (await alice.get("/")).status_code == 200
        # Someone else's session, or one that is gone: 404.
        response = await alice.post(f"/account/sessions/{theirs.public_id}/end")
        assert response.status_code == 404
    finally:
        await other.client.aclose()


async def test_sign_out_everywhere_else_keeps_this_browser(people, app):
    alice = await people("alice")
    others = [await second_browser(app, "alice") for _ in range(2)]
    bob = await people("bob")
    try:
        response = await alice.post("/account/sessions/end-others")
        assert response.status_code == 303
        for other in others:
            assert (await other.get("/")).status_code == 303
        assert (await alice.get("/")).status_code == 200
        assert (await bob.get("/")).status_code == 200
    finally:
        for other in others:
            await other.client.aclose()


async def test_changing_the_password_signs_out_every_other_session(people, app):
    alice = await people("alice")
    other = await second_browser(app, "alice")
    try:
        response = await alice.post(
            "/account/password",
            {"current_password": PASSWORD, "new_password": "a brand new secret"},
        )
        assert response.status_code == 303
        assert (await other.get("/")).status_code == 303
        assert (await alice.get("/")).status_code == 200
        assert len(await sessions_of(app)) == 1
        await alice.post("/logout")
        response = await alice.post(
            "/login", {"username": "alice", "password": "a brand new secret"}
        )
        assert response.status_code == 303
    finally:
        await other.client.aclose()


async def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(people, app):
    alice = await people("alice")
    other = await second_browser(app, "alice")
    try:
        for current_password, new in (("nope nope", "a brand new secret"), (PASSWORD, "password")):
            response = await alice.post(
                "/account/password", {"current_password": current_password, "new_password": new}
            )
            assert response.status_code == 400
            assert 'role="alert"' in response.text
        assert (await other.get("/")).status_code == 200
    finally:
        await other.client.aclose()


async def test_guessing_the_current_password_is_limited_like_logins(people):
    alice = await people("alice")
    for _ in range(10):
        response = await alice.post(
            "/account/password", {"current_password": "guess guess", "new_password": "x9!" * 4}
        )
        assert response.status_code == 400
    response = await alice.post(
        "/account/password", {"current_password": PASSWORD, "new_password": "x9!" * 4}
    )
    assert response.status_code == 429 and response.headers["retry-after"]


async def test_a_password_change_closes_the_other_sessions_open_streams(visitors, live_server):
    alice = await visitors("alice")
    room_id = await alice.create_room()
    other = await second_browser(live_server.url, "alice")
    try:
        async with other.client.stream("GET", f"/rooms/{room_id}/events") as stream:
            assert stream.status_code == 200
            chunks = stream.aiter_bytes()
            await asyncio.wait_for(anext(chunks), 10)  # retry: the stream is open
            response = await alice.post(
                "/account/password",
                {"current_password": PASSWORD, "new_password": "a brand new secret"},
            )
            assert response.status_code == 303

            async def until_closed():
                async for _ in chunks:
                    pass

            await asyncio.wait_for(until_closed(), 10)
    finally:
        await other.client.aclose()


@pytest.mark.parametrize(
    "password", ["12345678", "password", "PassWord", " " * 8, "aaaaaaaaaa", "alice", "alice123"]
)
async def test_weak_passwords_are_refused_at_sign_up(anonymous, app, password):
    await anonymous.get("/signup")
    response = await anonymous.post("/signup", {"username": "alice", "password": password})
    assert response.status_code == 400
    async with app.state.db() as db:
        assert await db.scalar(select(func.count()).select_from(AuthSession)) == 0


def test_the_password_rules_have_no_composition_rules():
    assert password_problem("correct horse battery", "alice") is None
    assert password_problem("alice in wonderland", "alice") is None  # more than the name
    assert password_problem("ordinarywords", "bob") is None
    assert password_problem("short", "bob") is not None
