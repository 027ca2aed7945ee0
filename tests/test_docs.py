"""The README and docs/ are the manual: these tests keep them true to the code."""

import re
from pathlib import Path

import pytest

from chat.routes import routes
from tests.support import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250
# Markdown links to local files: [text](path) or [text](path#anchor), not URLs.
LINK = re.compile(r"\[[^\]]*\]\((?!https?:|mailto:)([^)\s#]*)(?:#([^)\s]*))?\)")
# Files and folders of the repository named in prose: `chat/message_path.py`, chat/models/.
NAMED_PATH = re.compile(r"(?<![\w/.-])((?:chat|bench|tests|docs)/[\w./-]*[\w/])")
# Names of code in backticks: `RoomStream`, `Message.change`, `sse.Cursor`, `Order.SENT`.
CODE_NAME = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?`")
CAMEL_CASE = re.compile(r"[A-Z][a-z0-9]+[A-Z]\w*")
# Backticked words that look like code names and are not: the cursor's notation, and names
# from HTTP and /proc.
NOT_CODE = {"SEQ.CHANGE", "HttpOnly", "VmRSS"}
FILE_NAME = re.compile(r"[\w.-]+\.(?:py|md|html|js|css|db|txt|json|png|ini|exe)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def slugs(markdown: str) -> set[str]:
    """The anchors GitHub makes for a page's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def settings_variables() -> set[str]:
    source = read(ROOT / "chat" / "settings.py")
    return set(re.findall(r'"(CHAT_[A-Z0-9_]+)"', source))


def documented_path(route_path: str) -> str:
    """A route as the docs write it: `{room_id:int}` → `{id}`, other ids without `:int`."""
    return re.sub(
        r"\{(\w+)(?::\w+)?\}",
        lambda m: "{id}" if m.group(1) == "room_id" else "{" + m.group(1) + "}",
        route_path,
    )


def quick_start(readme: str) -> str:
    assert "## Quick start" in readme, "the README has no '## Quick start' section"
    return readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_the_readme_quick_start_is_make_run_and_make_test():
    section = quick_start(read(README))
    assert "make run" in section and "make test" in section


def test_the_readme_stays_short():
    lines = read(README).count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_every_setting_read_from_the_environment_is_in_the_configuration_page():
    variables = settings_variables()
    assert variables, "settings.py reads no CHAT_ variables?"
    page = read(DOCS / "configuration.md")
    missing = sorted(v for v in variables if f"`{v}`" not in page)
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_route_is_in_the_http_reference():
    page = read(DOCS / "http-api.md")
    paths = {documented_path(r.path) for r in routes if getattr(r, "name", None) != "static"}
    # Written whole, as in `GET /rooms/{id}/events` or `GET /search?q=…`: a route that is only
    # the tail of another (`/events`) must have a row of its own.
    missing = sorted(
        path for path in paths if not re.search(rf"[\s`]{re.escape(path)}[`?\s]", page)
    )
    assert not missing, f"docs/http-api.md does not document {missing}"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_page_names_exists(page):
    missing = sorted(
        {name for name in NAMED_PATH.findall(read(page)) if not (ROOT / name).exists()}
    )
    assert not missing, f"{page.relative_to(ROOT)} names files that do not exist: {missing}"


def names_of_code(markdown: str) -> set[str]:
    """Class names (`RoomStream`) and dotted names of classes or modules (`Message.change`,
    `sse.Cursor`) a page mentions; file names and columns (`messages.body`) are not."""
    modules = {path.stem for path in (ROOT / "chat").glob("*.py")}
    names = set()
    for name in CODE_NAME.findall(markdown):
        parts = name.split(".")
        if name in NOT_CODE or FILE_NAME.fullmatch(name):
            continue
        if CAMEL_CASE.fullmatch(name) or (
            len(parts) > 1 and (parts[0][0].isupper() or parts[0] in modules)
        ):
            names.add(name)
    return names


@pytest.fixture(scope="module")
def words_of_the_code() -> set[str]:
    sources = [*(ROOT / "chat").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    return {word for path in sources for word in re.findall(r"\w+", read(path))}


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_class_and_method_a_page_names_is_in_the_code(page, words_of_the_code):
    missing = sorted(
        name
        for name in names_of_code(read(page))
        if not all(part in words_of_the_code for part in name.split("."))
    )
    assert not missing, f"{page.relative_to(ROOT)} names code that does not exist: {missing}"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(page):
    broken = []
    for target, anchor in LINK.findall(read(page)):
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in slugs(read(path)):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"


def test_every_docs_page_is_reachable_from_the_readme():
    linked = {(ROOT / target).resolve() for target, _ in LINK.findall(read(README))}
    pages = {page.resolve() for page in DOCS.glob("*.md")}
    unlinked = sorted(str(page.relative_to(ROOT)) for page in pages - linked)
    assert not unlinked, f"the README links none of {unlinked}"
    assert (DOCS / "decisions").resolve() in linked, "the README does not link docs/decisions/"


def test_vendored_front_end_files_carry_their_versions_in_name_and_first_line():
    vendor = ROOT / "chat" / "static" / "vendor"
    files = sorted(vendor.iterdir())
    assert files, "chat/static/vendor/ is empty"
    for path in files:
        named = re.search(r"-(\d+\.\d+\.\d+)[.-]", path.name)
        assert named, f"{path.name}: no version in the file name"
        first_line = path.read_text(encoding="utf-8").splitlines()[0]
        assert named.group(1) in first_line, f"{path.name}: first line lacks its version"
        assert "npm" in first_line, f"{path.name}: first line does not say where it came from"
