from chat.auth import SESSION_COOKIE
from tests.support import PASSWORD


async def test_anonymous_visitor_is_sent_to_login(anonymous):
    response = await anonymous.get("/")
    assert response.status_code == 303
    assert response.headers["location"].endswith("/login")


async def test_signup_logs_the_new_user_in(people):
    alice = await people("alice")
    response = await alice.get("/")
    assert response.status_code == 200
    assert "Signed in as <strong>alice</strong>" in response.text


async def test_usernames_are_unique_whatever_their_case(people, anonymous):
    await people("Alice")
    response = await anonymous.post("/signup", {"username": "aLICE", "password": PASSWORD})
    assert response.status_code == 400
    assert "That username is taken." in response.text
    assert SESSION_COOKIE not in response.cookies


async def test_signup_with_bad_username_or_short_password_is_refused(anonymous):
    for username, password in [
        ("a", PASSWORD),
        ("bad name", PASSWORD),
        ("<b>x</b>", PASSWORD),
        ("carol", "short"),
    ]:
        response = await anonymous.post("/signup", {"username": username, "password": password})
        assert response.status_code == 400, (username, password)
        assert SESSION_COOKIE not in response.cookies
    # What was typed is shown back escaped.
    response = await anonymous.post("/signup", {"username": "<b>x</b>", "password": PASSWORD})
    assert "&lt;b&gt;x&lt;/b&gt;" in response.text


async def test_login_with_any_letter_case_and_logout(people, anonymous):
    await people("bob")
    response = await anonymous.post("/login", {"username": "BOB", "password": PASSWORD})
    assert response.status_code == 303
    assert (await anonymous.get("/")).status_code == 200
    response = await anonymous.post("/logout")
    assert response.status_code == 303
    assert (await anonymous.get("/")).status_code == 303


async def test_wrong_password_is_401_without_a_session(people, anonymous):
    await people("bob")
    for username, password in [("bob", "wrong password"), ("nobody", PASSWORD)]:
        response = await anonymous.post("/login", {"username": username, "password": password})
        assert response.status_code == 401
        assert "Wrong username or password." in response.text
        assert SESSION_COOKIE not in response.cookies


async def test_logging_out_ends_the_session_for_a_copied_cookie(people, app):
    alice = await people("alice")
    stolen = alice.client.cookies.get(SESSION_COOKIE)
    await alice.post("/logout")
    alice.client.cookies.set(SESSION_COOKIE, stolen)
    assert (await alice.get("/")).status_code == 303


async def test_login_redirects_only_to_paths_on_this_site(people, anonymous):
    await people("bob")
    for next_url, expected in [
        ("/rooms/1", "/rooms/1"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
    ]:
        response = await anonymous.post(
            "/login", {"username": "bob", "password": PASSWORD, "next": next_url}
        )
        assert response.headers["location"] == expected
        await anonymous.post("/logout")
