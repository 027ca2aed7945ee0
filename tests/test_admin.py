"""Administrators (issue 23, "The instance"): /admin, deactivation, password-reset links,
the sign-up policy, the audit log and the command line that makes administrators."""

import asyncio
import os
import re
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import func, make_url, select

from chat.db import create_engine, create_sessionmaker
from chat.models import AdminEvent, ApiToken, AuthSession, PasswordReset, User
from chat.settings import Settings
from tests.support import PASSWORD, ROOT, Person, open_stream


async def make_admin(database_url: str, username: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            user = await User.by_username(db, username)
            await user.set_admin(db, True)
    finally:
        await engine.dispose()


async def user_named(app, username: str) -> User:
    async with app.state.db() as db:
        return await User.by_username(db, username)


async def audit_actions(app) -> list[str]:
    async with app.state.db() as db:
        return [event.action for event in await AdminEvent.newest(db, 100)]


@pytest.fixture
async def admin(people, settings) -> Person:
    root = await people("root")
    await make_admin(settings.database_url, "root")
    return root


async def test_admin_routes_are_404_for_everyone_but_administrators(people, anonymous, admin, app):
    bob = await people("bob")
    bob_id = (await user_named(app, "bob")).id
    for person in (anonymous, bob):
        assert (await person.get("/admin")).status_code == 404
        for action in ("deactivate", "reactivate", "reset-password"):
            response = await person.post(f"/admin/users/{bob_id}/{action}")
            assert response.status_code == 404, action
        assert (await person.post("/admin/signup", {"policy": "closed"})).status_code == 404
    assert "Administration" not in (await bob.get("/")).text
    assert (await user_named(app, "bob")).is_active
    assert await audit_actions(app) == []
    page = await admin.get("/admin")
    assert page.status_code == 200 and 'data-user="bob"' in page.text
    assert "Administration" in (await admin.get("/")).text


async def test_searching_accounts_matches_part_of_a_username_literally(people, admin):
    for name in ("alice", "malice", "bob", "a_b"):
        await people(name)
    page = (await admin.get("/admin", params={"q": "LIC"})).text
    assert re.findall(r'data-user="([^"]+)"', page) == ["alice", "malice"]
    page = (await admin.get("/admin", params={"q": "_"})).text
    assert re.findall(r'data-user="([^"]+)"', page) == ["a_b"]  # not a wildcard
    page = (await admin.get("/admin", params={"q": "%"})).text
    assert "No account's username contains" in page


async def test_deactivating_ends_every_session_refuses_login_and_is_audited(people, admin, app):
    bob = await people("bob")
    bob_id = (await user_named(app, "bob")).id
    response = await admin.post(f"/admin/users/{bob_id}/deactivate")
    assert response.status_code == 303
    assert (await bob.get("/")).status_code == 303  # the old cookie no longer works
    async with app.state.db() as db:
        assert (
            await db.scalar(
                select(func.count()).select_from(AuthSession).where(AuthSession.user_id == bob_id)
            )
            == 0
        )
    response = await bob.post("/login", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 403 and "deactivated" in response.text
    page = (await admin.get("/admin")).text
    assert "user deactivated" in page and "user bob" in page

    response = await admin.post(f"/admin/users/{bob_id}/reactivate")
    assert response.status_code == 303
    response = await bob.post("/login", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 303
    assert await audit_actions(app) == ["user_reactivated", "user_deactivated"]  # newest first


async def test_bad_admin_requests_change_nothing(admin, app):
    root_id = (await user_named(app, "root")).id
    assert (await admin.post(f"/admin/users/{root_id}/deactivate")).status_code == 400
    assert (await admin.post("/admin/users/999999/deactivate")).status_code == 404
    assert (await admin.post("/admin/users/99999999999/reset-password")).status_code == 404
    assert (await admin.post("/admin/signup", {"policy": "everyone"})).status_code == 400
    assert (await admin.post("/admin/signup")).status_code == 400
    assert (await user_named(app, "root")).is_active
    assert await audit_actions(app) == []


async def test_a_nul_character_in_a_search_or_a_username_answers_without_a_500(people, admin):
    bob = await people("bob")
    room_id = await bob.create_room("team")
    assert (await admin.get("/admin", params={"q": "\x00"})).status_code == 200
    assert (await admin.get("/admin/rooms", params={"q": "te\x00am"})).status_code == 200
    owner = await admin.post(f"/admin/rooms/{room_id}/owner", {"username": "bob\x00"})
    assert owner.status_code == 400
    added = await bob.post(f"/rooms/{room_id}/members", {"username": "\x00"})
    assert added.status_code == 400


async def test_deactivation_closes_the_accounts_open_streams(visitors, live_server, database_url):
    root, bob = await visitors("root"), await visitors("bob")
    await make_admin(database_url, "root")
    room_id = await bob.create_room()
    bob_id = int(re.search(r"/admin/users/(\d+)/deactivate", (await root.get("/admin")).text)[1])
    async with open_stream(bob.client, f"/rooms/{room_id}/events") as stream:
        assert stream.response.status_code == 200
        async with open_stream(bob.client, "/events") as rooms_stream:
            assert rooms_stream.response.status_code == 200
            response = await root.post(f"/admin/users/{bob_id}/deactivate")
            assert response.status_code == 303
            assert await stream.closed() and await rooms_stream.closed()
    assert (await bob.get(f"/rooms/{room_id}/events")).status_code == 303


async def test_a_password_reset_link_works_once_and_signs_out_the_old_sessions(
    people, anonymous, admin, app
):
    bob = await people("bob")
    bob_id = (await user_named(app, "bob")).id
    response = await admin.post(f"/admin/users/{bob_id}/reset-password")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    link = re.search(r'value="(http://testserver/reset/[^"]+)"', response.text)[1]
    path = link.removeprefix("http://testserver")

    assert (await anonymous.get(path)).status_code == 200
    response = await anonymous.post(path, {"password": "bob"})  # too weak: nothing used up
    assert response.status_code == 400 and 'role="alert"' in response.text
    response = await anonymous.post(path, {"password": "a fresh long secret"})
    assert response.status_code == 303
    assert (await anonymous.get("/")).status_code == 200  # signed in as bob
    assert (await bob.get("/")).status_code == 303  # bob's old browser is signed out
    for method in (anonymous.get, anonymous.post):
        response = await method(path)
        assert response.status_code == 404 and "Ask an administrator" in response.text
    response = await bob.post("/login", {"username": "bob", "password": "a fresh long secret"})
    assert response.status_code == 303
    assert await audit_actions(app) == ["password_reset_link"]


async def test_a_new_reset_link_replaces_the_old_and_unknown_tokens_are_404(
    people, anonymous, admin, app
):
    await people("bob")
    bob = await user_named(app, "bob")
    paths = []
    for _ in range(2):
        response = await admin.post(f"/admin/users/{bob.id}/reset-password")
        paths.append(re.search(r'value="http://testserver(/reset/[^"]+)"', response.text)[1])
    assert (await anonymous.get(paths[0])).status_code == 404
    assert (await anonymous.get(paths[1])).status_code == 200
    for path in ("/reset/nope", "/reset/" + "x" * 500):
        assert (await anonymous.get(path)).status_code == 404
    async with app.state.db() as db:
        assert await db.scalar(select(func.count()).select_from(PasswordReset)) == 2


@pytest.mark.parametrize("policy", ["invite", "closed"])
async def test_a_sign_up_policy_other_than_open_refuses_sign_ups(anonymous, admin, app, policy):
    response = await admin.post("/admin/signup", {"policy": policy})
    assert response.status_code == 303
    page = await anonymous.get("/signup")
    assert page.status_code == 403 and 'name="password"' not in page.text
    assert "Create an account" not in (await anonymous.get("/login")).text
    response = await anonymous.post("/signup", {"username": "carol", "password": PASSWORD})
    assert response.status_code == 403
    assert await user_named(app, "carol") is None
    assert await audit_actions(app) == ["signup_policy"]
    await admin.post("/admin/signup", {"policy": "open"})
    await Person(anonymous.client, "carol").signup()


def test_chat_signup_fixes_the_policy():
    settings = Settings.from_env({"CHAT_SIGNUP": "Closed", "CHAT_SECRET_KEY": "k"})
    assert settings.signup == "closed"
    with pytest.raises(ValueError, match="CHAT_SIGNUP"):
        Settings.from_env({"CHAT_SIGNUP": "sometimes", "CHAT_SECRET_KEY": "k"})


def chat_command(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chat", *args],
        cwd=ROOT,
        env={**os.environ, "CHAT_DATABASE_URL": database_url, "CHAT_SECRET_KEY": "k"},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def migrated_database(database_url: str, request: pytest.FixtureRequest) -> str:
    if database_url.startswith("sqlite"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), make_url(database_url).database)
    return database_url


async def test_the_command_line_makes_and_unmakes_administrators(migrated_database):
    database_url = migrated_database

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return chat_command(database_url, *args, stdin=stdin)

    made = await asyncio.to_thread(run, "create-user", "boss", "--admin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    revoked = await asyncio.to_thread(run, "admin", "revoke", "boss")
    assert revoked.returncode == 0, revoked.stderr
    missing = await asyncio.to_thread(run, "admin", "grant", "nobody")
    assert missing.returncode == 1 and "no user called" in missing.stderr
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            assert not (await User.by_username(db, "boss")).is_admin
            events = await AdminEvent.newest(db, 10)
    finally:
        await engine.dispose()
    assert [(e.actor, e.action) for e in events] == [
        ("command line", "admin_revoked"),
        ("command line", "admin_granted"),
    ]


async def test_a_deactivated_accounts_api_tokens_stop_working(people, admin, app):
    await people("bob")
    bob = await user_named(app, "bob")
    async with app.state.db() as db:
        _, secret = await ApiToken.issue(db, bob, "script", may_write=True)
        assert await ApiToken.by_secret(db, secret) is not None
    await admin.post(f"/admin/users/{bob.id}/deactivate")
    async with app.state.db() as db:
        assert await ApiToken.by_secret(db, secret) is None


async def test_a_password_reset_token_never_reaches_the_log(people, anonymous, admin, app, capsys):
    await people("bob")
    bob_id = (await user_named(app, "bob")).id
    response = await admin.post(f"/admin/users/{bob_id}/reset-password")
    path = re.search(r'value="http://testserver(/reset/[^"]+)"', response.text)[1]
    capsys.readouterr()
    await anonymous.get(path)
    await anonymous.post(path, {"password": "a fresh long secret"})
    logged = capsys.readouterr().err
    token = path.rsplit("/", 1)[1]
    assert '"path": "/reset/{secret}"' in logged and token not in logged
