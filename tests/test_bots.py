"""Bots and API tokens: made on /account/bots and /account/tokens or by the CLI (issue 24)."""

import asyncio
import re
import shutil
from dataclasses import replace

import pytest
from sqlalchemy import select

from chat.auth import verify_password
from chat.cli import main
from chat.db import create_engine, create_sessionmaker
from chat.models import ApiToken, Bot, User
from chat.models.tokens import secret_hash


@pytest.fixture(autouse=True)
def anyone_makes_bots(request):
    """Most tests here let anyone make bots (CHAT_BOT_CREATORS=everyone); the default,
    admins only, has tests of its own."""
    if "app" in request.fixturenames and "default_creators" not in request.keywords:
        app = request.getfixturevalue("app")
        app.state.settings = replace(app.state.settings, bot_creators="everyone")


SECRET = re.compile(r'id="new-token"[^>]*value="(chat_[A-Za-z0-9_-]+)"')


async def make_bot(person, name: str = "echo") -> int:
    response = await person.post("/account/bots", {"name": name})
    assert response.status_code == 303, response.text
    return int(response.headers["location"].split("/account/bots/")[1].split("?")[0])


async def issue(person, url: str, **fields) -> str:
    """POST the token form; the secret the page shows once."""
    response = await person.post(url, {"name": "script", "scope": "read", **fields})
    assert response.status_code == 200, response.text
    return SECRET.search(response.text).group(1)


async def test_a_bot_is_a_user_flagged_as_bot_that_no_password_signs_in(people, app):
    alice = await people("alice")
    bot_id = await make_bot(alice)
    async with app.state.db() as db:
        bot = await Bot.get(db, bot_id)
    assert bot.user.is_bot and bot.owner_id is not None and bot.user.username == "echo"
    assert not await verify_password(bot.user.password_hash, "")
    page = await alice.get(f"/account/bots/{bot_id}")
    assert page.status_code == 200 and "echo" in page.text


async def test_a_bot_name_must_be_a_free_username(people):
    alice = await people("alice")
    assert (await alice.post("/account/bots", {"name": "alice"})).status_code == 400
    assert (await alice.post("/account/bots", {"name": "no spaces"})).status_code == 400


async def test_another_persons_bot_page_is_404(people):
    alice, bob = await people("alice"), await people("bob")
    bot_id = await make_bot(alice)
    assert (await bob.get(f"/account/bots/{bot_id}")).status_code == 404
    assert (await bob.post(f"/account/bots/{bot_id}/tokens", {"name": "x"})).status_code == 404


async def test_a_token_is_shown_once_and_stored_only_as_its_hash(people, app):
    alice = await people("alice")
    secret = await issue(alice, "/account/tokens", scope="write")
    async with app.state.db() as db:
        [token] = await db.scalars(select(ApiToken))
    assert token.token_hash == secret_hash(secret) and token.may_write
    assert token.hint == secret[:9] and token.user.username == "alice"
    page = await alice.get("/account/tokens")
    assert secret not in page.text and token.hint in page.text


async def test_a_token_may_be_limited_to_rooms_its_user_is_in(people, app):
    alice, bob = await people("alice"), await people("bob")
    mine = await alice.create_room("mine")
    theirs = await bob.create_room("theirs")
    await issue(alice, "/account/tokens", rooms=str(mine))
    async with app.state.db() as db:
        [token] = await db.scalars(select(ApiToken))
    assert token.rooms == {mine}
    refused = await alice.post("/account/tokens", {"name": "x", "rooms": str(theirs)})
    assert refused.status_code == 400
    assert (await alice.post("/account/tokens", {"name": ""})).status_code == 400
    assert (await alice.post("/account/tokens", {"name": "x", "scope": "all"})).status_code == 400


async def test_revoking_a_token_marks_it_and_only_its_owner_may(people, app):
    alice, bob = await people("alice"), await people("bob")
    await issue(alice, "/account/tokens")
    async with app.state.db() as db:
        [token] = await db.scalars(select(ApiToken))
    assert (await bob.post(f"/account/tokens/{token.id}/revoke")).status_code == 404
    response = await alice.post(f"/account/tokens/{token.id}/revoke")
    assert response.status_code == 303
    async with app.state.db() as db:
        assert (await db.get(ApiToken, token.id)).is_revoked
        assert await ApiToken.by_secret(db, "anything") is None
    assert (await alice.post(f"/account/tokens/{token.id}/revoke")).status_code == 404


async def test_a_bot_gets_tokens_and_is_added_to_its_owners_rooms(people, app):
    alice = await people("alice")
    room = await alice.create_room("ops")
    bot_id = await make_bot(alice)
    response = await alice.post(f"/account/bots/{bot_id}/rooms", {"room_id": str(room)})
    assert response.status_code == 303
    secret = await issue(alice, f"/account/bots/{bot_id}/tokens", rooms=str(room))
    async with app.state.db() as db:
        token = await ApiToken.by_secret(db, secret)
    assert token.user_id == bot_id and token.rooms == {room}
    revoked = await alice.post(f"/account/bots/{bot_id}/tokens/{token.id}/revoke")
    assert revoked.status_code == 303


async def test_a_bot_cannot_be_added_to_a_private_room_its_owner_does_not_own(people):
    alice, bob = await people("alice"), await people("bob")
    private = await bob.create_room("secret", "private")
    bot_id = await make_bot(alice)
    response = await alice.post(f"/account/bots/{bot_id}/rooms", {"room_id": str(private)})
    assert response.status_code == 400


@pytest.mark.default_creators
async def test_by_default_only_admins_make_bots(people, app):
    assert app.state.settings.bot_creators == "admins"
    alice = await people("alice")
    assert (await alice.post("/account/bots", {"name": "echo"})).status_code == 403
    assert "Only admins" in (await alice.get("/account/bots")).text
    async with app.state.db() as db:
        await (await User.by_username(db, "alice")).set_admin(db, True)
    assert (await alice.post("/account/bots", {"name": "echo"})).status_code == 303


async def test_bot_and_token_forms_need_a_csrf_token(people):
    alice = await people("alice")
    response = await alice.client.post("/account/bots", data={"name": "echo"})
    assert response.status_code == 403


def test_chat_create_bot_and_create_token_print_a_usable_token(
    tmp_path, migrated_sqlite, monkeypatch, capsys
):
    database = tmp_path / "cli.db"
    shutil.copyfile(migrated_sqlite, database)
    monkeypatch.setenv("CHAT_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("CHAT_SECRET_KEY", "x")

    def chat(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        return exited.value.code, capsys.readouterr().out

    assert chat("create-bot", "deploy")[0] == 0
    assert chat("create-bot", "deploy")[0] == 1  # taken
    assert chat("create-bot", "x")[0] == 2
    code, printed = chat("create-token", "deploy", "--name", "ci", "--write")
    assert code == 0
    secret = printed.strip()
    assert secret.startswith("chat_") and len(secret) > 40
    assert chat("create-token", "deploy", "--name", "ci", "--room", "7")[0] == 1
    assert chat("create-token", "nobody", "--name", "ci")[0] == 1

    async def stored() -> tuple[ApiToken, User]:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        async with create_sessionmaker(engine)() as db:
            token = await ApiToken.by_secret(db, secret)
            user = await User.by_username(db, "deploy")
        await engine.dispose()
        return token, user

    token, user = asyncio.run(stored())
    assert token.may_write and token.user_id == user.id and user.is_bot


@pytest.mark.parametrize("path", ["/account/bots", "/account/tokens"])
async def test_the_pages_send_anonymous_visitors_to_login(anonymous, path):
    response = await anonymous.get(path)
    assert response.status_code == 303 and response.headers["location"].endswith("/login")
