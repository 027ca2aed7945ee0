"""The search query language: parse() is pure and reads any string without raising."""

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from chat.sanitize import render
from chat.search import Query, Term, highlighted, parse, snippet

SYNTAX = ['"', "-", "*", "^", ":", "(", ")", "NEAR(", "OR", "AND", "NOT", "'", "\\", "&", "|"]
OPERATORS = ["from:", "in:", "before:", "after:", "has:", "is:", "foo:"]
WORDS = ["alice", "link", "mention", "2026-10-01", "2026-13-45", "hello", "ünïcode", "_"]
query_text = st.one_of(
    st.text(),
    st.lists(st.sampled_from(SYNTAX + OPERATORS + WORDS + [" ", " "])).map("".join),
)


def test_words_must_all_match_and_the_last_may_be_a_prefix():
    assert parse("deploy fri").terms == (
        Term("deploy", ("deploy",)),
        Term("fri", ("fri",), prefix=True),
    )


def test_quoted_words_are_a_phrase_and_never_a_prefix():
    assert parse('"Exact Phrase"').terms == (Term("Exact Phrase", ("exact", "phrase")),)


def test_a_minus_excludes_a_word_or_a_phrase():
    query = parse('cats -dogs -"big birds"')
    assert query.terms == (Term("cats", ("cats",), prefix=True),)
    assert query.excluded == (Term("dogs", ("dogs",)), Term("big birds", ("big", "birds")))


def test_every_operator_together():
    query = parse(
        'from:@Bob in:"Random  Talk" before:2026-11-01 after:2026-10-01 has:link is:mention xy'
    )
    assert query == Query(
        terms=(Term("xy", ("xy",), prefix=True),),
        authors=("Bob",),
        rooms=("Random Talk",),
        before=date(2026, 11, 1),
        after=date(2026, 10, 1),
        has_link=True,
        mentions_me=True,
    )


def test_repeated_dates_narrow_to_the_tightest_range():
    query = parse("before:2026-11-01 before:2026-10-15 after:2026-01-01 after:2026-02-01")
    assert (query.before, query.after) == (date(2026, 10, 15), date(2026, 2, 1))


def test_unknown_operators_and_unreadable_values_are_text():
    query = parse("foo:bar before:yesterday after:2026-02-30 has:cats is:x from: in:")
    assert [term.tokens for term in query.terms] == [
        ("foo", "bar"),
        ("before", "yesterday"),
        ("after", "2026", "02", "30"),
        ("has", "cats"),
        ("is", "x"),
        ("from",),
        ("in",),
    ]
    assert query.before is None and query.after is None and not query.has_link


def test_an_unbalanced_quote_is_text():
    assert [term.tokens for term in parse('"open ended').terms] == [("open",), ("ended",)]


def test_fts_syntax_is_only_words():
    query = parse('NEAR(a b) * OR AND ^c "d" : -')
    # "NEAR(a" is one word of two parts: they must appear together, like a phrase.
    assert [term.tokens for term in query.terms] == [
        ("near", "a"),
        ("b",),
        ("or",),
        ("and",),
        ("c",),
        ("d",),
    ]
    assert query.excluded == ()


def test_a_negated_operator_is_an_excluded_phrase():
    query = parse("-from:alice")
    assert query.authors == ()
    assert query.excluded == (Term("from:alice", ("from", "alice")),)


def test_nothing_searchable_is_an_empty_query():
    assert parse("").is_empty
    assert parse(' " - * ( ) ').is_empty


@given(query_text)
def test_any_text_parses_without_raising_into_searchable_terms(raw):
    query = parse(raw)
    for term in (*query.terms, *query.excluded):
        assert term.tokens and all(token.isalnum() for token in term.tokens)
    assert sum(term.prefix for term in query.terms) <= 1


def test_snippets_escape_the_text_and_mark_the_words():
    marked = snippet("Try <script>alert(1)</script> or scripting", parse("scr"))
    assert str(marked) == (
        "Try &lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt; "
        "or <mark>scripting</mark>"
    )


def test_snippets_of_long_messages_start_near_the_first_match():
    body = "filler " * 100 + "needle " + "after " * 100
    marked = str(snippet(body, parse('"needle"')))
    assert marked.startswith("…filler") and marked.endswith("…")
    assert "<mark>needle</mark>" in marked


def test_a_one_letter_last_word_is_a_whole_word():
    assert parse("plan a").terms[-1] == Term("a", ("a",))


def test_a_results_message_is_its_room_html_with_words_marked_in_its_text_only():
    html = render("the **launch** of `v3`: see [the plan](https://example.com/launch)")
    marked = str(highlighted(html, parse("launch")))
    assert "<strong><mark>launch</mark></strong>" in marked
    assert 'href="https://example.com/launch"' in marked  # attributes untouched
    assert "<mark>the</mark>" not in marked and "<code>v3</code>" in marked
    assert str(highlighted("<p>&lt;script&gt;</p>", parse("script"))) == (
        "<p>&lt;<mark>script</mark>&gt;</p>"
    )
