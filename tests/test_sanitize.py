from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat.sanitize import _PLAIN_TEXT, _render_markdown, render

# What the plain-text shortcut takes, and every character next to it that it must not:
# Markdown, URL and mention syntax, escapes, entities, whitespace of every kind.
_PLAIN_ALPHABET = "aZ09 ,!?'\"&<>()#%+=;-."
_NEAR_PLAIN_ALPHABET = _PLAIN_ALPHABET + "*_~`[]:/@\\\n\t\r\xa0é.co"


def test_plain_text_is_escaped_not_interpreted():
    assert render("<script>alert(1)</script>") == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"


def test_emphasis_code_and_strikethrough_are_kept():
    html = render("*em* **strong** ~~gone~~ `x < y`")
    assert "<em>em</em>" in html
    assert "<strong>strong</strong>" in html
    assert "<s>gone</s>" in html
    assert "<code>x &lt; y</code>" in html


def test_fenced_code_block_keeps_its_text_escaped_and_no_class():
    html = render("```html\n<b onclick=x>hi</b>\n```")
    assert html == "<pre><code>&lt;b onclick=x&gt;hi&lt;/b&gt;\n</code></pre>\n"


def test_links_and_bare_urls_get_a_safe_rel():
    for text in ("[site](https://example.com/a)", "see https://example.com/a"):
        html = render(text)
        assert 'href="https://example.com/a"' in html
        assert 'rel="nofollow noopener noreferrer"' in html


def test_dangerous_link_schemes_never_become_links():
    for text in (
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
    ):
        html = render(text)
        assert "<a" not in html, text


def test_raw_html_and_event_handlers_stay_text():
    html = render('<img src=x onerror=alert(1)> <a href="javascript:x">y</a>')
    assert "<img" not in html
    assert "<a " not in html
    assert "&lt;img" in html


def test_block_markdown_outside_the_subset_is_plain_text():
    assert render("# not a heading") == "<p># not a heading</p>\n"
    assert "<img" not in render("![alt](https://example.com/x.png)")


def test_line_breaks_are_kept():
    assert render("one\ntwo") == "<p>one<br>\ntwo</p>\n"


# No deadline: a busy machine (a CI runner, parallel suites) can stall one example.
@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_PLAIN_ALPHABET) | st.text(alphabet=_NEAR_PLAIN_ALPHABET))
@example("a.co")
@example("www.example.com")
@example("x. y")
@example("&amp; &#60; &lt")
@example(" padded ")
@example("a &quot; b")
def test_plain_text_shortcut_is_byte_identical_to_markdown_and_nh3(text):
    assert render(text) == _render_markdown(text)


def test_plain_chat_lines_take_the_shortcut():
    for text in ("bench 3 123 end", "Hello. How are you?", "it's 5 o'clock, ok!", "a < b & c"):
        assert _PLAIN_TEXT.fullmatch(text), text
    for text in ("see example.com", "*hi*", "@alice", "a\nb", "1.5", "x:y"):
        assert not _PLAIN_TEXT.fullmatch(text), text
