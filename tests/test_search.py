"""Search: results equal a brute-force filter, only readable rooms, safe output, paging."""

import itertools
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from sqlalchemy import select, update

import chat.search
from chat.models import Message, Room, User
from chat.search import Query, Term, parse, search
from tests.test_search_parser import query_text

FIRST_DAY = datetime(2026, 9, 20, 12, tzinfo=UTC)
# (room, author, body); the n-th message (from 0) is dated FIRST_DAY + n days.
CORPUS = [
    ("general", "alice", "Deploying the release on friday"),
    ("general", "bob", "friday deploy went fine, see https://example.com/notes"),
    ("general", "bob", "@alice can you review the deploy script?"),
    ("Random Talk", "bob", "Cats are better than dogs"),
    ("Random Talk", "alice", "dogs and cats living together"),
    ("team", "alice", 'NEAR(release) OR AND * ^ : the quoted "release plan"'),
    ("team", "bob", "the release plan is ready"),
    ("secret", "carol", "classified: the release plan for friday, @alice must not see it"),
    ("general", "alice", "<script>alert(1)</script> is not a release"),
    ("Random Talk", "bob", "plan the plan, release the release"),
    ("team", "bob", "[notes](https://example.org) about deployments @alicexyz"),
    ("general", "alice", "Friday friday FRIDAY"),
    ("secret", "carol", "classified deploy notes"),
    ("team", "alice", "café au lait, Über cool"),
]
QUERIES = [
    "friday",
    "FRIDAY",
    "deploy",
    "depl",
    "release plan",
    '"release plan"',
    '"plan release"',
    "release -plan",
    'release -"release plan"',
    "-release",
    "from:bob",
    "from:BOB release",
    "from:nobody",
    "in:general",
    'in:"random talk" cats',
    "in:secret",
    "in:gen",
    "before:2026-09-25",
    "after:2026-09-28",
    "after:2026-09-22 before:2026-09-30 release",
    "has:link",
    "has:link deploy",
    "is:mention",
    "is:mention -review",
    "classified",
    "NEAR(release)",
    "OR",
    "*",
    "^ :",
    "<script>",
    "café",
    "über",
    'foo:bar "unbalanced',
    "from:alice in:team -cafe release",
]


def tokens(text):
    return re.findall(r"[^\W_]+", text.lower())


def term_matches(term: Term, words: list[str]) -> bool:
    size = len(term.tokens)
    for start in range(len(words) - size + 1):
        window = words[start : start + size]
        if window[:-1] == list(term.tokens[:-1]) and (
            window[-1].startswith(term.tokens[-1]) if term.prefix else window[-1] == term.tokens[-1]
        ):
            return True
    return False


def brute_force(rows, query: Query, viewer: str, readable: set[str]) -> list[tuple[str, int]]:
    """The query evaluated by hand over every message, newest first."""
    found = []
    if query.is_empty:  # nothing to search for finds nothing (not everything)
        return found
    for row in sorted(rows, key=lambda row: row["id"], reverse=True):
        words = tokens(row["body"])
        if row["room"] not in readable:
            continue
        if not all(term_matches(term, words) for term in query.terms):
            continue
        if any(term_matches(term, words) for term in query.excluded):
            continue
        if any(author.lower() != row["author"].lower() for author in query.authors):
            continue
        if any(room.lower() != row["room"].lower() for room in query.rooms):
            continue
        if query.before and not row["created_at"] < datetime.combine(
            query.before, datetime.min.time(), UTC
        ):
            continue
        if query.after and not row["created_at"] >= datetime.combine(
            query.after + timedelta(days=1), datetime.min.time(), UTC
        ):
            continue
        if query.has_link and "<a " not in row["html"]:
            continue
        if query.mentions_me and not (
            f"@{viewer}" in row["body"].lower() and term_matches(Term(viewer, (viewer,)), words)
        ):
            continue
        found.append((row["room"], row["seq"]))
    return found


@pytest.fixture
async def corpus(people, app):
    """alice, bob and carol; alice may read general, Random Talk (public) and team
    (private, she is in it) but not carol's private room "secret"."""
    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    rooms = {
        "general": await alice.create_room("general"),
        "Random Talk": await bob.create_room("Random Talk"),
        "team": await alice.create_room("team", "private"),
        "secret": await carol.create_room("secret", "private"),
    }
    await bob.join(rooms["general"])
    await alice.join(rooms["Random Talk"])
    response = await alice.post(f"/rooms/{rooms['team']}/members", {"username": "bob"})
    assert response.status_code == 303
    by_name = {"alice": alice, "bob": bob, "carol": carol}
    for room, author, body in CORPUS:
        await by_name[author].say(rooms[room], body)
    async with app.state.db() as db:
        for day, message_id in enumerate(await db.scalars(select(Message.id).order_by(Message.id))):
            await db.execute(
                update(Message)
                .where(Message.id == message_id)
                .values(created_at=FIRST_DAY + timedelta(days=day))
            )
        await db.commit()
        rows = (
            await db.execute(
                select(Message, Room.name, User.username)
                .join(Room, Room.id == Message.room_id)
                .join(User, User.id == Message.author_id)
            )
        ).all()
    return {
        "people": by_name,
        "rooms": rooms,
        "rows": [
            {
                "id": message.id,
                "room": room,
                "seq": message.seq,
                "author": author,
                "body": message.body,
                "html": message.html,
                "created_at": message.created_at,
            }
            for message, room, author in rows
        ],
    }


async def search_as(app, username, query, **kwargs):
    async with app.state.db() as db:
        viewer = await User.by_username(db, username)
        results = await search(db, viewer, query, **kwargs)
    return [(hit.room_name, hit.seq) for hit in results.hits]


async def test_results_equal_a_brute_force_filter_for_every_operator(app, corpus):
    readable = {"general", "Random Talk", "team"}
    for raw in QUERIES:
        query = parse(raw)
        expected = brute_force(corpus["rows"], query, "alice", readable)
        assert await search_as(app, "alice", query, limit=100) == expected, raw
    # The set is built so that each operator selects something and leaves something out.
    assert all(
        0 < len(brute_force(corpus["rows"], parse(raw), "alice", readable)) < len(CORPUS) - 2
        for raw in ["friday", '"release plan"', "from:bob", "in:general", "has:link", "is:mention"]
    )


async def test_searches_page_the_same_when_the_newest_messages_hold_too_few(
    app, corpus, monkeypatch
):
    # PostgreSQL looks for a phrase among the newest PHRASE_WINDOW messages, and with
    # from: or in: among the newest SCOPED_WINDOW of that person's or room's, first,
    # then in the older ones: with windows of a few messages, pages straddle that boundary.
    readable = {"general", "Random Talk", "team"}
    queries = [
        '"release plan"',
        '"plan release"',
        'in:general "release plan"',
        "in:general friday",
        "from:bob release",
        "from:alice in:team -cafe release",
    ]
    for window, limit, raw in itertools.product([1, 2, 3, 5], [1, 2, 100], queries):
        monkeypatch.setattr(chat.search, "PHRASE_WINDOW", window)
        monkeypatch.setattr(chat.search, "SCOPED_WINDOW", window)
        query = parse(raw)
        found, before = [], None
        async with app.state.db() as db:
            viewer = await User.by_username(db, "alice")
            while True:
                results = await search(db, viewer, query, before_id=before, limit=limit)
                found += [(hit.room_name, hit.seq) for hit in results.hits]
                if (before := results.older_than) is None:
                    break
        expected = brute_force(corpus["rows"], query, "alice", readable)
        assert found == expected, (window, limit, raw)
    assert len(brute_force(corpus["rows"], parse('"release plan"'), "alice", readable)) > 1


async def test_a_private_room_is_searched_only_by_its_members(app, corpus):
    assert await search_as(app, "alice", parse("classified")) == []
    assert await search_as(app, "carol", parse("classified")) == [("secret", 2), ("secret", 1)]
    # Public rooms are readable by everyone, members or not.
    assert ("Random Talk", 1) in await search_as(app, "carol", parse("cats"))
    assert await search_as(app, "carol", parse("in:team")) == []


def random_queries(count: int) -> list[str]:
    """`count` queries drawn by Hypothesis. Drawn up front and run in one async test:
    @given on an async test ran examples on an event loop that is not the asyncpg
    pool's, which hung the pool's teardown later."""
    drawn: list[str] = []

    @settings(max_examples=count, database=None, deadline=None)
    @given(query_text)
    def draw(raw: str) -> None:
        drawn.append(raw)

    draw()
    return drawn


async def test_random_queries_never_fail_and_never_reach_unreadable_rooms(app, corpus):
    for raw in random_queries(150):
        hits = await search_as(app, "alice", parse(raw), limit=100)
        assert {room for room, _ in hits} <= {"general", "Random Talk", "team"}, raw


async def test_the_search_page_shows_room_author_time_and_a_marked_snippet(corpus):
    alice = corpus["people"]["alice"]
    response = await alice.get("/search", params={"q": "from:bob release plan"})
    assert response.status_code == 200
    team = corpus["rooms"]["team"]
    assert f'href="http://testserver/rooms/{team}?at=2#message-2"' in response.text
    assert '<span class="room-name">team</span>' in response.text
    assert '<span class="author">bob</span>' in response.text
    assert "2026-09-26 12:00 UTC" in response.text
    assert "the <mark>release</mark> <mark>plan</mark> is ready" in response.text
    assert 'value="from:bob release plan"' in response.text


async def test_a_search_for_script_shows_it_as_text(corpus):
    response = await corpus["people"]["alice"].get("/search", params={"q": "<script>"})
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in response.text
    assert 'value="&lt;script&gt;"' in response.text
    assert "<script>alert" not in response.text
    assert response.text.count("<script") == response.text.count("<script src=")


async def test_htmx_gets_only_the_results_and_a_history_restore_gets_the_page(corpus):
    alice = corpus["people"]["alice"]
    fragment = await alice.get("/search", params={"q": "cats"}, headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section id="search-results"')
    restore = await alice.get(
        "/search",
        params={"q": "cats"},
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert restore.text.lstrip().startswith("<!doctype html>")


async def test_older_results_are_a_keyset_link_25_at_a_time(people):
    alice = await people("alice")
    room_id = await alice.create_room()
    for n in range(1, 31):
        await alice.say(room_id, f"report number {n}")
    first = await alice.get("/search", params={"q": "report"})
    seqs = [int(seq) for seq in re.findall(r"\?at=(\d+)#", first.text)]
    assert seqs == list(range(30, 5, -1))
    [older] = re.findall(r'class="older-results" href="([^"]+)"', first.text)
    second = await alice.get(older.replace("&amp;", "&"))
    assert [int(seq) for seq in re.findall(r"\?at=(\d+)#", second.text)] == [5, 4, 3, 2, 1]
    assert "older-results" not in second.text


async def test_empty_unknown_and_oversized_searches(people):
    alice = await people("alice")
    assert "Type words" in (await alice.get("/search")).text
    assert "No messages match." in (await alice.get("/search", params={"q": 'zz:top "x'})).text
    assert (await alice.get("/search", params={"q": "a\x00b"})).status_code == 200
    assert (await alice.get("/search", params={"q": "x" * 501})).status_code == 400
    assert (await alice.get("/search", params={"q": "x", "before": "-1"})).status_code == 400


async def test_search_needs_an_account(anonymous):
    response = await anonymous.client.get("/search", params={"q": "x"})
    assert response.status_code == 303
    assert "/login" in response.headers["location"]


async def test_every_page_has_the_search_box(corpus):
    page = await corpus["people"]["alice"].get(f"/rooms/{corpus['rooms']['general']}")
    assert '<input type="search" name="q" id="search-q"' in page.text
    assert '<label for="search-q"' in page.text


def test_dates_in_the_corpus_straddle_the_queried_days():
    last_day = (FIRST_DAY + timedelta(days=len(CORPUS) - 1)).date()
    assert FIRST_DAY.date() < date(2026, 9, 25) < date(2026, 9, 28) < last_day
