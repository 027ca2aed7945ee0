"""The OpenAPI 3.1 description of /api/v1 against the real answers (issue 24): schemathesis
generates requests from it against a live server and checks every answer against it, and
that none is a 500. Kept short: a few examples per operation, on one backend (the schema is
under test here, not the database)."""

from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chat.db import create_engine, create_sessionmaker
from tests.api_support import api_client, make_bot, token_for
from tests.support import Person, client_for, run_apart

EXAMPLES = 12


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def seeded(live_server, server_env) -> SimpleNamespace:
    """alice's room with three messages, one of them the bot's, and the bot's token."""

    async def seed() -> SimpleNamespace:
        engine = create_engine(server_env["CHAT_DATABASE_URL"])
        sessions = create_sessionmaker(engine)
        async with client_for(live_server.url) as client:
            alice = await Person(client, "alice").signup()
            room = await alice.create_room("ops")
            await make_bot(sessions, "echo", rooms=[room])
            secret = await token_for(sessions, "echo")
            await alice.say(room, "hello @echo")
            async with api_client(live_server.url, secret) as bot:
                await bot.post(f"/api/v1/rooms/{room}/messages", json={"body": "hi"})
            await alice.say(room, "**third**")
        await engine.dispose()
        return SimpleNamespace(room=room, secret=secret)

    return run_apart(seed())


def operations(live_server):
    """Every operation the description names, but the live stream (which never ends)."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return [operation for operation in found if not operation.path.endswith("/events")]


def run_examples(operation, mode, check) -> None:
    """`check` for EXAMPLES generated cases of `operation` (schemathesis's pytest plugin
    cannot be used: it reads a private attribute pytest 9 no longer has)."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def examples(case) -> None:
        check(case)

    examples()


@pytest.mark.bulk
def test_every_answer_matches_the_openapi_description(live_server, seeded):
    """Valid requests (mostly to the seeded room and its messages, so that answers other
    than 404 are checked too) get the answers the description promises."""
    auth = {"Authorization": f"Bearer {seeded.secret}"}

    def check(case) -> None:
        if "room_id" in (case.path_parameters or {}):
            case.path_parameters["room_id"] = seeded.room
        if "seq" in (case.path_parameters or {}):
            case.path_parameters["seq"] = 1 + case.path_parameters["seq"] % 4
        # Schema-valid is not always acceptable: "one emoji", "not only spaces", "a reply
        # to a message that exists" are the chat's rules, beyond what a schema says.
        case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

    for operation in operations(live_server):
        run_examples(operation, GenerationMode.POSITIVE, check)


@pytest.mark.bulk
def test_no_malformed_request_gets_a_server_error(live_server, seeded):
    auth = {"Authorization": f"Bearer {seeded.secret}"}

    def check(case) -> None:
        response = case.call(headers=auth)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error", "detail"}

    for operation in operations(live_server):
        run_examples(operation, GenerationMode.NEGATIVE, check)


def test_the_description_is_openapi_3_1_and_names_every_api_route(live_server):
    import httpx

    from chat.api.routes import routes

    document = httpx.get(f"{live_server.url}/api/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (method, route.path.replace(":int", ""))
        for route in routes
        if route.name != "api_openapi" and route.path.startswith("/api/v1/")
        for method in route.methods - {"HEAD"}
    }
    assert served == described
